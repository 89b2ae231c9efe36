"""``glue-spherex catalog`` against the local archive: the Parquet result, its agreement with
per-source ``glue-spherex spectrum``, resuming after a kill, a Dask worker killed mid-run,
images that fail recorded and tried again, and bad catalog rows reported."""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.table import Table

from glue_spherex.catalog import extract_catalog
from glue_spherex.errors import SpherexInputError
from glue_spherex.irsa import SpherexClass, conf
from glue_spherex.local_archive import FaultConfig
from glue_spherex.local_archive.synthetic.sky import TARGETS

pytestmark = pytest.mark.slow

M101 = TARGETS["M101"]
TIME = ("60832.5", "60832.54")  # the first exposures of M101: a few images, six detectors


def _catalog(path, n=10, bad=True):
    rng = np.random.default_rng(11)
    ids = [f"star{i}" for i in range(n)]
    ra = list(M101[0] + rng.uniform(-0.05, 0.05, n))
    dec = list(M101[1] + rng.uniform(-0.05, 0.05, n))
    if bad:  # a NaN position and a repeated id: reported, not measured
        ids += ["nowhere", "star0"]
        ra += [np.nan, M101[0]]
        dec += [M101[1], M101[1]]
    Table({"id": ids, "ra": ra, "dec": dec}).write(path, format="ascii.ecsv", overwrite=True)
    return path


