"""Write files so that a final name never holds a partial file, nor a mix of two writers.

:func:`temporary_path` gives a fresh hidden name beside the destination
(``.NAME.<pid>-<thread>-<n>.part``, so the rename is atomic); :func:`atomic_path` writes
there and renames onto the destination on success (spectra, quick-looks, tables, single
exported cutouts, the cache via :func:`write_bytes`). :class:`~glue_spherex.products.combined.
CombinedWriter` builds its file in place under a :func:`temporary_path` name and renames it
itself on close; :func:`~glue_spherex.plugin.exporter.export_combined` stages to its own
``.NAME.<pid>.export`` name before renaming. :func:`remove_stale_temporaries` deletes
``.part`` files of dead processes. :func:`output_lock` stops two writers of one output;
:func:`check_output` tells before any work whether a path can be written.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path

from ..errors import SpherexOutputError

try:  # POSIX advisory locks; released by the kernel when the process dies
    import fcntl
except ImportError:  # pragma: no cover (Windows: no cross-process lock, names stay unique)
    fcntl = None

__all__ = ["atomic_path", "write_bytes", "temporary_path", "output_lock", "check_output",
           "check_directory", "remove_stale_temporaries", "stale_temporaries",
           "describe_bytes"]

_counter = itertools.count()
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-\d+-\d+\.part$")
_held = {}  # output -> (thread, depth) locked in this process (flock: per process only)
_held_lock = threading.Lock()


def temporary_path(path):
    """A fresh temporary name beside ``path`` that no other writer uses."""
    path = Path(path)
    return path.parent / (f".{path.name}.{os.getpid()}-{threading.get_ident()}"
                          f"-{next(_counter)}.part")


@contextmanager
def atomic_path(path):
    """Yield a temporary :class:`~pathlib.Path` to write; it becomes ``path`` on success."""
    path = Path(path)
    check_directory(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path, data):
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def check_directory(path):
    """Raise :class:`SpherexOutputError` unless ``path``'s directory exists (and ``path``, if
    it exists, is a regular file: a rename must never replace a device or a directory)."""
    path = Path(path)
    directory = path.parent
    if not directory.is_dir():
        raise SpherexOutputError(f"cannot write {path}: directory {directory} does not exist")
    if path.is_dir():
        raise SpherexOutputError(f"{path} is a directory; give a file name")
    if path.exists() and not path.is_file():
        raise SpherexOutputError(f"{path} is not a regular file; give a file name")


def check_output(path, *, needed_bytes=0, what="output"):
    """Check, before any work, that ``path`` can be written; raise :class:`SpherexOutputError`.

    The path must not be a directory, its directory must exist and accept a new file (a
    temporary file is created and removed, which also catches read-only file systems), and it
    must have ``needed_bytes`` free (an existing ``path`` counts as free: it is replaced).
    """
    path = Path(path)
    if path.is_dir():
        raise SpherexOutputError(f"{what} {path} is a directory; give a file name")
    check_directory(path)
    probe = temporary_path(path)
    try:
        probe.open("xb").close()
    except OSError as exc:
        raise SpherexOutputError(f"cannot write {what} {path}: {_reason(exc)}") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    if needed_bytes > 0:
        free = shutil.disk_usage(path.parent).free
        with contextlib.suppress(OSError):
            free += path.stat().st_size
        if free < needed_bytes:
            raise SpherexOutputError(
                f"not enough free space for {what} {path}: about "
                f"{describe_bytes(needed_bytes)} needed, {describe_bytes(free)} free in "
                f"{path.parent}")


def describe_bytes(n):
    """``'465 MB'``-style text for a byte count."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.{1 if n < 10 * size else 0}f} {unit}"
    return f"{int(n)} bytes"


def _reason(exc):
    return exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)


@contextmanager
def output_lock(path):
    """Hold an exclusive lock on writing ``path``; :class:`SpherexOutputError` if it is taken.

    Another process or thread is refused; the thread holding it may take it again (nested).

    The lock is a hidden ``.NAME.lock`` file beside ``path`` holding the writer's pid, locked
    with ``flock`` (so a killed writer never leaves it held) and removed on release.
    """
    path = Path(path)
    key = os.path.abspath(path)
    me = threading.get_ident()
    with _held_lock:
        holder = _held.get(key)
        if holder is not None and holder[0] != me:
            raise SpherexOutputError(_busy(path, os.getpid()))
        _held[key] = (me, holder[1] + 1 if holder else 1)
    if holder is not None:  # this thread holds it already (re-entrant)
        try:
            yield
        finally:
            with _held_lock:
                _held[key] = (me, _held[key][1] - 1)
        return
    fd = None
    try:
        fd = _acquire(path) if fcntl is not None else None
        yield
    finally:
        if fd is not None:
            lock_path = _lock_path(path)
            with contextlib.suppress(OSError):
                if _same_file(fd, lock_path):
                    lock_path.unlink()
            os.close(fd)
        with _held_lock:
            _held.pop(key, None)


def _lock_path(path):
    return path.parent / f".{path.name}.lock"


def _acquire(path):
    check_directory(path)
    lock_path = _lock_path(path)
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise SpherexOutputError(f"cannot write {path}: {_reason(exc)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            pid = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise SpherexOutputError(_busy(path, pid)) from None
            raise SpherexOutputError(f"cannot lock {path}: {_reason(exc)}") from None
        if _same_file(fd, lock_path):  # not unlinked by a writer that finished meanwhile
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)


def _same_file(fd, path):
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _read_pid(fd):
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _busy(path, pid):
    who = f" (pid {pid})" if pid else ""
    return (f"{path} is being written by another glue-spherex run{who}; wait for it to "
            "finish or write to another file")


def remove_stale_temporaries(directory, name=None):
    """Delete the temporary files in ``directory`` left by processes that no longer run.

    With ``name``, only those of that destination file name. Returns how many were removed.
    """
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if not match or (name is not None and match["name"] != name):
            continue
        if _alive(int(match["pid"])):
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed += 1
    return removed


def stale_temporaries(directory, name):
    """Temporary files of destination ``name`` in ``directory`` whose process is gone."""
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            match = _TEMPORARY.match(entry.name)
            if match and match["name"] == name and not _alive(int(match["pid"])):
                found.append(Path(entry.path))
    return found


def _alive(pid):
    if os.name == "nt":  # pragma: no cover (os.kill would end the process there)
        return True
    if pid == os.getpid():
        return True  # ours: maybe another thread's file in progress
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True
