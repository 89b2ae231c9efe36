"""The ``glue-spherex`` command line: one-line errors and exit codes, fetch end to end, resume
after SIGKILL, Ctrl-C, and the self-contained demo.

Commands that must behave like a real installation (signals, tracebacks, exit codes) run in a
subprocess (``python -m glue_spherex.cli``) against the local archive served by this process.
"""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from astropy.coordinates.name_resolve import sesame_url
from astropy.io import fits
from astropy.table import Table

from glue_spherex.cli.main import SUBCOMMANDS, build_parser, main
from glue_spherex.download.cache import CutoutCache
from glue_spherex.fitsbytes.scan import scan_spectral_image
from glue_spherex.irsa.core import SpherexClass
from glue_spherex.local_archive import FaultConfig
from glue_spherex.products.combined import read_combined
from glue_spherex.products.spectral_image import SpectralImage

RA, DEC = "210.80227", "54.34895"
UNREACHABLE = "http://127.0.0.1:9"  # nothing listens on the discard port of loopback


def run_cli(*args, timeout=120):
    env = dict(os.environ, GLUE_SPHEREX_ARCHIVE_URL=UNREACHABLE)
    return subprocess.run([sys.executable, "-m", "glue_spherex.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def start_cli(*args):
    env = dict(os.environ, GLUE_SPHEREX_ARCHIVE_URL=UNREACHABLE)
    return subprocess.Popen([sys.executable, "-m", "glue_spherex.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def main_in_process(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return info.value.code, out, err


def assert_one_line_error(err, *fragments):
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("glue-spherex: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], err


# -- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("args, code, fragments", [
    (["fetch", "--ra", "10", "--dec", "95"], 2, ["Dec 95", "[-90, 90]"]),
    (["fetch", "--ra", RA, "--dec", DEC, "--size", "-0.1"], 2, ["size", "positive"]),
    (["fetch", "--ra", RA, "--dec", DEC, "--size=-6arcmin"], 2, ["size", "positive"]),
    (["fetch", "--ra", RA, "--dec", DEC, "--size", "-6arcmin"], 2, ["size", "positive"]),
    (["spectrum", "x.fits", "--ra", RA, "--dec", DEC, "--radius", "-3arcsec"], 2,
     ["radius '-3arcsec' must be a positive angle"]),
    (["archive", "--port", "99999"], 2, ["port '99999' must be from 0 to 65535"]),
    (["archive", "--p-503", "1.5"], 2, ["probability '1.5'"]),
    # outputs that cannot be written: exit 1, before any work
    (["fetch", "--ra", RA, "--dec", DEC, "-o", "missing/x.fits"], 1,
     ["directory missing does not exist"]),
    (["fetch", "--ra", RA, "--dec", DEC, "-o", "."], 1, ["is a directory"]),
    (["fetch", "--ra", RA, "--dec", DEC, "--quicklook", "missing/x.png"], 1, ["missing"]),
    (["spectrum", "nonexistent.fits", "--ra", RA, "--dec", DEC, "-o", "missing/x.ecsv"], 1,
     ["cannot write missing/x.ecsv", "does not exist"]),
    (["query", "--ra", RA, "--dec", DEC, "-o", "missing/t.ecsv"], 1, ["does not exist"]),
    (["fetch", "--ra", RA, "--dec", DEC, "--size", "3kg"], 2, ["size", "0.1deg"]),
    (["fetch", "--ra", RA, "--dec", DEC, "--bandpass", "D7"], 2, ["'D7'", "D1-D6"]),
    (["query", "--ra", RA, "--dec", DEC, "-b", "D2' OR '1'='1"], 2, ["D2' OR '1'='1", "D1-D6"]),
    (["fetch"], 2, ["TARGET", "--ra"]),
    (["fetch", "M101", "--ra", RA, "--dec", DEC], 2, ["either TARGET"]),
    (["fetch", "--ra", RA, "--dec", DEC, "--workers", "0"], 2, ["workers"]),
    (["fetch", "--ra", RA, "--dec", DEC, "--archive", "ftp://example.org"], 2, ["archive URL"]),
    (["fetch", "--ra", RA, "--dec", DEC, "--collection", "all"], 2, ["collection"]),
    (["fetch", "--ra", RA, "--dec", DEC, "--time", "61000", "soon"], 2, ["MJD 'soon'"]),
    (["fetch", "--ra", RA, "--dec", DEC, "--time", "61010", "61000"], 2, ["time range"]),
    (["nonsense"], 2, ["invalid choice"]),
    # no service listens at the archive URL
    (["query", "--ra", RA, "--dec", DEC], 3,
     ["TAP query to", "failed: cannot connect to 127.0.0.1:9 (Connection refused)"]),
    (["fetch", "--ra", RA, "--dec", DEC, "--via", "sia"], 3, ["SIA query to"]),
])
def test_bad_input_is_one_line(args, code, fragments, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("GLUE_SPHEREX_ARCHIVE_URL", UNREACHABLE)
    monkeypatch.chdir(tmp_path)
    got, out, err = main_in_process(args, capsys)
    assert got == code
    assert_one_line_error(err, *fragments)
    for word in ("HTTPConnectionPool", "urllib3", "SkyCoord", "Errno"):
        assert word not in err
    assert not list(tmp_path.iterdir())  # nothing written


def test_unknown_target_without_resolver(capsys, monkeypatch):
    monkeypatch.setenv("GLUE_SPHEREX_ARCHIVE_URL", UNREACHABLE)
    with sesame_url.set([UNREACHABLE + "/sesame/"]):
        code, out, err = main_in_process(["fetch", "NGC 5457"], capsys)
    assert code == 3
    assert_one_line_error(err, "could not resolve 'NGC 5457'", "give --ra/--dec")
    assert "SkyCoord" not in err


def test_a_file_that_is_not_spherex_is_bad_input(capsys, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a FITS file\n")
    code, out, err = main_in_process(
        ["spectrum", str(notes), "--ra", RA, "--dec", DEC, "-o", str(tmp_path / "s.ecsv")], capsys)
    assert code == 2
    assert_one_line_error(err, "notes.txt", "not a FITS file")
    assert not (tmp_path / "s.ecsv").exists()


@pytest.mark.slow
def test_real_process_reports_one_line(tmp_path):
    # the installed entry point, in a real process: no traceback, documented exit code
    result = run_cli("fetch", "--ra", "10", "--dec", "95", "-o", str(tmp_path / "x.fits"))
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "Dec 95")
    result = run_cli("query", "--ra", RA, "--dec", DEC, "-b", "D2")
    assert result.returncode == 3
    assert_one_line_error(result.stderr, UNREACHABLE)


def test_help_documents_exit_codes_and_subcommands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for word in ("query", "fetch", "demo", "archive", "130", "GLUE_SPHEREX_ARCHIVE_URL"):
        assert word in text
    parser = build_parser()
    names = set(parser._subparsers._group_actions[0].choices)
    assert {"query", "fetch", "demo", "archive"} <= names
    assert len(names) == len(SUBCOMMANDS)  # one subcommand per module
    for name in names:  # every subcommand's help says what its exit codes mean
        with pytest.raises(SystemExit):
            main([name, "--help"])
        assert "exit codes:" in capsys.readouterr().out, name


# -- against the local archive -----------------------------------------------------------------

def test_query_writes_a_table(archive, tmp_path, capsys):
    out = tmp_path / "m101.ecsv"
    code, stdout, err = main_in_process(
        ["query", "--ra", RA, "--dec", DEC, "-b", "SPHEREx-D2", "-b", "D5",
         "--archive", archive.url, "-o", str(out)], capsys)
    assert code == 0 and err == ""
    table = Table.read(out)
    api = SpherexClass(archive.url).query_region((float(RA), float(DEC)), bandpass=[2, 5])
    assert list(table["obs_id"]) == list(api["obs_id"])
    assert f"{len(api)} images" in stdout


@pytest.mark.slow
def test_fetch_end_to_end(archive, tmp_path):
    out, png = tmp_path / "m101.fits", tmp_path / "m101.png"
    result = run_cli("fetch", "--ra", RA, "--dec", DEC, "-b", "D2", "--size", "20px",
                     "--archive", archive.url, "-o", str(out), "--quicklook", str(png))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    table, products = read_combined(out)
    api = SpherexClass(archive.url).query_region((float(RA), float(DEC)), bandpass="D2")
    assert len(products) == len(api) == len(table)
    assert set(table["status"]) == {"ok"}
    assert sorted(p.obsid for p in products) == sorted(api["obs_id"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {out}: {len(api)} of {len(api)} cutouts" in result.stdout


@pytest.mark.slow
def test_failed_cutouts_exit_1_with_file(make_archive, tmp_path):
    arch = make_archive(p_500=1.0)  # every cutout request fails; TAP still answers
    out = tmp_path / "m101.fits"
    result = run_cli("fetch", "--ra", RA, "--dec", DEC, "-b", "D2", "--time", "60800", "60900",
                     "--archive", arch.url, "-o", str(out), "--retries", "1")
    assert result.returncode == 1, result.stderr
    table = Table.read(out, hdu="CUTOUT_INFO")
    assert len(table) > 0 and set(table["status"]) == {"failed"}
    assert fits.getheader(out)["NCUTOUT"] == 0
    assert all(str(r).startswith("gave up after 2 attempts: HTTP 500") for r in table["reason"])
    assert "failed: gave up after 2 attempts: HTTP 500" in result.stdout


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


@pytest.mark.slow
def test_sigkill_then_resume(make_archive, tmp_path):
    arch = make_archive(latency=0.3)
    cache, out = tmp_path / "cache", tmp_path / "m101.fits"
    args = ["fetch", "--ra", RA, "--dec", DEC, "-b", "D2", "--size", "20px", "--archive",
            arch.url, "--cache", str(cache), "-o", str(out), "--workers", "4"]
    proc = start_cli(*args)
    try:
        wait_for(lambda: cache.is_dir() and len(list(cache.glob("*.fits"))) >= 10)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    # no corrupt file at a final path: every cached cutout is complete, the MEF not there
    assert not out.exists()
    cached = {p.name for p in cache.glob("*.fits")}
    for path in cache.glob("*.fits"):
        data = path.read_bytes()
        scan_spectral_image(data)
        SpectralImage.open(data).close()
    table = SpherexClass(arch.url).query_region((float(RA), float(DEC)), bandpass="D2",
                                                  size="20px")
    assert len(cached) < len(table)  # killed mid-way
    store = CutoutCache(cache)
    done = {url for url in table["cutout_url"] if store.path_for(url).name in cached}
    assert len(done) == len(cached)

    arch.faults = FaultConfig()  # the rerun need not be slow
    n0 = len(arch.log)
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    requested = {f"{arch.url}{r.path}?{r.query}" for r in arch.log[n0:]
                 if r.path.startswith("/ibe/")}
    assert not requested & done  # nothing complete was downloaded again
    assert requested == set(table["cutout_url"]) - done
    info, products = read_combined(out)
    assert len(products) == len(table)
    # from the killed run's partial file or from the cache: every one of them, no download
    kept = re.search(r"\((?:(\d+) kept from the unfinished file, )?(\d+) from cache",
                     result.stdout)
    assert int(kept[1] or 0) + int(kept[2]) == len(done), result.stdout


@pytest.mark.slow
def test_ctrl_c_keeps_what_arrived_and_the_same_command_resumes(make_archive, tmp_path):
    arch = make_archive(latency=0.3)
    out = tmp_path / "m101.fits"
    args = ["fetch", "--ra", RA, "--dec", DEC, "-b", "D2", "--size", "20px",
            "--archive", arch.url, "-o", str(out), "--workers", "4"]
    proc = start_cli(*args)
    try:
        wait_for(lambda: sum(r.status == 200 for r in arch.log) >= 8)
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    table, products = read_combined(out)
    assert stderr.strip().splitlines() == [
        f"glue-spherex: interrupted; the {len(products)} cutouts that arrived are in {out}; "
        "rerun the same command to resume"]
    header = fits.getheader(out)
    assert header["NCUTOUT"] == len(products) >= 1
    assert header["NMISSING"] > 0
    assert len(table) == header["NCUTOUT"] + header["NFAILED"] + header["NMISSING"]
    arrived = {p.access_url for p in products}

    # the same command again resumes from the file (no cache, no --overwrite)
    arch.faults = FaultConfig()
    n0 = len(arch.log)
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    requested = {f"{arch.url}{r.path}?{r.query}" for r in arch.log[n0:]
                 if r.path.startswith("/ibe/")}
    table, products = read_combined(out)
    assert not requested & arrived and requested | arrived == set(table["access_url"])
    assert set(table["status"]) == {"ok"} and len(products) == len(table)
    assert f"{len(arrived)} kept from the unfinished file" in result.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["m101.fits"]
    result = run_cli(*args)  # and once more: nothing left to do
    assert result.returncode == 0 and "already holds all" in result.stdout


@pytest.mark.slow
def test_sigkill_without_cache_resumes_from_the_partial_file(make_archive, tmp_path):
    arch = make_archive(latency=0.3)
    out = tmp_path / "m101.fits"
    args = ["fetch", "--ra", RA, "--dec", DEC, "-b", "D2", "--size", "20px", "--archive",
            arch.url, "-o", str(out), "--workers", "4"]

    def partial_bytes():
        return sum(p.stat().st_size for p in tmp_path.glob(".m101.fits.*.part"))

    proc = start_cli(*args)
    try:
        wait_for(lambda: partial_bytes() >= 30_000_000)  # several cutouts on disk
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert not out.exists()  # never a partial file at the final path

    arch.faults = FaultConfig()
    n0 = len(arch.log)
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    kept = int(re.search(r"\((\d+) kept from the unfinished file", result.stdout)[1])
    requested = {f"{arch.url}{r.path}?{r.query}" for r in arch.log[n0:]
                 if r.path.startswith("/ibe/")}
    table, products = read_combined(out)
    assert kept >= 4 and len(requested) == len(table) - kept
    assert set(table["status"]) == {"ok"} and len(products) == len(table)
    assert sorted(p.access_url for p in products) == sorted(table["access_url"])
    assert [p.name for p in tmp_path.iterdir()] == ["m101.fits"]  # the leftovers are gone


@pytest.mark.slow
def test_double_ctrl_c_never_claims_what_is_not_there(make_archive, tmp_path):
    arch = make_archive(latency=0.3)
    out = tmp_path / "dbl.fits"
    proc = start_cli("fetch", "--ra", RA, "--dec", DEC, "-b", "D2", "--size", "20px",
                     "--archive", arch.url, "-o", str(out), "--workers", "4")
    try:
        wait_for(lambda: sum(r.status == 200 for r in arch.log) >= 8)
    finally:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("glue-spherex: interrupted"), stderr
    if f"are in {out}" in lines[0]:
        read_combined(out)  # the claim holds: a valid file is there
    else:
        assert not out.exists() and "was not written" in lines[0]
    assert [p.name for p in tmp_path.iterdir()] in ([], ["dbl.fits"])  # nothing half-written


def test_ctrl_c_while_starting_is_one_line(tmp_path):
    proc = start_cli("fetch", "--ra", RA, "--dec", DEC, "-o", str(tmp_path / "x.fits"))
    time.sleep(0.3)  # still importing
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["glue-spherex: interrupted"], stderr


@pytest.mark.slow
def test_two_fetches_of_one_output_never_mix(archive, tmp_path):
    out = tmp_path / "same.fits"
    runs = [start_cli("fetch", "--ra", RA, "--dec", DEC, "-b", band, "--size", "20px",
                      "--archive", archive.url, "-o", str(out), "--workers", "2")
            for band in ("D1", "D3")]
    outcomes = [(p.wait(timeout=300), p.communicate()[1]) for p in runs]
    assert sorted(code for code, _ in outcomes)[0] == 0, outcomes  # one of them wrote it
    for code, err in outcomes:
        if code:  # the other failed at once, saying why, in one line
            assert code in (1, 2)
            assert_one_line_error(err)
            assert "being written by another" in err or "not an unfinished" in err, err
    table, products = read_combined(out)
    assert len({p.detector for p in products}) == 1  # one query's cutouts, not a mixture
    rows = {int(r["cutout_index"]): r for r in table}
    for product in products:
        assert rows[product.cutout_index]["obs_id"] == product.obsid
        assert rows[product.cutout_index]["access_url"] == product.access_url
    assert [p.name for p in tmp_path.iterdir()] == ["same.fits"]


def test_broken_pipe_exits_quietly(archive):
    env = dict(os.environ, GLUE_SPHEREX_ARCHIVE_URL=archive.url)
    proc = subprocess.Popen([sys.executable, "-m", "glue_spherex.cli", "query", "--ra", RA,
                             "--dec", DEC], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # `| head` that has already gone
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0
    assert err == ""


def test_read_only_cache_is_an_error_before_the_query(archive, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "spx-ro", str(ro)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a read-only tmpfs here ({done.stderr.strip()})")
    try:
        n0 = len(archive.log)
        result = run_cli("fetch", "--ra", RA, "--dec", DEC, "-b", "D2", "--archive",
                         archive.url, "-o", str(tmp_path / "x.fits"), "--cache", str(ro))
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)
    assert result.returncode == 1
    assert_one_line_error(result.stderr, f"the cache directory {ro} cannot be written",
                          "Read-only file system")
    assert len(archive.log) == n0  # not even the query went out
    assert not (tmp_path / "x.fits").exists()


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    result = run_cli("demo", "--out", str(tmp_path / "demo"), timeout=300)
    assert result.returncode == 0, result.stderr
    fits_path, png = tmp_path / "demo" / "m101_d2.fits", tmp_path / "demo" / "m101_d2.png"
    table, products = read_combined(fits_path)
    assert len(products) == len(table) > 10
    assert {p.detector for p in products} == {2}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(fits_path.resolve().parent) in result.stdout
