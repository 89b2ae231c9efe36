"""What ``fetch_to_file`` does with its files: one bad cutout stays one failed row, an
unfinished file is resumed, and output or cache problems (a read-only directory, a full
disk) are found before downloading or reported with what became of the data -- against the
local archive, with real small file systems (tmpfs) where the test can mount them.
"""

import contextlib
import os
import re
import subprocess
import threading
import uuid

import pytest
from astropy.io import fits

from glue_spherex.download.cache import CutoutCache
from glue_spherex.download.fetcher import Fetcher, fetch_cutouts, fetch_to_file
from glue_spherex.errors import SpherexInputError, SpherexOutputError
from glue_spherex.irsa.core import SpherexClass
from glue_spherex.products.combined import read_combined

M101 = (210.80227, 54.34895)


def query(arch, bandpass="D2", size="20px", n=6):
    return SpherexClass(arch.url).query_region(M101, size=size, bandpass=bandpass)[:n]


def cutout_requests(arch, since):
    return [r for r in arch.log[since:] if r.path.startswith("/ibe/")]


def with_card(data, key, value):
    """``data`` (a FITS file) with the first ``key`` card replaced by ``key = value``."""
    head = f"{key:8}= ".encode()
    for pos in range(0, len(data), 80):
        if data[pos:pos + 10] == head:
            card = f"{key:8}= {value}".ljust(80).encode()
            return data[:pos] + card + data[pos + 80:]
    raise AssertionError(f"no {key} card")


