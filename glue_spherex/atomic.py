"""Write files so that a final name never holds a partial file.

Every writer in glue-spherex goes through :func:`atomic_path`: it hands out a fresh ``.part``
name beside the destination (same directory, so the rename is atomic), renames it onto the
destination when the block succeeds and removes it when the block raises. The temporary file
is created by the writer itself, so the user's umask applies as for any new file. A killed
process leaves at most a ``.part`` file, which nothing reads.
"""

from __future__ import annotations

import itertools
import os
import threading
from contextlib import contextmanager
from pathlib import Path

from .errors import SpherexInputError

__all__ = ["atomic_path", "write_bytes"]

_counter = itertools.count()


@contextmanager
def atomic_path(path):
    """Yield a temporary :class:`~pathlib.Path` to write; it becomes ``path`` on success."""
    path = Path(path)
    directory = path.parent
    if not directory.is_dir():
        raise SpherexInputError(f"cannot write {path}: directory {directory} does not exist")
    tmp = directory / f".{path.name}.{os.getpid()}-{threading.get_ident()}-{next(_counter)}.part"
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
