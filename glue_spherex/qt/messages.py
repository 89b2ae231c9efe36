"""One plain sentence for any error the import dialog shows (Qt-free, so the CLI may share it).

:func:`plain_message` maps an exception (or an already-worded message) to a sentence that
says what to do: an unreachable archive, an output folder that cannot be written, a missing
output folder, else the first line of the message without exception class names or ``.part``.
"""

from __future__ import annotations

import errno
import os
import re

__all__ = ["plain_message"]

_UNREACHABLE = ("connection refused", "name or service not known", "nodename nor servname",
                "getaddrinfo failed", "temporary failure in name resolution", "timed out",
                "failed to establish a new connection", "no route to host",
                "name resolution")
_CLASS = re.compile(r"\b(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Warning):\s*")


def _strip_part(path):
    return re.sub(r"(\S+?)\.part\b", r"\1", str(path))


def _chain(exc):
    while exc is not None:
        yield exc
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)


def _host(text):
    m = re.search(r"host='([^']+)',\s*port=(\d+)", text)
    if m:
        return f"{m.group(1)}:{m.group(2)}"
    m = re.search(r"https?://([^/\s'\"]+)", text)
    return m.group(1) if m else "the given address"


def plain_message(exc) -> str:
    """One plain sentence for ``exc`` (an exception or a message string)."""
    excs = list(_chain(exc)) if isinstance(exc, BaseException) else []
    for e in excs:
        if isinstance(e, OSError) and e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            folder = os.path.dirname(_strip_part(e.filename)) if e.filename else ""
            where = folder or "the output folder"
            return f"Cannot write to {where}: choose another output folder."
        if isinstance(e, OSError) and e.errno in (errno.ENOTDIR, errno.ENOENT) and e.filename:
            folder = os.path.dirname(_strip_part(e.filename)) or _strip_part(e.filename)
            return (f"The output folder {folder} does not exist or is inside a file: "
                    "choose another output folder.")
    text = "\n".join(str(e) for e in excs) if excs else str(exc)
    low = text.lower()
    if any(word in low for word in _UNREACHABLE):
        return (f"Cannot reach the archive at {_host(text)}: check the address and your "
                "network connection, then try again.")
    first = str(excs[0]) if excs else str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        first = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    line = next((ln.strip() for ln in first.splitlines() if ln.strip()), "")
    line = _strip_part(_CLASS.sub("", line)).strip()
    if not line:
        return "An unexpected error happened (details in View ▸ Console Log)."
    return line