@contextlib.contextmanager
def tmpfs(directory, size="20m", options=""):
    """Mount a small tmpfs at ``directory`` (skips the test where mounting is not allowed)."""
    directory.mkdir()
    opts = f"size={size}" + (f",{options}" if options else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, f"spx-{uuid.uuid4().hex[:8]}",
                           str(directory)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'})")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


# -- one bad cutout ---------------------------------------------------------------------------

def test_a_cutout_that_cannot_be_parsed_fails_alone(archive, tmp_path):
    table = query(archive, n=6)
    cache = CutoutCache(tmp_path / "cache")
    first = list(fetch_cutouts(table, workers=3, cache_dir=cache.directory))
    assert all(r.ok for r in first)
    # a body that passes the download check but has DETECTOR = 'abc' (in the cache the
    # fetch reads: the same path a downloaded body takes)
    bad = table["cutout_url"][2]
    path = cache.path_for(bad)
    path.write_bytes(with_card(path.read_bytes(), "DETECTOR", "'abc'"))

    out = tmp_path / "m101.fits"
    n0 = len(archive.log)
    summary = fetch_to_file(table, out, workers=3, cache_dir=cache.directory)
    assert not cutout_requests(archive, n0)  # all from the cache, the bad one included
    assert (summary.ok, summary.failed, summary.total) == (5, 1, 6)
    (index, reason), = summary.failures
    assert index == 3 and reason.startswith("unreadable product") and "abc" in reason
    info, products = read_combined(out)
    assert len(products) == 5
    row = info[info["cutout_index"] == 3][0]
    assert row["status"] == "failed" and "abc" in row["reason"]
    assert fits.getheader(out)["NFAILED"] == 1


# -- resuming ---------------------------------------------------------------------------------

def test_an_unfinished_file_is_resumed_without_overwrite(archive, tmp_path):
    table = query(archive, n=8)
    out = tmp_path / "m101.fits"
    cancel = threading.Event()

    def stop_after_three(done, total, result):
        if done == 3:
            cancel.set()

    first = fetch_to_file(table, out, workers=1, cancel=cancel, progress=stop_after_three)
    assert 3 <= first.ok < 8 and first.ok + first.cancelled == 8  # (results already queued)
    assert fits.getheader(out)["NMISSING"] == first.cancelled

    n0 = len(archive.log)
    second = fetch_to_file(table, out, workers=3)  # same query, no overwrite: resumes
    fetched = {f"{archive.url}{r.path}?{r.query}" for r in cutout_requests(archive, n0)}
    info, products = read_combined(out)
    assert (second.ok, second.resumed, second.total) == (8, first.ok, 8)
    assert len(fetched) == first.cancelled  # only what was missing
    assert sorted(p.access_url for p in products) == sorted(table["cutout_url"])
    assert set(info["status"]) == {"ok"}
    assert [p.name for p in tmp_path.iterdir()] == ["m101.fits"]

    n1 = len(archive.log)
    third = fetch_to_file(table, out, workers=3)  # complete: nothing to do
    assert third.ok == third.resumed == 8 and not cutout_requests(archive, n1)


def test_a_file_of_another_query_is_not_resumed(archive, tmp_path):
    out = tmp_path / "d1.fits"
    fetch_to_file(query(archive, bandpass="D1", n=2), out, workers=2)
    before = out.read_bytes()
    with pytest.raises(SpherexInputError, match="not an unfinished file of this query"):
        fetch_to_file(query(archive, bandpass="D3", n=2), out, workers=2)
    (tmp_path / "notes.fits").write_text("not FITS")
    with pytest.raises(SpherexInputError, match="--overwrite"):
        fetch_to_file(query(archive, bandpass="D3", n=2), tmp_path / "notes.fits")
    assert out.read_bytes() == before


# -- output and cache problems ----------------------------------------------------------------

def test_output_problems_are_found_before_downloading(archive, tmp_path):
    table = query(archive, n=3)
    n0 = len(archive.log)
    with pytest.raises(SpherexOutputError, match="is a directory"):
        fetch_to_file(table, tmp_path)
    with pytest.raises(SpherexOutputError, match="does not exist"):
        fetch_to_file(table, tmp_path / "missing" / "x.fits")
    assert not cutout_requests(archive, n0)


def test_a_read_only_cache_or_output_is_an_error_before_any_download(archive, tmp_path):
    with tmpfs(tmp_path / "ro", size="1m", options="ro") as ro:
        with pytest.raises(SpherexOutputError, match=f"cache directory {ro}.*Read-only"):
            Fetcher(cache_dir=ro)
        n0 = len(archive.log)
        with pytest.raises(SpherexOutputError, match="cache directory"):
            fetch_to_file(query(archive, n=3), tmp_path / "x.fits", cache_dir=ro / "sub")
        with pytest.raises(SpherexOutputError,
                           match=f"cannot write output {ro}/x.fits: Read-only file system"):
            fetch_to_file(query(archive, n=3), ro / "x.fits")
        assert not cutout_requests(archive, n0)
    assert not (tmp_path / "x.fits").exists()


def test_not_enough_space_is_refused_before_downloading(archive, tmp_path):
    table = query(archive, size="0.1deg", n=6)  # about 5.1 MB each: 31 MB
    with tmpfs(tmp_path / "small", size="20m") as small:
        n0 = len(archive.log)
        with pytest.raises(SpherexOutputError, match=r"not enough free space .* MB needed"):
            fetch_to_file(table, small / "m101.fits", workers=2)
        assert not cutout_requests(archive, n0)
        assert os.listdir(small) == []


def test_a_disk_that_fills_up_leaves_nothing_half_written(archive, tmp_path):
    table = query(archive, size="0.1deg", n=6)
    cache = tmp_path / "cache"  # on another file system: it keeps every cutout
    with tmpfs(tmp_path / "small", size="40m") as small:
        out = small / "m101.fits"

        def fill_the_disk(done, total, result):
            if done == 1:  # another program fills the disk once the download has begun
                free = os.statvfs(small).f_bavail * os.statvfs(small).f_frsize
                with open(small / "filler", "wb") as f:
                    f.truncate(0)
                    f.write(b"\0" * (free - 2_000_000))

        with pytest.raises(SpherexOutputError) as info:
            fetch_to_file(table, out, workers=2, cache_dir=cache, progress=fill_the_disk)
        message = str(info.value)
        assert str(out) in message and "No space left on device" in message
        cached = re.search(rf"([1-6]) of 6 cutouts were downloaded and are in the cache "
                           rf"{cache}", message)
        assert cached, message
        assert "rerun the same command to resume" in message
        left = sorted(os.listdir(small))
        assert all(not name.endswith(".part") and not name.endswith(".lock") for name in left)
        if "m101.fits" in left:  # finished with the cutouts that fit: a valid file
            info_table, products = read_combined(out)
            assert len(products) < 6 and f"it holds {len(products)} of 6" in message
            for product in products:
                product.close()
        else:
            assert "nothing was written there" in message
        (small / "filler").unlink()
        summary = fetch_to_file(table, out, workers=2, cache_dir=cache)  # rerun: resumes
        # nothing that had arrived is downloaded again (the file's cutouts are cached too)
        assert summary.ok == 6 and summary.from_cache + summary.resumed == int(cached[1])


def test_a_cache_that_fills_up_is_reported(archive, tmp_path, capsys):
    from glue_spherex.cli.fetch import fetch_and_report

    table = query(archive, size="0.1deg", n=6)  # 5.1 MB each
    with tmpfs(tmp_path / "cache", size="12m") as cache:
        summary = fetch_to_file(table, tmp_path / "m101.fits", workers=2, cache_dir=cache)
        assert summary.ok == 6  # the cutouts themselves are all there ...
        assert summary.uncached >= 3  # ... but the cache could not keep them all
        assert "No space left on device" in summary.cache_problem
        assert not [n for n in os.listdir(cache) if n.endswith(".part")]  # no half files
        # the command line says so
        code = fetch_and_report(table, tmp_path / "again.fits", workers=2,
                                    cache_dir=cache, overwrite=False, quicklook=None,
                                    progress_bar=False)
    err = capsys.readouterr().err
    assert code == 0
    assert re.search(rf"warning: \d cutouts could not be kept in the cache {cache} "
                     r"\(No space left on device\)", err), err


def test_stale_temporary_files_in_the_cache_are_cleaned(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    dead = subprocess.run(["python3", "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = cache / f".{'a' * 40}.fits.{dead}-1-0.part"  # what a killed run leaves
    stale.write_bytes(b"\0" * 1000)
    kept = cache / ("b" * 40 + ".fits")
    kept.write_bytes(b"x")
    Fetcher(cache_dir=cache)
    assert sorted(p.name for p in cache.iterdir()) == [kept.name]


def test_an_internal_error_keeps_the_cutouts_already_written(archive, tmp_path):
    table = query(archive, n=6)
    out = tmp_path / "m101.fits"

    def bug(done, total, result):
        if done == 4:
            raise RuntimeError("a bug in the caller")

    with pytest.raises(RuntimeError, match="a bug"):
        fetch_to_file(table, out, workers=2, progress=bug)
    info, products = read_combined(out)  # finished with what had arrived
    assert len(products) == 3 and fits.getheader(out)["NMISSING"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["m101.fits"]
    summary = fetch_to_file(table, out, workers=2)  # and the same call resumes it
    assert (summary.ok, summary.resumed) == (6, 3)
