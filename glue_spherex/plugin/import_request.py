"""What the import dialog asks the archive for, validated before any request, and its preview.

Qt-free on purpose: :func:`build_request` turns the dialog's raw field values into an
:class:`ImportRequest` (or raises :class:`~glue_spherex.errors.SpherexInputError` with a
one-line message the dialog shows), and :func:`summarize` turns the query's result table into
the count-first preview (cutouts per band, estimated download size); :func:`memory_bytes`
estimates what the loaded cutouts will hold in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np

from ..errors import SpherexInputError
from ..irsa.config import MAX_WORKERS, check_int, check_url
from ..irsa.core import parse_bandpasses, parse_collection, parse_release, parse_size, parse_time
from ..irsa.resolve import parse_coordinates

__all__ = ["BANDS", "SIZE_UNITS", "PIXEL_SCALE_ARCSEC", "ImportRequest", "build_request",
           "parse_cutout_size", "cutout_bytes", "memory_bytes", "BandCount", "Preview",
           "summarize"]

#: Detector -> (band name, shortest and longest wavelength in µm), from the archive documentation.
BANDS = {
    1: ("SPHEREx-D1", 0.75, 1.09),
    2: ("SPHEREx-D2", 1.10, 1.62),
    3: ("SPHEREx-D3", 1.63, 2.41),
    4: ("SPHEREx-D4", 2.42, 3.82),
    5: ("SPHEREx-D5", 3.83, 4.41),
    6: ("SPHEREx-D6", 4.42, 5.00),
}
SIZE_UNITS = ("arcmin", "arcsec", "deg", "px")
SERVICES = ("tap", "sia")
PIXEL_SCALE_ARCSEC = 6.15

# Bytes of one cutout besides its 2-D planes: the PSF cube is copied whole (121 x 101 x 101
# float32) and seven HDU headers (~35 FITS blocks).
_PSF_BYTES = 121 * 101 * 101 * 4
_HEADER_BYTES = 35 * 2880
# IMAGE, VARIANCE, ZODI (float32) and FLAGS (int32): 16 bytes per pixel.
_BYTES_PER_PIXEL = 16


@dataclass(frozen=True)
class ImportRequest:
    """A validated query plus how to fetch it.

    ``coord`` is the parsed position when ``target`` was typed as coordinates; for an object
    name it is None and the archive client resolves the name (off the GUI thread).
    """

    target: str
    coord: object
    size: u.Quantity
    size_px: float
    bandpasses: tuple
    collection: str
    time: tuple | None
    via: str
    workers: int
    archive_url: str
    cache_dir: Path | None
    release: str = "qr2"

    @property
    def query_target(self):
        return self.coord if self.coord is not None else self.target


def build_request(*, target, size, size_unit, detectors, collection="wide", time=None,
                  via="tap", workers=8, archive_url, cache_dir="", release="qr2"):
    """Validate the dialog's fields; raise SpherexInputError naming the first bad one.

    The checks are the archive client's own (:mod:`glue_spherex.irsa.core`,
    :mod:`glue_spherex.irsa.resolve`, :mod:`glue_spherex.irsa.config`), run here so that nothing is
    sent before every field is valid. Coordinates are parsed now; an object name is left to
    the search, which resolves it off the GUI thread.
    """
    text = " ".join(str(target).split())
    if not text:
        raise SpherexInputError("enter a target: an object name (e.g. M101) or 'RA Dec' in degrees")
    coord = parse_coordinates(text)
    cut, size_px = parse_cutout_size(size, size_unit)
    if not detectors:
        raise SpherexInputError("choose at least one band (D1-D6)")
    dets = parse_bandpasses(list(detectors))
    parse_collection(collection, parse_release(release))
    if via not in SERVICES:
        raise SpherexInputError(f"service {via!r} is not accepted; give tap or sia")
    cache = str(cache_dir or "").strip()
    return ImportRequest(
        target=text, coord=coord, size=cut.quantity, size_px=size_px,
        bandpasses=tuple(BANDS[d][0] for d in dets), collection=collection,
        time=parse_time(time), via=via,
        workers=check_int(workers, "parallel downloads", 1, MAX_WORKERS),
        archive_url=check_url(archive_url, "archive URL"),
        cache_dir=Path(cache).expanduser() if cache else None, release=parse_release(release))


def parse_cutout_size(value, unit):
    """``(CutoutSize, approximate side in pixels)`` from the size field and its unit."""
    text = str(value).strip()
    if not text:
        raise SpherexInputError("enter a cutout size, e.g. 2 arcmin")
    if unit not in SIZE_UNITS:
        raise SpherexInputError(f"size unit {unit!r} is not one of {', '.join(SIZE_UNITS)}")
    cut = parse_size(f"{text}{unit}")
    side = cut.px if cut.px is not None else cut.deg * 3600.0 / PIXEL_SCALE_ARCSEC
    return cut, side


def cutout_bytes(size_px):
    """Estimated bytes of one cutout of ``size_px`` pixels on a side (PSF cube included)."""
    side = max(1, math.ceil(size_px))
    return _PSF_BYTES + _HEADER_BYTES + _BYTES_PER_PIXEL * side * side


def memory_bytes(size_px, downloaded, cached=0, psf="full"):
    """Estimated bytes a session holds in memory once these cutouts are loaded.

    A cutout downloaded now is held as it arrived (PSF cube included), also when it is
    written to a cache folder; one already in the cache is memory-mapped from its file and
    counts nothing. With ``psf='none'`` every cutout, cached or not, is held in memory
    without its PSF cube.
    """
    per_cutout = cutout_bytes(size_px)
    if psf == "none":
        return (int(downloaded) + int(cached)) * (per_cutout - _PSF_BYTES)
    return int(downloaded) * per_cutout


@dataclass(frozen=True)
class BandCount:
    band: str
    wavelength: tuple
    count: int
    nbytes: int


@dataclass(frozen=True)
class Preview:
    """What a search found: counts per requested band and the estimated download size."""

    bands: tuple
    total: int
    nbytes: int
    mjd_range: tuple | None

    def headline(self):
        if self.total == 0:
            return "No cutouts found: try a larger size, more bands or another collection"
        found = sum(1 for b in self.bands if b.count)
        text = (f"{self.total} cutout{'s' if self.total != 1 else ''} in {found} "
                f"band{'s' if found != 1 else ''}, about {format_bytes(self.nbytes)} to download")
        if self.mjd_range:
            text += f" (MJD {self.mjd_range[0]:.1f} to {self.mjd_range[1]:.1f})"
        return text


def summarize(table, request):
    """Count the query result per requested band and estimate the download size."""
    names = np.array([str(b) for b in table["bandpass"]]) if len(table) else np.array([], str)
    per_cutout = cutout_bytes(request.size_px)
    bands = []
    for name in request.bandpasses:
        det = int(name.rsplit("D", 1)[1])
        count = int(np.count_nonzero(names == name))
        bands.append(BandCount(name, BANDS[det][1:], count, count * per_cutout))
    total = int(len(table))
    mjd = None
    if total and "t_min" in table.colnames:
        t_min = np.asarray(table["t_min"], float)
        t_max = np.asarray(table["t_max" if "t_max" in table.colnames else "t_min"], float)
        mjd = (float(np.nanmin(t_min)), float(np.nanmax(t_max)))
    return Preview(tuple(bands), total, total * per_cutout, mjd)


def format_bytes(nbytes):
    """``'4.9 MB'``-style size (decimal units, as download managers show them)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{int(nbytes)} B"
