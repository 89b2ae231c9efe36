"""On-disk cache of downloaded cutouts, keyed by URL, safe against interrupted runs.

Each URL maps to ``<dir>/<sha256(url)[:40]>.fits`` holding the validated, uncompressed FITS
bytes, written through :mod:`glue_spherex.atomic` (a ``.part`` name in the same directory,
then :func:`os.replace`), so a final name never holds a partial file; a killed run leaves at
most ``.part`` files, which are never read. Hits are re-checked structurally before they are
trusted, and an invalid file is deleted so the URL is fetched again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .atomic import write_bytes
from .errors import SpherexFormatError
from .fitsscan import scan_spectral_image

__all__ = ["CutoutCache"]


class CutoutCache:
    """A directory of cached cutouts (created on first use)."""

    def __init__(self, directory):
        self.directory = Path(directory)

    def path_for(self, url):
        return self.directory / (hashlib.sha256(url.encode()).hexdigest()[:40] + ".fits")

    def load(self, url):
        """The cached bytes of ``url`` if a complete, valid file is there, else None."""
        path = self.path_for(url)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            scan_spectral_image(data, label=str(path))
        except SpherexFormatError:
            path.unlink(missing_ok=True)
            return None
        return data

    def store(self, url, data):
        """Write ``data`` for ``url`` atomically; returns the final path."""
        self.directory.mkdir(parents=True, exist_ok=True)
        return write_bytes(self.path_for(url), data)
