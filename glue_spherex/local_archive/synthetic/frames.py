"""Whole synthetic Level-2 files and IRSA-style cutouts, as HDU lists or as bytes.

HDUs follow the real QR2 files (PRIMARY, IMAGE, FLAGS, VARIANCE, ZODI, PSF cube, WCS-WAVE)
or, for ``spec.pipeline7`` (:mod:`.pipeline7`), the pipeline-7 ones (RICE_1 FLAGS, EPSF
table). A cutout is made as IRSA makes it: the window clipped to the frame, only the window
rendered, ``NAXISn``/``CRPIXn`` shifted, the rest the parent's; a pipeline-7 cutout's FLAGS
is compressed over the window (``flags='compressed'``) or plain int32 (``'plain'``), since
IRSA's choice is unknown. ``frame_bytes``/``cutout_bytes`` write the FITS bytes directly;
``make_frame``/``make_cutout`` open them as an ``HDUList``. Details: ``docs/archive.rst``.
"""

from __future__ import annotations

import io
from functools import cache

from astropy.io import fits

from ...errors import SpherexInputError
from ...fitsbytes.atomic import write_bytes
from . import pipeline7 as r7
from .fitsbytes import data_bytes, header_bytes
from .geometry import NPIX
from .headers import cutout_cards, frame_cards, primary_cards, psf_cards, wave_hdu_bytes
from .psf import psf_cube
from .render import render_window

__all__ = ["make_frame", "make_cutout", "frame_bytes", "cutout_bytes", "write_frame",
           "clip_window", "CUTOUT_FLAGS", "DATA_KINDS", "primary_hdu_bytes", "psf_hdu_bytes"]

#: The image HDUs of a frame, in file order: (EXTNAME, key of :func:`.render.render_window`).
DATA_KINDS = (("IMAGE", "image"), ("FLAGS", "flags"), ("VARIANCE", "variance"), ("ZODI", "zodi"))
#: How FLAGS of a pipeline-7 cutout is written.
CUTOUT_FLAGS = ("compressed", "plain")


def clip_window(x0, y0, nx, ny):
    """Clip a window to the frame as IRSA does; SpherexInputError if nothing is left."""
    try:
        x0, y0, nx, ny = (int(v) for v in (x0, y0, nx, ny))
    except (TypeError, ValueError):
        raise SpherexInputError("a cutout window is four integers x0, y0, nx, ny") from None
    x1, y1 = min(x0 + nx, NPIX), min(y0 + ny, NPIX)
    x0, y0 = max(x0, 0), max(y0, 0)
    if nx < 1 or ny < 1 or x1 <= x0 or y1 <= y0:
        raise SpherexInputError(
            f"cutout window x0={x0}, y0={y0}, nx={nx}, ny={ny} does not overlap the "
            f"{NPIX}x{NPIX} frame")
    return x0, y0, x1 - x0, y1 - y0


@cache
def primary_hdu_bytes(pipeline7=False):
    """The PRIMARY HDU (a header only) of either layout, as bytes."""
    return header_bytes(primary_cards(pipeline7))


@cache
def psf_hdu_bytes(detector):
    """The PSF cube extension of a pipeline < 7 frame (header and data), as bytes."""
    return header_bytes(psf_cards(detector)) + data_bytes(psf_cube(detector))


def _window_cards(spec, x0, y0, nx, ny):
    if (x0, y0, nx, ny) == (0, 0, NPIX, NPIX):
        cards = frame_cards(spec)
        return {kind: cards[kind] for kind, _ in DATA_KINDS}
    return {kind: cutout_cards(spec, kind, x0, y0, nx, ny) for kind, _ in DATA_KINDS}


def _check_flags_mode(flags):
    if flags not in CUTOUT_FLAGS:
        raise SpherexInputError(f"flags={flags!r}: give 'compressed' or 'plain'")
    return flags


def _to_bytes(spec, x0, y0, nx, ny, flags="compressed"):
    det = int(spec.detector)
    cards = _window_cards(spec, x0, y0, nx, ny)
    data = render_window(spec, x0, y0, nx, ny)
    r7_layout = spec.pipeline7
    parts = [primary_hdu_bytes(r7_layout)]
    for kind, name in DATA_KINDS:
        if kind == "FLAGS" and r7_layout and flags == "compressed":
            flags_at = len(parts)
            parts.append(r7.compressed_flags_bytes(cards[kind], data[name]))
        else:
            parts += [header_bytes(cards[kind]), data_bytes(data[name])]
    if r7_layout:
        parts += [r7.epsf_hdu_bytes(det), r7.wave_hdu_bytes_r7(det)]
        if (x0, y0, nx, ny) == (0, 0, NPIX, NPIX) and flags == "compressed":
            extra = spec.file_size - sum(map(len, parts))
            if extra >= 0:
                parts[flags_at] = r7.pad_heap(parts[flags_at], extra)
    else:
        parts += [psf_hdu_bytes(det), wave_hdu_bytes(det)]
    return b"".join(parts)


def _to_hdulist(raw):
    """Open FITS bytes as an in-memory HDUList with every HDU and its data loaded.

    Reading the bytes back is several times faster than building HDUs (astropy copies every
    header card), and gives big-endian data exactly as a file from the archive would.
    """
    hdul = fits.open(io.BytesIO(raw), lazy_load_hdus=False)
    for hdu in hdul:
        _ = hdu.data
    return hdul


def frame_bytes(spec):
    """The full 2040x2040 7-HDU file of a frame, as FITS bytes (~71.6 MB for pipeline < 7;
    FLAGS compressed for pipeline 7)."""
    return _to_bytes(spec, 0, 0, NPIX, NPIX)


def cutout_bytes(spec, x0, y0, nx, ny, flags="compressed"):
    """An IRSA-style cutout of a frame (window clipped to the frame), as FITS bytes.

    ``flags`` (pipeline 7 only): ``'compressed'`` (RICE_1 over the window) or ``'plain'``.
    """
    return _to_bytes(spec, *clip_window(x0, y0, nx, ny), flags=_check_flags_mode(flags))


def make_frame(spec):
    """The full 2040x2040 7-HDU file of a frame, as an HDUList (the bytes of frame_bytes)."""
    return _to_hdulist(frame_bytes(spec))


def make_cutout(spec, x0, y0, nx, ny, flags="compressed"):
    """An IRSA-style cutout of a frame (window clipped to the frame), as an HDUList."""
    return _to_hdulist(cutout_bytes(spec, x0, y0, nx, ny, flags))


def write_frame(spec, path):
    """Write a full frame to ``path`` atomically (temporary file, then ``os.replace``)."""
    return write_bytes(path, frame_bytes(spec))
