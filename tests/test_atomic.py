"""The one way glue-spherex writes files: a temporary .part name, renamed on success."""

import pytest

from glue_spherex.atomic import atomic_path, write_bytes
from glue_spherex.errors import SpherexInputError


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
    with pytest.raises(SpherexInputError, match="does not exist"):
        write_bytes(tmp_path / "nope" / "a.fits", b"x")
