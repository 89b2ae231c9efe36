"""On-disk cache of downloaded cutouts, keyed by URL, safe against interrupted runs.

Each URL maps to ``<dir>/<sha256(url)[:40]>.fits`` holding the validated, uncompressed FITS
bytes, written through :mod:`glue_spherex.fitsbytes.atomic` (a ``.part`` name in the same directory,
then :func:`os.replace`), so a final name never holds a partial file; a killed run leaves at
most temporary files, which are never read and which :meth:`~CutoutCache.prepare` deletes
once their process is gone. Hits are re-checked structurally (through a memory map) before they are trusted, and an
invalid file is deleted so the URL is fetched again. :meth:`~CutoutCache.prepare` also checks,
before any download, that the directory can be written at all.
"""

from __future__ import annotations

import hashlib
import mmap
from pathlib import Path

from ..errors import SpherexFormatError, SpherexOutputError
from ..fitsbytes.atomic import remove_stale_temporaries, temporary_path, write_bytes
from ..fitsbytes.scan import scan_spectral_image

__all__ = ["CutoutCache"]


class CutoutCache:
    """A directory of cached cutouts (created on first use)."""

    def __init__(self, directory):
        self.directory = Path(directory)

    def prepare(self):
        """Create the directory, check it takes a new file, and delete stale temporary files.

        Raises :class:`~glue_spherex.errors.SpherexOutputError` naming the directory if it
        cannot be created or written (read-only, not a directory, no permission).
        """
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe = temporary_path(self.directory / "probe")
            probe.open("xb").close()
            probe.unlink()
        except OSError as exc:
            raise SpherexOutputError(
                f"the cache directory {self.directory} cannot be written: "
                f"{exc.strerror or exc}") from None
        remove_stale_temporaries(self.directory)
        return self

    def contains(self, url):
        """True if a file for ``url`` is there (not validated: that is :meth:`load`'s job)."""
        return self.path_for(url).is_file()

    def path_for(self, url):
        return self.directory / (hashlib.sha256(url.encode()).hexdigest()[:40] + ".fits")

    def check(self, url):
        """The path of the cached file of ``url`` if a complete, valid file is there, else None.

        The file is checked through a memory map (the structure scan reads its headers, not its
        pixels), so a hit costs a few page reads; an invalid file is deleted.
        """
        path = self.path_for(url)
        try:
            fh = path.open("rb")
        except FileNotFoundError:
            return None
        with fh:
            valid = False
            try:
                mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError:  # an empty file cannot be mapped
                mm = None
            if mm is not None:
                try:
                    scan_spectral_image(mm, label=str(path))
                    valid = True
                except SpherexFormatError:
                    pass
                # closed only here: until the except clause ends, its traceback holds the
                # scanner's view of the map
                mm.close()
        if not valid:
            path.unlink(missing_ok=True)
            return None
        return path

    def store(self, url, data):
        """Write ``data`` for ``url`` atomically; returns the final path."""
        self.directory.mkdir(parents=True, exist_ok=True)
        return write_bytes(self.path_for(url), data)
