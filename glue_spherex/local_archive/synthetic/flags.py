"""FLAGS of synthetic frames: which pixels carry which bits, cheaply and window-independently.

Bits are the real ``MP_*`` bit numbers (§3.1); a cutout never needs the whole frame's flags,
yet the header's ``L2 N_*`` counts are exact. Per detector (as on a real array): HOT, COLD,
NONFUNC pixels, a dead column segment, DICHROIC rows on D3/D4, kept as sorted flat indices.
Per exposure: TRANSIENT, OUTLIER, PERSIST, SUR_ERROR and FULLSAMPLE, one candidate pixel per
91-pixel stride with offset and bit hashed from (frame seed, stride), so a window's rows are
drawn alone. SOURCE is set by the renderer near sky sources. About 1.5 % of pixels carry a
"bad" bit, whose values :mod:`.render` corrupts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from .geometry import NPIX
from .hashing import uniform

__all__ = ["BITS", "BAD_BITS", "SparseFlags", "static_flags", "exposure_flags",
           "exposure_flags_window", "bit_mask", "R7_EXTRA_BITS", "pipeline7_counts",
           "pipeline7_flags_window"]

#: Real bit numbers, name -> bit (value is 1 << bit).
BITS = {
    "TRANSIENT": 0, "OVERFLOW": 1, "SUR_ERROR": 2, "PHANTOM": 4, "REFERENCE": 5,
    "NONFUNC": 6, "DICHROIC": 7, "MISSING_DATA": 9, "HOT": 10, "COLD": 11,
    "FULLSAMPLE": 12, "PHANMISS": 14, "NONLINEAR": 15, "PERSIST": 17, "OUTLIER": 19,
    "SOURCE": 21, "GHOST": 22, "GHOST_FPA": 23, "GHOST_EXT": 24, "BLOOM": 26,
    "SNOWBALL": 27, "HALO": 28,
}
#: IRSA's default "bad" set: everything except OVERFLOW, FULLSAMPLE, OUTLIER and SOURCE.
BAD_BITS = tuple(b for b in BITS if b not in ("OVERFLOW", "FULLSAMPLE", "OUTLIER", "SOURCE"))


def bit_mask(*names):
    """Integer mask with the named bits set."""
    return sum(1 << BITS[n] for n in names)


NPIX2 = NPIX * NPIX
_DICHROIC_ROWS = {3: (0, 60), 4: (1980, NPIX)}  # 0-based row ranges [start, stop)


@dataclass(frozen=True)
class SparseFlags:
    """Flat parent-pixel indices (sorted, unique) and the bits set on each."""

    index: np.ndarray
    bits: np.ndarray
    counts: dict  # bit name -> number of pixels with that bit

    def in_window(self, x0, y0, nx, ny):
        """``(y, x, bits)`` of the flagged pixels inside a window, window-relative."""
        lo, hi = np.searchsorted(self.index, [y0 * NPIX, (y0 + ny) * NPIX])
        idx, bits = self.index[lo:hi], self.bits[lo:hi]
        y, x = np.divmod(idx, NPIX)
        keep = (x >= x0) & (x < x0 + nx)
        return y[keep] - y0, x[keep] - x0, bits[keep]

    def count(self, name):
        return self.counts.get(name, 0)


def _stratified(rng, fraction):
    """Unique sorted flat indices, one random pixel per stride: ~``fraction`` of the frame."""
    stride = int(round(1.0 / fraction))
    n = NPIX2 // stride
    return np.arange(n, dtype=np.int64) * stride + (rng.random(n) * stride).astype(np.int64)


def _assign(rng, n, table):
    """One bit per pixel drawn from ``table`` = ((name, probability), ...); bits and counts."""
    names = [name for name, _ in table]
    # Per-mille lookup table: probabilities are multiples of 0.001.
    lut = np.repeat(np.arange(len(names)), [round(1000 * p) for _, p in table])
    choice = lut[(rng.random(n) * len(lut)).astype(np.int64)]
    values = np.array([1 << BITS[name] for name in names], dtype=np.int32)
    counts = dict(zip(names, np.bincount(choice, minlength=len(names)).tolist()))
    return values[choice], counts


@cache
def static_flags(detector):
    """Bad pixels of a detector array, shared by all its exposures."""
    rng = np.random.default_rng(90_210 + int(detector))
    idx = _stratified(rng, 0.0035)
    bits, _ = _assign(rng, len(idx), (("NONFUNC", 0.78), ("COLD", 0.14), ("HOT", 0.08)))
    # A dead column segment.
    col = int(rng.integers(100, NPIX - 100))
    row0 = int(rng.integers(0, NPIX - 300))
    seg = np.arange(row0, row0 + int(rng.integers(80, 300)), dtype=np.int64) * NPIX + col
    idx = np.concatenate([idx, seg])
    bits = np.concatenate([bits, np.full(len(seg), 1 << BITS["NONFUNC"], np.int32)])
    order = np.argsort(idx, kind="stable")
    idx, bits = idx[order], bits[order]
    uniq, first = np.unique(idx, return_index=True)
    merged = np.bitwise_or.reduceat(bits, first).astype(np.int32)
    counts = {name: int(np.count_nonzero(merged & (1 << bit))) for name, bit in BITS.items()}
    out = SparseFlags(uniq, merged, counts)
    for a in (out.index, out.bits):
        a.setflags(write=False)
    return out


def dichroic_rows(detector):
    """0-based row range [start, stop) flagged DICHROIC, or None."""
    return _DICHROIC_ROWS.get(int(detector))


# Per-exposure flags: one candidate pixel per stride of the flat index, its offset and its
# bit drawn from a counter-based hash of (seed, stride number), so any rows can be drawn alone.
_EXPOSURE_STRIDE = 91  # ~1.1 % of the pixels
_EXPOSURE_N = NPIX2 // _EXPOSURE_STRIDE
_EXPOSURE_TABLE = (("TRANSIENT", 0.45), ("OUTLIER", 0.345), ("PERSIST", 0.12),
                   ("SUR_ERROR", 0.08), ("FULLSAMPLE", 0.005))
_EXPOSURE_LUT = np.repeat(np.arange(len(_EXPOSURE_TABLE)),
                          [round(1000 * p) for _, p in _EXPOSURE_TABLE])
_EXPOSURE_BITS = np.array([1 << BITS[n] for n, _ in _EXPOSURE_TABLE], dtype=np.int32)


def _exposure_draw(seed, k):
    offset = (uniform(seed, 11, 0, k) * _EXPOSURE_STRIDE).astype(np.int64)
    choice = _EXPOSURE_LUT[(uniform(seed, 12, 0, k) * len(_EXPOSURE_LUT)).astype(np.int64)]
    return k * _EXPOSURE_STRIDE + offset, choice


def exposure_flags(seed):
    """All per-exposure flags (transients, outliers, persistence, ...) of one frame."""
    idx, choice = _exposure_draw(seed, np.arange(_EXPOSURE_N, dtype=np.int64))
    counts = dict(zip([n for n, _ in _EXPOSURE_TABLE],
                      np.bincount(choice, minlength=len(_EXPOSURE_TABLE)).tolist()))
    return SparseFlags(idx, _EXPOSURE_BITS[choice], counts)


def exposure_flags_window(seed, x0, y0, nx, ny):
    """``(y, x, bits)`` of the per-exposure flags inside a window, window-relative."""
    k0 = (y0 * NPIX) // _EXPOSURE_STRIDE
    k1 = min(-(-((y0 + ny) * NPIX) // _EXPOSURE_STRIDE), _EXPOSURE_N)
    idx, choice = _exposure_draw(seed, np.arange(k0, k1, dtype=np.int64))
    y, x = np.divmod(idx, NPIX)
    keep = (y >= y0) & (y < y0 + ny) & (x >= x0) & (x < x0 + nx)
    return y[keep] - y0, x[keep] - x0, _EXPOSURE_BITS[choice[keep]]


# Pipeline-7 flags: CROSSTALK on one candidate pixel per stride (drawn like the exposure
# flags, from other streams), and on one exposure in three a satellite STREAK, a 2-pixel-wide
# straight line across the frame. Both are flagged only in pipeline-7 files.
_XTALK_STRIDE = 1499
_XTALK_N = NPIX2 // _XTALK_STRIDE
R7_EXTRA_BITS = {"CROSSTALK": 20, "STREAK": 25}


def _xtalk_index(seed, k):
    return k * _XTALK_STRIDE + (uniform(seed, 21, 0, k) * _XTALK_STRIDE).astype(np.int64)


@cache
def _streak_index(seed):
    """Sorted flat indices of the streak pixels of an exposure (empty on two in three)."""
    u = uniform(seed, 23, 0, np.arange(4))
    if u[0] > 1.0 / 3.0:
        return np.zeros(0, np.int64)
    x = np.arange(NPIX)
    y0, slope = u[1] * NPIX, (u[2] - 0.5) * 1.2
    rows = np.floor(y0 + slope * (x - NPIX / 2)).astype(np.int64)
    ys, xs = np.concatenate([rows, rows + 1]), np.concatenate([x, x])
    keep = (ys >= 0) & (ys < NPIX)
    out = np.unique(ys[keep] * NPIX + xs[keep])
    out.setflags(write=False)
    return out


def pipeline7_counts(seed):
    """``{'CROSSTALK': n, 'STREAK': n, 'STREAKS': number of streaks}`` of a frame."""
    streak = _streak_index(seed)
    xtalk = _xtalk_index(seed, np.arange(_XTALK_N, dtype=np.int64))
    return {"CROSSTALK": int(len(xtalk)), "STREAK": int(len(streak)),
            "STREAKS": int(len(streak) > 0)}


def pipeline7_flags_window(seed, x0, y0, nx, ny):
    """``(y, x, bits)`` of the CROSSTALK and STREAK pixels inside a window, window-relative."""
    k0 = (y0 * NPIX) // _XTALK_STRIDE
    k1 = min(-(-((y0 + ny) * NPIX) // _XTALK_STRIDE), _XTALK_N)
    idx = _xtalk_index(seed, np.arange(k0, k1, dtype=np.int64))
    streak = _streak_index(seed)
    lo, hi = np.searchsorted(streak, [y0 * NPIX, (y0 + ny) * NPIX])
    idx = np.concatenate([idx, streak[lo:hi]])
    bits = np.concatenate([np.full(len(idx) - (hi - lo), 1 << 20, np.int32),
                           np.full(hi - lo, 1 << 25, np.int32)])
    y, x = np.divmod(idx, NPIX)
    keep = (y >= y0) & (y < y0 + ny) & (x >= x0) & (x < x0 + nx)
    return y[keep] - y0, x[keep] - x0, bits[keep]
