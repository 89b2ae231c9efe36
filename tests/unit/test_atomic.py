"""The one way glue-spherex writes files: a temporary name of its own, renamed on success;
one writer per output; outputs checked before work starts."""

import os
import subprocess
import sys
import threading

import pytest

from glue_spherex.errors import SpherexOutputError
from glue_spherex.fitsbytes.atomic import (
    atomic_path,
    check_output,
    output_lock,
    remove_stale_temporaries,
    temporary_path,
    write_bytes,
)


def test_success_renames_and_leaves_nothing_else(tmp_path):
    out = tmp_path / "a.fits"
    with atomic_path(out) as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".part")
        assert not out.exists()
        tmp.write_bytes(b"new")
        assert not out.exists()          # nothing at the final name while writing
    assert out.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.fits"]


def test_failure_keeps_the_old_file_and_removes_the_part(tmp_path):
    out = write_bytes(tmp_path / "a.fits", b"old")
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.fits"]


def test_missing_directory_is_one_clear_error(tmp_path):
    with pytest.raises(SpherexOutputError, match="does not exist"):
        write_bytes(tmp_path / "nope" / "a.fits", b"x")


def test_temporary_names_are_never_shared(tmp_path):
    names = {temporary_path(tmp_path / "a.fits") for _ in range(100)}
    assert len(names) == 100
    assert all(n.parent == tmp_path and n.name.startswith(".a.fits.") for n in names)


def test_a_second_writer_of_one_output_is_refused(tmp_path):
    out = tmp_path / "a.fits"
    with output_lock(out):
        with output_lock(out):  # the same thread may take it again (nested)
            pass
        refused = []

        def other_thread():
            try:
                with output_lock(out):
                    pass  # pragma: no cover
            except SpherexOutputError as exc:
                refused.append(str(exc))

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert refused and "being written by another" in refused[0]
        # another process sees the lock too, and names our pid
        code = ("import sys; from glue_spherex.fitsbytes.atomic import output_lock\n"
                "try:\n    with output_lock(sys.argv[1]): pass\n"
                "except Exception as e: print(e); sys.exit(7)\n")
        other = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True,
                               text=True, timeout=60)
        assert other.returncode == 7, other.stderr
        assert f"(pid {os.getpid()})" in other.stdout
    with output_lock(out):  # released: free again, and no lock file left behind
        pass
    assert list(tmp_path.iterdir()) == []


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".a.fits.{dead}-1-0.part"
    ours = temporary_path(tmp_path / "a.fits")
    other = tmp_path / f".b.fits.{dead}-1-0.part"
    for p in (stale, ours, other):
        p.write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path, "a.fits") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([ours.name, other.name])
    assert remove_stale_temporaries(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == [ours.name]  # a live writer's file stays


def test_check_output(tmp_path):
    with pytest.raises(SpherexOutputError, match="is a directory"):
        check_output(tmp_path)
    with pytest.raises(SpherexOutputError, match="not a regular file"):
        write_bytes("/dev/null", b"x")  # never renamed over a device
    with pytest.raises(SpherexOutputError, match="does not exist"):
        check_output(tmp_path / "missing" / "x.fits")
    with pytest.raises(SpherexOutputError, match="not enough free space .* needed"):
        check_output(tmp_path / "x.fits", needed_bytes=1 << 60)
    check_output(tmp_path / "x.fits", needed_bytes=1000)
    assert list(tmp_path.iterdir()) == []  # the probe is gone
