"""What the docs' doctests run in: the local archive and a scratch working directory.

``conf.py`` calls :func:`enter` before the examples of each page and :func:`leave` after
them. One :class:`~glue_spherex.local_archive.LocalArchive` serves every page of a build (it is
stopped when the process exits); each page starts in a new empty directory, which is removed
afterwards, with ``glue_spherex.irsa.config.conf.archive_url`` pointing at the archive. Nothing
else is changed, so the examples show exactly what a user types.
"""

import atexit
import os
import shutil
import tempfile

_archive = None
_state = {}


def _shared_archive():
    global _archive
    if _archive is None:
        from glue_spherex.local_archive import LocalArchive

        _archive = LocalArchive().start()
        _archive.wait_ready()
        atexit.register(_archive.stop)
    return _archive


def enter():
    """Start (once) the archive, point the configuration at it, enter a fresh directory."""
    from glue_spherex.irsa.config import conf

    archive = _shared_archive()
    _state["cwd"] = os.getcwd()
    _state["dir"] = tempfile.mkdtemp(prefix="glue-spherex-doctest-")
    _state["archive_url"] = conf.archive_url
    os.chdir(_state["dir"])
    conf.archive_url = archive.url
    return archive


def leave():
    """Undo :func:`enter`: configuration, working directory, scratch files."""
    from glue_spherex.irsa.config import conf

    conf.archive_url = _state.pop("archive_url", conf.archive_url)
    os.chdir(_state.pop("cwd", os.getcwd()))
    shutil.rmtree(_state.pop("dir", ""), ignore_errors=True)
