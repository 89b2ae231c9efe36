"""StreamFile: the bytes on disk are exactly the appends, truncations and overwrites made,
whether the page cache is bypassed (O_DIRECT) or not."""

import os
import random

import pytest

from glue_spherex.fitsbytes.stream import StreamFile


def _direct_supported(path):
    """Can this file system take an aligned O_DIRECT write? (independent of StreamFile)"""
    if not hasattr(os, "O_DIRECT"):
        return False
    import mmap

    buf = mmap.mmap(-1, 4096)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DIRECT)
    except OSError:
        return False
    try:
        return os.pwrite(fd, buf, 0) == 4096
    except OSError:
        return False
    finally:
        os.close(fd)
        buf.close()
        os.unlink(path)


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "buffered"])
@pytest.mark.parametrize("seed", range(4))
def test_random_operations_match_a_bytearray(tmp_path, direct, seed):
    rng = random.Random(seed)
    path = tmp_path / "out.bin"
    f = StreamFile(path, direct=direct, stage_bytes=3 * 4096)
    assert f.direct == (direct and _direct_supported(tmp_path / "probe"))
    model = bytearray()
    for step in range(300):
        op = rng.random()
        if op < 0.75:  # appends of every size: tiny, unaligned, several stages at once
            data = rng.randbytes(rng.choice([1, 80, 2880, 4096, 5000, 40_000]))
            skip = rng.randrange(min(3, len(data)))
            f.write(memoryview(data)[skip:])
            model += data[skip:]
        elif op < 0.9 and model:  # drop a tail, sometimes one already written to disk
            size = rng.randrange(max(0, len(model) - 50_000), len(model) + 1)
            f.truncate(size)
            del model[size:]
        elif step > 250 and model:  # rewrite in place (as CUTOUT_INFO is at the end)
            offset = rng.randrange(len(model))
            data = rng.randbytes(min(3000, len(model) - offset))
            f.overwrite(offset, data)
            model[offset:offset + len(data)] = data
        assert f.tell() == len(model)
    f.close()
    assert path.read_bytes() == bytes(model)


def test_overwrite_outside_the_file_is_refused(tmp_path):
    f = StreamFile(tmp_path / "x.bin")
    f.write(b"abc")
    with pytest.raises(ValueError):
        f.overwrite(2, b"xy")
    with pytest.raises(ValueError):
        f.truncate(4)
    f.close()
    assert (tmp_path / "x.bin").read_bytes() == b"abc"


def _refusing_direct_writes(path, monkeypatch):
    """A StreamFile opened with O_DIRECT on a file system that then refuses every direct
    write with EINVAL, as some accept O_DIRECT at open and not at the first write."""
    import errno

    import glue_spherex.fitsbytes.stream as streamfile

    def refuse(*args):
        raise OSError(errno.EINVAL, "Invalid argument")

    f = StreamFile(path, stage_bytes=4096)
    if not f.direct:
        f.abort()
        pytest.skip("O_DIRECT is not available here")
    monkeypatch.setattr(streamfile.os, "pwrite", refuse)
    return f


def test_file_system_refusing_direct_writes_falls_back_to_buffered(tmp_path, monkeypatch):
    path = tmp_path / "out.bin"
    f = _refusing_direct_writes(path, monkeypatch)
    data = random.Random(1).randbytes(3 * 4096 + 100)
    f.write(data[:5000])  # fills the stage: the refused write switches to buffered
    assert not f.direct
    f.write(data[5000:])
    f.truncate(len(data) - 50)
    f.close()
    assert path.read_bytes() == data[:-50]


def test_refused_direct_write_of_the_last_block_at_close(tmp_path, monkeypatch):
    path = tmp_path / "small.bin"
    f = _refusing_direct_writes(path, monkeypatch)
    f.write(b"x" * 3000)  # less than a block: written (padded) only at close
    f.overwrite(10, b"abc")
    f.close()
    assert path.read_bytes() == b"x" * 10 + b"abc" + b"x" * 2987
