"""The ``glue-spherex`` command line: one-line errors and exit codes, fetch end to end, resume
after SIGKILL, Ctrl-C, and the self-contained demo.

Commands that must behave like a real installation (signals, tracebacks, exit codes) run in a
subprocess (``python -m glue_spherex.cli``) against the local archive served by this process.
"""

import os
import signal
import subprocess
import sys
import time

import pytest
from astropy.coordinates.name_resolve import sesame_url
from astropy.io import fits
from astropy.table import Table

from glue_spherex import cli
from glue_spherex.archive import FaultConfig
from glue_spherex.cache import CutoutCache
from glue_spherex.combined import read_combined
from glue_spherex.fitsscan import scan_spectral_image
from glue_spherex.products import SpectralImage
from glue_spherex.query import SpherexArchive

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
        cli.main(args)
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
    (["query", "--ra", RA, "--dec", DEC], 3, ["TAP query to", "failed"]),
    (["fetch", "--ra", RA, "--dec", DEC, "--via", "sia"], 3, ["SIA query to"]),
])
def test_bad_input_is_one_line(args, code, fragments, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("GLUE_SPHEREX_ARCHIVE_URL", UNREACHABLE)
    monkeypatch.chdir(tmp_path)
    got, out, err = main_in_process(args, capsys)
    assert got == code
    assert_one_line_error(err, *fragments)
    assert not list(tmp_path.iterdir())  # nothing written


def test_unknown_target_without_resolver(capsys, monkeypatch):
    monkeypatch.setenv("GLUE_SPHEREX_ARCHIVE_URL", UNREACHABLE)
    with sesame_url.set([UNREACHABLE + "/sesame/"]):
        code, out, err = main_in_process(["fetch", "NGC 5457"], capsys)
    assert code == 3
    assert_one_line_error(err, "could not resolve 'NGC 5457'", "give --ra/--dec")


def test_a_file_that_is_not_spherex_is_bad_input(capsys, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a FITS file\n")
    code, out, err = main_in_process(
        ["spectrum", str(notes), "--ra", RA, "--dec", DEC, "-o", str(tmp_path / "s.ecsv")], capsys)
    assert code == 2
    assert_one_line_error(err, "notes.txt", "not a FITS file")
    assert not (tmp_path / "s.ecsv").exists()


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
        cli.main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for word in ("query", "fetch", "demo", "archive", "130", "GLUE_SPHEREX_ARCHIVE_URL"):
        assert word in text
    parser = cli.build_parser()
    names = set(parser._subparsers._group_actions[0].choices)
    assert {"query", "fetch", "demo", "archive"} <= names
    assert len(names) == len(cli.SUBCOMMANDS)  # one subcommand per registry entry


# -- against the local archive -----------------------------------------------------------------

def test_query_writes_a_table(archive, tmp_path, capsys):
    out = tmp_path / "m101.ecsv"
    code, stdout, err = main_in_process(
        ["query", "--ra", RA, "--dec", DEC, "-b", "SPHEREx-D2", "-b", "D5",
         "--archive", archive.url, "-o", str(out)], capsys)
    assert code == 0 and err == ""
    table = Table.read(out)
    api = SpherexArchive(archive.url).query_region((float(RA), float(DEC)), bandpass=[2, 5])
    assert list(table["obs_id"]) == list(api["obs_id"])
    assert f"{len(api)} images" in stdout


def test_fetch_end_to_end(archive, tmp_path):
    out, png = tmp_path / "m101.fits", tmp_path / "m101.png"
    result = run_cli("fetch", "--ra", RA, "--dec", DEC, "-b", "D2", "--size", "20px",
                     "--archive", archive.url, "-o", str(out), "--quicklook", str(png))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    table, products = read_combined(out)
    api = SpherexArchive(archive.url).query_region((float(RA), float(DEC)), bandpass="D2")
    assert len(products) == len(api) == len(table)
    assert set(table["status"]) == {"ok"}
    assert sorted(p.obsid for p in products) == sorted(api["obs_id"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {out}: {len(api)} of {len(api)} cutouts" in result.stdout


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
    table = SpherexArchive(arch.url).query_region((float(RA), float(DEC)), bandpass="D2",
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
    assert f"({len(done)} from cache" in result.stdout


def test_ctrl_c_keeps_what_arrived(make_archive, tmp_path):
    arch = make_archive(latency=0.3)
    out = tmp_path / "m101.fits"
    proc = start_cli("fetch", "--ra", RA, "--dec", DEC, "-b", "D2", "--size", "20px",
                     "--archive", arch.url, "-o", str(out), "--workers", "4")
    try:
        wait_for(lambda: sum(r.status == 200 for r in arch.log) >= 8)
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines() == [
        f"glue-spherex: interrupted; the cutouts that arrived are in {out}"]
    table, products = read_combined(out)
    header = fits.getheader(out)
    assert header["NCUTOUT"] == len(products) >= 1
    assert header["NMISSING"] > 0
    assert len(table) == header["NCUTOUT"] + header["NFAILED"] + header["NMISSING"]


def test_demo_end_to_end(tmp_path):
    result = run_cli("demo", "--out", str(tmp_path / "demo"), timeout=300)
    assert result.returncode == 0, result.stderr
    fits_path, png = tmp_path / "demo" / "m101_d2.fits", tmp_path / "demo" / "m101_d2.png"
    table, products = read_combined(fits_path)
    assert len(products) == len(table) > 10
    assert {p.detector for p in products} == {2}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(fits_path.resolve().parent) in result.stdout
