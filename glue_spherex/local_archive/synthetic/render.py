"""Pixel data of synthetic frames, computed only for the window asked for.

For a window of a frame (0-based parent pixels), each pixel gets its own wavelength from the
detector's real WCS-WAVE table; IMAGE is ZODI plus the sky's sources integrated over the
pixel, plus Gaussian noise of exactly VARIANCE (read noise and photon noise); FLAGS come from
:mod:`.flags` and pixels with a bad bit get wrong values. Pipeline-7 frames (:mod:`.pipeline7`)
use the R7 WCS-WAVE, EPSF-zone FWHM and gain and add CROSSTALK and STREAK flags. Noise comes
from a counter-based hash of (frame seed, y, x), so a parent pixel gets the same value bit
for bit whatever window it is rendered in. Details: ``docs/archive.rst``, "How the
synthetic data are made".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
from scipy.special import erf, ndtri

from ...errors import SpherexInputError
from ...products.wavelength import reference_table
from . import pipeline7 as r7
from .flags import (
    BITS,
    dichroic_rows,
    exposure_flags,
    exposure_flags_window,
    pipeline7_counts,
    pipeline7_flags_window,
    static_flags,
)
from .geometry import NPIX, OMEGA_PIX_SR, PIXEL_SCALE_ARCSEC, ecliptic_latitude, frame_geometry
from .hashing import uniform
from .psf import zone_fwhm, zone_index
from .sky import default_sky

__all__ = ["render_window", "render_flags", "frame_state", "source_pixels", "READ_SIGMA", "PHOTON_GAIN"]

#: Read-noise floor (MJy/sr) and photon-noise coefficient (MJy/sr per MJy/sr) per detector.
READ_SIGMA = {1: 0.015, 2: 0.015, 3: 0.015, 4: 0.012, 5: 0.02, 6: 0.02}
PHOTON_GAIN = {1: 0.002, 2: 0.002, 3: 0.002, 4: 0.002, 5: 0.004, 6: 0.004}

_SIGMA_PER_FWHM = 1.0 / np.sqrt(8.0 * np.log(2.0))
_MJYSR_PER_UJY = 1.0 / (OMEGA_PIX_SR * 1e12)  # one µJy in one pixel, in MJy/sr
_NKNOT = 9


@dataclass(frozen=True)
class Placement:
    """A sky source on a frame: 0-based pixel position, PSF FWHM, SOURCE-mask radius."""

    source: object
    x: float
    y: float
    fwhm: float
    mask_radius: float
    boxes: tuple  # per component: (sigma_px, half-width of its evaluation box)


@dataclass(frozen=True)
class FrameState:
    spec: object
    table: object
    placements: tuple
    counts: dict
    beta_knots: np.ndarray


def _mask_radius(src, flux_ujy):
    r = min(max(1.2 + 1.2 * math.log10(max(flux_ujy, 1000.0) / 1000.0), 1.5), 5.0)
    if src.kind != "point":
        w = sum(c.weight for c in src.components)
        s2 = sum(c.weight * c.sigma_arcsec**2 for c in src.components)
        r = max(r, 1.2 * math.sqrt(2 * s2 / w) / PIXEL_SCALE_ARCSEC)
    return r


@cache
def _table(detector):
    return reference_table(detector)


@cache
def _sky_arrays():
    """Positions of the sky sources and how far off a frame (px) they still matter."""
    sky = default_sky()
    ra = np.array([s.ra for s in sky.sources])
    dec = np.array([s.dec for s in sky.sources])
    margin = 10 + 6 * np.array([s.extent_arcsec for s in sky.sources]) / PIXEL_SCALE_ARCSEC
    return ra, dec, margin


@cache
def _mask_radii(detector):
    """SOURCE-mask radius (px) of every sky source on a detector, from its mid-band flux."""
    table = _table(detector)
    wl_mid = float(np.median(table.values[..., 0]))
    return np.array([_mask_radius(s, float(s.flux_density(wl_mid)))
                     for s in default_sky().sources])


@lru_cache(maxsize=4096)
def frame_state(spec):
    """What a frame needs besides the window: source placements, flag counts (cached; small)."""
    det = int(spec.detector)
    if det not in READ_SIGMA:
        raise SpherexInputError(f"detector must be 1-6, got {spec.detector!r}")
    geom = frame_geometry(spec)
    table = r7.wave_table_r7(det) if spec.pipeline7 else _table(det)
    sky = default_sky()
    ra, dec, margin = _sky_arrays()
    xs, ys = geom.world2pix(ra, dec)
    with np.errstate(invalid="ignore"):
        on = ((xs > -margin) & (xs < NPIX - 1 + margin) & (ys > -margin) & (ys < NPIX - 1 + margin))
    sel = np.flatnonzero(on)
    xs, ys = xs[sel], ys[sel]
    if spec.pipeline7:
        fwhm = r7.epsf_zone_fwhm(det)[r7.epsf_zone_index(det, xs, ys)[::-1]]
    else:
        fwhm = zone_fwhm(det)[zone_index(xs, ys)[::-1]]
    radius = _mask_radii(det)
    placements = []
    for k, i in enumerate(sel):
        src = sky.sources[i]
        psf_var = (fwhm[k] * _SIGMA_PER_FWHM) ** 2
        boxes = []
        for c in src.components:
            sig = math.sqrt(c.sigma_arcsec**2 + psf_var) / PIXEL_SCALE_ARCSEC
            boxes.append((sig, math.ceil(6 * sig + 1)))
        placements.append(Placement(src, float(xs[k]), float(ys[k]), float(fwhm[k]),
                                    float(radius[i]), tuple(boxes)))
    n_source = _source_mask_count(placements)

    flags = exposure_flags(spec.seed)
    static = static_flags(det)
    counts = {name: static.count(name) + flags.count(name) for name in BITS}
    rows = dichroic_rows(det)
    counts["DICHROIC"] = (rows[1] - rows[0]) * NPIX if rows else 0
    counts["SOURCE"] = n_source
    if spec.pipeline7:
        counts.update(pipeline7_counts(spec.seed))
    # "not bad" transients and persistence: not also on a bad pixel of the array.
    pos = np.minimum(np.searchsorted(static.index, flags.index), len(static.index) - 1)
    on_bad = static.index[pos] == flags.index
    for name, key in (("TRANSIENT", "TRAN_NB"), ("PERSIST", "PERS_NB")):
        counts[key] = int(np.count_nonzero((flags.bits == (1 << BITS[name])) & ~on_bad))

    knots = np.linspace(-0.5, NPIX - 0.5, _NKNOT)
    kra, kdec = geom.pix2world(knots[None, :], knots[:, None])
    beta = ecliptic_latitude(kra, kdec)
    beta.setflags(write=False)
    return FrameState(spec, table, tuple(placements), counts, beta)


def source_pixels(spec):
    """``{name: (x, y)}``: 0-based pixel positions of the sky sources on a frame."""
    return {p.source.name: (p.x, p.y) for p in frame_state(spec).placements}


def _source_mask_count(placements):
    """Number of frame pixels within the SOURCE-mask radius of any placed source."""
    if not placements:
        return 0
    x = np.array([p.x for p in placements])[:, None]
    y = np.array([p.y for p in placements])[:, None]
    r = np.array([p.mask_radius for p in placements])[:, None]
    half = math.ceil(r.max()) + 1
    off = np.arange(-half, half + 1)
    ox, oy = np.meshgrid(off, off)
    px = np.floor(x).astype(np.int64) + ox.ravel()[None, :]
    py = np.floor(y).astype(np.int64) + oy.ravel()[None, :]
    inside = (((px - x) ** 2 + (py - y) ** 2 <= r * r)
              & (px >= 0) & (px < NPIX) & (py >= 0) & (py < NPIX))
    return len(np.unique(py[inside] * NPIX + px[inside]))


# --- rendering -------------------------------------------------------------------------------


def _check_window(x0, y0, nx, ny):
    try:
        x0, y0, nx, ny = (int(v) for v in (x0, y0, nx, ny))
    except (TypeError, ValueError):
        raise SpherexInputError("window must be four integers x0, y0, nx, ny") from None
    if nx < 1 or ny < 1 or x0 < 0 or y0 < 0 or x0 + nx > NPIX or y0 + ny > NPIX:
        raise SpherexInputError(
            f"window x0={x0}, y0={y0}, nx={nx}, ny={ny} is not inside the {NPIX}x{NPIX} frame "
            "(0 <= x0, x0 + nx <= 2040, nx >= 1; same for y)")
    return x0, y0, nx, ny


def _pixel_profile(lo, hi, centre, sigma):
    """Fraction of a unit 1-D Gaussian in each pixel lo..hi-1 (pixel i spans i ± 0.5)."""
    edges = (np.arange(lo, hi + 1) - 0.5 - centre) / (np.sqrt(2.0) * sigma)
    return 0.5 * np.diff(erf(edges))


def _add_sources(out, st, wl, x0, y0):
    ny, nx = out.shape
    for pl in st.placements:
        cx, cy = math.floor(pl.x + 0.5), math.floor(pl.y + 0.5)
        # Each SED is evaluated once on the placement's largest box within the window.
        big = max(half for _, half in pl.boxes)
        ux0, uy0 = max(cx - big, x0), max(cy - big, y0)
        ux1, uy1 = min(cx + big + 1, x0 + nx), min(cy + big + 1, y0 + ny)
        if ux0 >= ux1 or uy0 >= uy1:
            continue
        seds = {}
        for comp, (sig, half) in zip(pl.source.components, pl.boxes):
            bx0, bx1, by0, by1 = cx - half, cx + half + 1, cy - half, cy + half + 1
            ox0, ox1 = max(bx0, x0), min(bx1, x0 + nx)
            oy0, oy1 = max(by0, y0), min(by1, y0 + ny)
            if ox0 >= ox1 or oy0 >= oy1:
                continue
            # Profiles over the whole box, then sliced: identical in every window.
            px = _pixel_profile(bx0, bx1, pl.x, sig)[ox0 - bx0:ox1 - bx0]
            py = _pixel_profile(by0, by1, pl.y, sig)[oy0 - by0:oy1 - by0]
            if id(comp.sed) not in seds:
                seds[id(comp.sed)] = comp.sed(wl[uy0 - y0:uy1 - y0, ux0 - x0:ux1 - x0])
            flux = seds[id(comp.sed)][oy0 - uy0:oy1 - uy0, ox0 - ux0:ox1 - ux0]
            region = (slice(oy0 - y0, oy1 - y0), slice(ox0 - x0, ox1 - x0))
            out[region] += (comp.weight * _MJYSR_PER_UJY) * flux * (py[:, None] * px[None, :])


def _bilinear_knots(knots, xs, ys):
    step = NPIX / (_NKNOT - 1)
    fx, fy = (xs + 0.5) / step, (ys + 0.5) / step
    ix = np.clip(np.floor(fx).astype(int), 0, _NKNOT - 2)
    iy = np.clip(np.floor(fy).astype(int), 0, _NKNOT - 2)
    tx, ty = (fx - ix)[None, :], (fy - iy)[:, None]
    k = knots
    return ((1 - ty) * ((1 - tx) * k[iy[:, None], ix[None, :]] + tx * k[iy[:, None], ix[None, :] + 1])
            + ty * ((1 - tx) * k[iy[:, None] + 1, ix[None, :]] + tx * k[iy[:, None] + 1, ix[None, :] + 1]))


def _window_flags(st, x0, y0, nx, ny):
    flags = np.zeros((ny, nx), np.int32)
    sets = [static_flags(st.spec.detector).in_window(x0, y0, nx, ny),
            exposure_flags_window(st.spec.seed, x0, y0, nx, ny)]
    if st.spec.pipeline7:
        sets.append(pipeline7_flags_window(st.spec.seed, x0, y0, nx, ny))
    for yy, xx, bits in sets:
        np.bitwise_or.at(flags, (yy, xx), bits)
    rows = dichroic_rows(st.spec.detector)
    if rows:
        r0, r1 = max(rows[0], y0), min(rows[1], y0 + ny)
        if r0 < r1:
            flags[r0 - y0:r1 - y0] |= 1 << BITS["DICHROIC"]
    for pl in st.placements:
        r = pl.mask_radius
        if pl.x + r < x0 or pl.x - r > x0 + nx - 1 or pl.y + r < y0 or pl.y - r > y0 + ny - 1:
            continue
        # Only the disc's bounding box (one pixel of margin): the pixels outside it are
        # farther than r, so the mask is the same as over the whole window.
        bx0, bx1 = max(math.floor(pl.x - r) - 1, x0), min(math.ceil(pl.x + r) + 2, x0 + nx)
        by0, by1 = max(math.floor(pl.y - r) - 1, y0), min(math.ceil(pl.y + r) + 2, y0 + ny)
        xs, ys = np.arange(bx0, bx1), np.arange(by0, by1)
        inside = (xs[None, :] - pl.x) ** 2 + (ys[:, None] - pl.y) ** 2 <= r * r
        flags[by0 - y0:by1 - y0, bx0 - x0:bx1 - x0][inside] |= 1 << BITS["SOURCE"]
    return flags


def _corrupt(image, variance, flags, seed, x0, y0):
    """Wrong values on bad pixels, as a real pipeline leaves them."""
    def on(name):
        return (flags & (1 << BITS[name])) != 0

    yy, xx = np.nonzero(flags)
    u = np.zeros(flags.shape)
    u[yy, xx] = uniform(seed, 7, yy + y0, xx + x0)
    sigma = np.sqrt(variance)
    for name, change in (
        ("HOT", lambda v, u, s: v + 20.0 + 180.0 * u),
        ("COLD", lambda v, u, s: 0.05 * v),
        ("TRANSIENT", lambda v, u, s: v + 5.0 + 95.0 * u),
        ("PERSIST", lambda v, u, s: v + 0.5 + 2.0 * u),
        ("SUR_ERROR", lambda v, u, s: v + 40.0 * (u - 0.5)),
        ("OUTLIER", lambda v, u, s: v + (6.0 + 6.0 * u) * s),
    ):
        m = on(name)
        if m.any():
            image[m] = change(image[m], u[m], sigma[m])
    dead = on("NONFUNC")
    image[dead] = np.nan
    variance[dead] = np.nan


def render_flags(spec, x0, y0, nx, ny):
    """FLAGS of a window alone (int32, ``(ny, nx)``): the ``flags`` of :func:`render_window`,
    without the pixel values (a whole frame's in a few tens of ms)."""
    x0, y0, nx, ny = _check_window(x0, y0, nx, ny)
    return _window_flags(frame_state(spec), x0, y0, nx, ny)


def render_window(spec, x0, y0, nx, ny, noise=True):
    """Pixel data of a window of a frame.

    Returns ``dict(image, flags, variance, zodi)`` of ``(ny, nx)`` arrays (float32, int32,
    float32, float32). ``noise=False`` gives the noise-free, artifact-free model (IMAGE =
    sources + zodi, bad pixels not corrupted; FLAGS and VARIANCE unchanged).
    """
    x0, y0, nx, ny = _check_window(x0, y0, nx, ny)
    st = frame_state(spec)
    det = int(spec.detector)
    xs, ys = np.arange(x0, x0 + nx), np.arange(y0, y0 + ny)
    wl, _ = st.table.lookup(xs[None, :] + 1.0, ys[:, None] + 1.0)
    beta = _bilinear_knots(st.beta_knots, xs, ys)
    zodi = default_sky().zodi(wl, beta, spec.mjd_avg)
    src = np.zeros((ny, nx))
    _add_sources(src, st, wl, x0, y0)
    variance = READ_SIGMA[det] ** 2 + PHOTON_GAIN[det] * (zodi + np.maximum(src, 0.0))
    image = src + zodi
    flags = _window_flags(st, x0, y0, nx, ny)
    if noise:
        gauss = ndtri(uniform(spec.seed, 1, ys[:, None], xs[None, :]))
        image = image + np.sqrt(variance) * gauss
        _corrupt(image, variance, flags, spec.seed, x0, y0)
    if spec.pipeline7:
        gain = r7.R7_GAIN[det]
        image, variance = image * gain, variance * gain**2
    return {
        "image": image.astype(np.float32),
        "flags": flags,
        "variance": variance.astype(np.float32),
        "zodi": zodi.astype(np.float32),
    }
