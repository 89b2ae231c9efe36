"""Append-only output for big files, written past the page cache where the system allows.

A combined file of hundreds of cutouts is gigabytes written once and read back only in small
parts. :class:`StreamFile` stages appended bytes in one reused, page-aligned buffer and
writes it in whole aligned blocks with ``O_DIRECT``, which costs a small fraction of the CPU
of writing through the page cache and leaves the user's cached files alone (measured in
``docs/performance.rst``, "Writing the combined file"); :meth:`~StreamFile.truncate` drops
bytes again (also ones on disk) and :meth:`~StreamFile.overwrite` rewrites bytes in place.
Where ``O_DIRECT`` is missing (macOS, Windows) or refused by the file system, it writes
through an ordinary buffered file -- same bytes, same calls.
"""

from __future__ import annotations

import errno
import mmap
import os

import numpy as np

__all__ = ["StreamFile"]

_ALIGN = 4096  # O_DIRECT needs offsets, lengths and memory aligned to the logical block size
_STAGE = 8 << 20


class StreamFile:
    """Write ``path`` (created or truncated) as a stream of appended bytes.

    ``direct`` tells whether the page cache is being bypassed.
    """

    def __init__(self, path, *, direct=True, stage_bytes=_STAGE):
        self.path = os.fspath(path)
        self._size = 0  # logical file size
        self._flushed = 0  # bytes [0, flushed) are on disk; a multiple of _ALIGN while direct
        self._file = None
        self._fd = None
        self.direct = False
        if direct and hasattr(os, "O_DIRECT"):
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC
                                   | os.O_DIRECT, 0o666)
                self.direct = True
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                    raise
        if self.direct:
            self._stage = mmap.mmap(-1, max(_ALIGN, stage_bytes - stage_bytes % _ALIGN))
            self._view = memoryview(self._stage)
            # numpy copies into it without holding the GIL (a memoryview copy holds it,
            # stalling the download threads for ~1 ms per 5 MB)
            self._array = np.frombuffer(self._stage, np.uint8)
        else:
            self._file = open(self.path, "wb")  # noqa: SIM115 (closed in close())

    # -- appending -------------------------------------------------------------------------

    def tell(self):
        """Current size of the file (where the next append goes)."""
        return self._size if self.direct else self._file.tell()

    def write(self, data):
        """Append ``data`` (any bytes-like object)."""
        src = memoryview(data).cast("B")
        while self.direct and len(src):
            used = self._size - self._flushed
            n = min(len(src), len(self._view) - used)
            self._array[used:used + n] = np.frombuffer(src[:n], np.uint8)
            self._size += n
            src = src[n:]
            if used + n == len(self._view):
                self._flush()
        if not self.direct and len(src):
            self._file.write(src)

    def _flush(self):
        """Write the staged bytes (a whole number of blocks) at the flushed offset."""
        nbytes = self._size - self._flushed
        done = 0
        while done < nbytes:
            chunk = self._view[done:nbytes]
            refused = False
            try:
                done += os.pwrite(self._fd, chunk, self._flushed + done)
            except OSError as exc:
                refused = exc.errno == errno.EINVAL and self._flushed == 0 and done == 0
                if not refused:
                    raise
            finally:
                chunk.release()  # the traceback may still hold it; the stage must be closable
            if refused:
                self._to_buffered()  # the file system refuses O_DIRECT writes after all
                return
        self._flushed += nbytes

    def truncate(self, size):
        """Drop everything after byte ``size`` (appends continue from there)."""
        if not 0 <= size <= self.tell():
            raise ValueError(f"cannot truncate {self.tell()} bytes to {size}")
        if not self.direct:
            self._file.seek(size)
            self._file.truncate()
            return
        if size < self._flushed:  # bring the block holding ``size`` back into the stage
            base = size - size % _ALIGN
            if size > base and os.preadv(self._fd, [self._view[:_ALIGN]], base) < size - base:
                raise OSError(errno.EIO, f"{self.path}: short read while truncating")
            os.ftruncate(self._fd, base)
            self._flushed = base
        self._size = size

    # -- finishing -------------------------------------------------------------------------

    def _finish_direct(self):
        """Write the staged tail (padded to a block, then cut back) and go on buffered."""
        if not self.direct:
            return
        size = self._size
        tail = size - self._flushed
        if tail:
            padded = tail + (-tail % _ALIGN)
            self._view[tail:padded] = bytes(padded - tail)
            self._size = self._flushed + padded
            self._flush()
            if self.direct:
                os.ftruncate(self._fd, size)
                self._flushed = self._size = size
            else:  # _flush fell back to buffered writing, padding included
                self._file.truncate(size)
                self._file.seek(size)
        if self.direct:
            self._to_buffered()

    def _to_buffered(self):
        """Continue through an ordinary buffered file holding what was written so far."""
        staged = bytes(self._view[:self._size - self._flushed])
        self._release_direct()
        self._file = open(self.path, "r+b")  # noqa: SIM115 (closed in close())
        self._file.truncate(self._flushed)
        self._file.seek(self._flushed)
        self._file.write(staged)

    def _release_direct(self):
        os.close(self._fd)
        self._fd = None
        del self._array
        self._view.release()
        self._stage.close()
        self.direct = False

    def overwrite(self, offset, data):
        """Rewrite ``len(data)`` bytes at ``offset`` (inside what was written)."""
        if offset < 0 or offset + len(data) > self.tell():
            raise ValueError("overwrite outside the file")
        self._finish_direct()
        end = self._file.tell()
        self._file.seek(offset)
        self._file.write(data)
        self._file.seek(end)

    def close(self, fsync=True):
        """Write everything, optionally ``fsync``, and close."""
        if self._file is None and self._fd is None:
            return
        try:
            self._finish_direct()
            self._file.flush()
            if fsync:
                os.fsync(self._file.fileno())
        finally:
            self.abort()

    def abort(self):
        """Close without writing what is staged (the file keeps what reached it)."""
        if self._fd is not None:
            self._release_direct()
        if self._file is not None:
            self._file.close()
            self._file = None
