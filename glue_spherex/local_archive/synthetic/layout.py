"""Where every byte of a full synthetic frame lies, so a byte span is made without the frame.

A :class:`FrameLayout` lists the pieces of :func:`.frames.frame_bytes` in file order: header
blocks (cheap card images), the data of IMAGE/FLAGS/VARIANCE/ZODI (2040 rows of 8160 bytes,
rendered only for the rows a span touches, with :func:`.render.render_window`, which gives
every parent pixel the same value in any window), the PSF cube and WCS-WAVE (or EPSF and the
R7 WCS-WAVE), which depend on the detector only. A pipeline-7 FLAGS HDU is RICE-compressed
with a heap that depends on every row and is padded to ``spec.file_size``: it is made whole
from :func:`.render.render_flags` (the flag plane alone, about 0.15 s with the compression)
and kept with the layout. ``bytes_at(start, stop)`` equals ``frame_bytes(spec)[start:stop]``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from . import pipeline7 as r7
from .fitsbytes import BLOCK, header_bytes
from .frames import DATA_KINDS, primary_hdu_bytes, psf_hdu_bytes
from .geometry import NPIX
from .headers import frame_cards, wave_hdu_bytes
from .render import render_flags, render_window

__all__ = ["FrameLayout", "frame_layout", "ROW_BYTES"]

#: Bytes of one row of an image plane (all four are 4-byte pixels).
ROW_BYTES = NPIX * 4
_PLANE_BYTES = ROW_BYTES * NPIX
#: Rows are rendered in bands aligned to this many rows (neighbouring reads share a band).
_BAND_ALIGN = 16
_DTYPES = {"image": ">f4", "flags": ">i4", "variance": ">f4", "zodi": ">f4"}


def _ceil(a, b):
    return -(-a // b)


def _fixed(raw):
    return (len(raw), raw, None)


@dataclass(frozen=True)
class _Piece:
    offset: int
    length: int
    raw: bytes | None       # fixed bytes; None: rows of `plane` (zeros if plane is None)
    plane: str | None


class FrameLayout:
    """The byte layout of one full frame; :meth:`bytes_at` assembles any span of it."""

    def __init__(self, spec):
        self.spec = spec
        det = int(spec.detector)
        cards = frame_cards(spec)
        parts = [_fixed(primary_hdu_bytes(spec.pipeline7))]   # (length, raw, plane)
        for kind, name in DATA_KINDS:
            if kind == "FLAGS" and spec.pipeline7:
                flags_at = len(parts)
                flags = render_flags(spec, 0, 0, NPIX, NPIX)
                parts.append(_fixed(r7.compressed_flags_bytes(cards[kind], flags)))
                continue
            parts += [_fixed(header_bytes(cards[kind])), (_PLANE_BYTES, None, name)]
            if _PLANE_BYTES % BLOCK:
                parts.append((-_PLANE_BYTES % BLOCK, None, None))
        if spec.pipeline7:
            parts += [_fixed(r7.epsf_hdu_bytes(det)), _fixed(r7.wave_hdu_bytes_r7(det))]
            extra = spec.file_size - sum(length for length, _, _ in parts)
            if extra > 0:                  # as frames.frame_bytes: the FLAGS heap padded
                hdu = parts[flags_at][1]
                parts[flags_at] = _fixed(r7.pad_heap(hdu, extra)[:len(hdu)])
                parts.insert(flags_at + 1, (extra, None, None))
        else:
            parts += [_fixed(psf_hdu_bytes(det)), _fixed(wave_hdu_bytes(det))]
        pieces, offset = [], 0
        for length, raw, plane in parts:
            pieces.append(_Piece(offset, length, raw, plane))
            offset += length
        self.pieces = tuple(pieces)
        self.size = offset
        self._offsets = np.array([p.offset for p in pieces])

    def rows_needed(self, start, stop):
        """How many rows of image planes the span ``[start, stop)`` renders."""
        return sum(b - a for _, a, b in self._bands(start, stop))

    def _bands(self, start, stop):
        """``(piece, y0, y1)``: the aligned row bands of each image plane the span touches."""
        out = []
        for p in self._touched(start, stop):
            if p.plane is None:
                continue
            lo, hi = max(start, p.offset) - p.offset, min(stop, p.offset + p.length) - p.offset
            y0 = lo // ROW_BYTES // _BAND_ALIGN * _BAND_ALIGN
            y1 = min(_ceil(_ceil(hi, ROW_BYTES), _BAND_ALIGN) * _BAND_ALIGN, NPIX)
            out.append((p, y0, y1))
        return out

    def _touched(self, start, stop):
        first = max(int(np.searchsorted(self._offsets, start, side="right")) - 1, 0)
        for p in self.pieces[first:]:
            if p.offset >= stop:
                break
            if p.offset + p.length > start:
                yield p

    def bytes_at(self, start, stop):
        """``frame_bytes(spec)[start:stop]``, rendering only the rows the span covers."""
        start, stop = max(int(start), 0), min(int(stop), self.size)
        if stop <= start:
            return b""
        bands = {id(p): (y0, y1) for p, y0, y1 in self._bands(start, stop)}
        out = []
        for p in self._touched(start, stop):
            lo, hi = max(start, p.offset) - p.offset, min(stop, p.offset + p.length) - p.offset
            if p.raw is not None:
                out.append(p.raw[lo:hi])
            elif p.plane is None:
                out.append(b"\0" * (hi - lo))
            else:
                y0, y1 = bands[id(p)]
                rows = _rows(self.spec, y0, y1)[p.plane]
                base = y0 * ROW_BYTES
                out.append(rows.astype(_DTYPES[p.plane], copy=False).tobytes()[lo - base:hi - base])
        return b"".join(out)


@lru_cache(maxsize=16)
def frame_layout(spec):
    """The :class:`FrameLayout` of a frame (cached; a pipeline-7 one holds its ~2.3 MB FLAGS)."""
    return FrameLayout(spec)


_band_lock = threading.Lock()
_band_cache = OrderedDict()          # (spec, y0, y1) -> render_window output
_MAX_BANDS = 6
_MAX_BAND_ROWS = 256


def _rows(spec, y0, y1):
    """``render_window(spec, 0, y0, NPIX, y1 - y0)``, the last few bands kept (the client reads
    the same rows of IMAGE, VARIANCE, ZODI and FLAGS one after the other)."""
    key = (spec, y0, y1)
    with _band_lock:
        hit = _band_cache.get(key)
        if hit is not None:
            _band_cache.move_to_end(key)
            return hit
    data = render_window(spec, 0, y0, NPIX, y1 - y0)
    if y1 - y0 > _MAX_BAND_ROWS:
        return data                 # a large read: not kept (16 bytes a pixel)
    with _band_lock:
        _band_cache[key] = data
        while len(_band_cache) > _MAX_BANDS:
            _band_cache.popitem(last=False)
    return data