def _cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "glue_spherex.cli", "catalog", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _rows(path):
    t = pq.read_table(path).to_pandas()
    return t.sort_values(["id", "s3_key"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def full_run(archive, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("catalog")
    sources = _catalog(tmp / "sources.ecsv")
    out = tmp / "full.parquet"
    p = _cli(str(sources), "-o", str(out), "--archive", archive.url, "--time", *TIME,
             "--workers", "1", "--threads", "4", "--quiet")
    stdout, stderr = p.communicate(timeout=600)
    return dict(code=p.returncode, stderr=stderr, out=out, sources=sources, tmp=tmp)


def test_the_result_is_one_row_per_source_and_image(full_run):
    assert full_run["code"] == 0, full_run["stderr"]
    rows = _rows(full_run["out"])
    plan = Table.read(full_run["out"] / "_plan.parquet")
    assert len(rows) == len(plan) > 20
    assert not rows.duplicated(["id", "s3_key"]).any()
    assert set(rows["id"]) == {f"star{i}" for i in range(10)}
    ok = rows[rows["status"] == "ok"]
    assert len(ok) > 0.8 * len(rows)
    assert np.all(np.isfinite(ok["flux"])) and np.all(ok["flux_err"] > 0)
    assert ok["wavelength"].between(0.7, 5.1).all()
    assert rows["release"].eq("qr2").all() and rows["version"].str.startswith("l2b-").all()
    schema = pq.read_schema(sorted(full_run["out"].glob("part-*.parquet"))[0])
    assert schema.field("flux").metadata == {b"unit": b"uJy"}
    rejected = Table.read(full_run["out"] / "_rejected.ecsv")
    assert sorted(rejected["id"]) == ["nowhere", "star0"]
    assert all(len(r) > 5 for r in rejected["reason"])
    summary = Table.read(full_run["out"] / "_summary.ecsv")
    assert len(summary) == 10 and summary["points"].sum() == len(ok)
    assert "10 sources (2 rejected)" in full_run["stderr"]


def test_it_agrees_with_per_source_spectrum(full_run, archive):
    star = Table.read(full_run["sources"])[3]
    fits_path, ecsv = full_run["tmp"] / "star3.fits", full_run["tmp"] / "star3.ecsv"
    coords = ["--ra", repr(float(star["ra"])), "--dec", repr(float(star["dec"]))]
    fetch = subprocess.run([sys.executable, "-m", "glue_spherex.cli", "fetch", *coords,
                            "--size", "0.02deg", "--time", *TIME, "--archive", archive.url,
                            "-o", str(fits_path)], capture_output=True, text=True, timeout=600)
    assert fetch.returncode == 0, fetch.stderr
    spec = subprocess.run([sys.executable, "-m", "glue_spherex.cli", "spectrum",
                           str(fits_path), *coords, "-o", str(ecsv)],
                          capture_output=True, text=True, timeout=600)
    assert spec.returncode == 0, spec.stderr
    ref = Table.read(ecsv)
    rows = _rows(full_run["out"])
    mine = rows[rows["id"] == "star3"].set_index(["obs_id", "detector"])
    compared = 0
    for r in ref:
        key = (str(r["obs_id"]), int(r["detector"]))
        assert key in mine.index
        got = mine.loc[key]
        assert got["status"] == r["status"]
        if r["status"] == "ok":
            compared += 1
            assert got["flux"] == pytest.approx(float(r["flux"]), rel=1e-9)
            assert got["flux_err"] == pytest.approx(float(r["flux_err"]), rel=1e-9)
            assert got["wavelength"] == pytest.approx(float(r["wavelength"]), rel=1e-12)
    assert compared >= 3 and len(ref) == len(mine)


def test_a_killed_run_resumes_without_duplicates(full_run, make_archive, tmp_path):
    arch = make_archive(latency=0.4)  # ~5 s an image: parts are written while others run
    out = tmp_path / "killed.parquet"
    args = (str(full_run["sources"]), "-o", str(out), "--archive", arch.url, "--time",
            *TIME, "--workers", "1", "--threads", "2", "--quiet")
    p = _cli(*args, start_new_session=True)
    deadline = time.monotonic() + 300
    while not list(out.glob("part-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL)  # the first part is written, the others not yet
    p.communicate(timeout=60)
    done = sum(pq.read_metadata(f).num_rows for f in out.glob("part-*.parquet"))
    assert 0 < done < len(_rows(full_run["out"]))
    again = _cli(*args)
    _, stderr = again.communicate(timeout=600)
    assert again.returncode == 0, stderr
    assert "already done before" in stderr
    a, b = _rows(full_run["out"]), _rows(out)
    assert len(a) == len(b) and not b.duplicated(["id", "s3_key"]).any()
    assert np.array_equal(a["flux"].to_numpy(), b["flux"].to_numpy(), equal_nan=True)
    assert list(a["status"]) == list(b["status"])


def test_other_options_on_the_same_output_are_refused(full_run, archive):
    with pytest.raises(SpherexInputError, match="other options: radius 6.0 .now 9.0"):
        extract_catalog(full_run["sources"], full_run["out"], radius=9,
                        time_range=tuple(float(t) for t in TIME),
                        archive=SpherexClass(archive_url=archive.url), progress=False)


def test_a_worker_killed_mid_run_changes_nothing(full_run, make_archive, tmp_path):
    from distributed import Client, LocalCluster

    arch = make_archive(latency=0.25)  # slow enough that the kill lands mid-run
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        killed = {}

        def kill_one():
            time.sleep(8)
            pids = client.run(os.getpid)
            victim = sorted(pids)[0]
            os.kill(pids[victim], signal.SIGKILL)
            killed.update(pid=pids[victim], at=time.monotonic())

        killer = threading.Thread(target=kill_one)
        killer.start()
        result = extract_catalog(full_run["sources"], tmp_path / "k.parquet",
                                 scheduler=cluster.scheduler_address,
                                 time_range=tuple(float(t) for t in TIME),
                                 archive=SpherexClass(archive_url=arch.url), progress=False)
        ended = time.monotonic()
        killer.join()
        assert killed and killed["at"] < ended  # the worker died while the run was going
        assert killed["pid"] not in client.run(os.getpid).values()
    assert result.failed_images == 0
    a, b = _rows(full_run["out"]), _rows(tmp_path / "k.parquet")
    assert len(a) == len(b) and not b.duplicated(["id", "s3_key"]).any()
    assert np.array_equal(a["flux"].to_numpy(), b["flux"].to_numpy(), equal_nan=True)


def test_failed_images_are_recorded_and_tried_again(full_run, make_archive, tmp_path):
    arch = make_archive(p_500=1.0)
    out = tmp_path / "faulty.parquet"
    kwargs = dict(time_range=tuple(float(t) for t in TIME), workers=1, threads_per_worker=4,
                  archive=SpherexClass(archive_url=arch.url), progress=False)
    with conf.set_temp("max_retries", 0):
        first = extract_catalog(full_run["sources"], out, **kwargs)
        assert first.failed_images == first.images > 0 and first.rows == 0
        failed = Table.read(out / "_failed.ecsv")
        assert len(failed) == len(Table.read(out / "_plan.parquet"))
        assert all("HTTP 500" in r for r in failed["reason"])
        assert (Table.read(out / "_summary.ecsv")["failed"] > 0).all()
        arch.faults = FaultConfig()  # the archive recovers; the same run again
        second = extract_catalog(full_run["sources"], out, **kwargs)
    assert second.failed_images == 0 and second.images_done_before == 0
    assert len(Table.read(out / "_failed.ecsv")) == 0
    a, b = _rows(full_run["out"]), _rows(out)
    assert np.array_equal(a["flux"].to_numpy(), b["flux"].to_numpy(), equal_nan=True)
