"""The photometry of many sources on one full-frame image read in part (image-major).

:func:`measure_sources` places every source on the image with one vectorised WCS call, reads
(through a :class:`~glue_spherex.products.partial.PartialImage`) only the pixel rows and PSF
zones the apertures need, and measures each source on a window of the frame with the
measurement of :func:`~glue_spherex.analysis.spectrum.extract_spectrum` -- the same code, on
the same pixels, with the frame's WCS shifted to the window as a cutout's is. A source gives
the numbers a cutout of the same image around it gives (to float precision), as long as that
cutout holds the aperture and its annulus.
"""

from __future__ import annotations

import math
import warnings

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.wcs import NoConvergence

from ..products.flags import DEFAULT_BAD_FLAGS, mask_from_names
from .spectrum import (
    Frame,
    check_options,
    flag_bits_for,
    measure_point,
    pixel_geometry,
    product_psf,
)

__all__ = ["measure_sources", "WINDOW_MARGIN_PX"]

#: Pixels of frame read around an aperture (or annulus) beyond its radius: the measurement's
#: 2-pixel mirror margin, its sub-pixel reach, and the WCS's curvature across the window.
WINDOW_MARGIN_PX = 4
_MIN_SCALE_ARCSEC = 5.5  # SPHEREx pixels are 6.15" (a little less off-axis); never below this


class _ShiftedWCS:
    """The frame's celestial WCS seen from a window whose pixel (0, 0) is frame pixel (x0, y0).

    What the measurement asks of a cutout's WCS, for a window: a cutout's header is the
    frame's with CRPIX shifted, so its pixel <-> sky transform is this one.
    """

    def __init__(self, wcs, x0, y0):
        self._wcs, self._x0, self._y0 = wcs, x0, y0

    @property
    def celestial(self):
        return self._wcs  # the pixel scale matrix is the same in every window

    def pixel_to_world_values(self, x, y):
        return self._wcs.pixel_to_world_values(np.asarray(x) + self._x0, np.asarray(y) + self._y0)

    def world_to_pixel_values(self, ra, dec):
        x, y = self._wcs.world_to_pixel_values(ra, dec)
        return np.asarray(x) - self._x0, np.asarray(y) - self._y0


def measure_sources(partial, ids, ra, dec, radius=6 * u.arcsec, *, radii=None, annulus=None,
                    aperture_correction="psf", min_unmasked_fraction=0.5,
                    bad_flags=DEFAULT_BAD_FLAGS, subtract_zodi=True):
    """Measure sources ``ids`` at (``ra``, ``dec``) degrees on ``partial``; one row each.

    ``radii`` (arcsec, one per source, NaN for ``radius``) gives sources apertures of their
    own. Each row is the dict :func:`~glue_spherex.analysis.spectrum.measure_point` gives,
    with ``x``/``y`` in frame pixels and ``id``, ``ra``, ``dec`` added, in the order of ``ids``.
    """
    product = partial.product
    ra = np.asarray(ra, float)
    dec = np.asarray(dec, float)
    options = check_options(SkyCoord(ra[0] if len(ra) else 0.0, dec[0] if len(dec) else 0.0,
                                     unit="deg"),
                            radius, annulus, aperture_correction, min_unmasked_fraction)
    _, radius, annulus, correction, fraction = options
    per_source = np.full(len(ra), radius.to_value(u.arcsec)) if radii is None else \
        np.where(np.isfinite(np.asarray(radii, float)), np.asarray(radii, float),
                 radius.to_value(u.arcsec))
    checked = {}  # radius (arcsec) -> the checked Quantity
    names = [bad_flags] if isinstance(bad_flags, str) else list(bad_flags)
    ny, nx = product.shape
    x, y = _positions(product.wcs, ra, dec)
    reach = max(float(per_source.max(initial=0.0)),
                annulus[1].to_value(u.arcsec) if annulus is not None else 0.0)
    half = int(math.ceil(reach / _MIN_SCALE_ARCSEC)) + WINDOW_MARGIN_PX
    near = np.isfinite(x) & np.isfinite(y) & (x > -half) & (x < nx - 1 + half) \
        & (y > -half) & (y < ny - 1 + half)
    yc = np.round(y[near]).astype(int)
    partial.load_rows([(c - half, c + half + 1) for c in yc])
    if correction == "psf":
        partial.load_psf(np.clip(x[near], 0, nx - 1), np.clip(y[near], 0, ny - 1))
    bits = flag_bits_for(product, names)
    flags = partial.flags
    info = dict(obs_id=str(product.obsid), detector=int(product.detector),
                bandpass=str(product.bandpass), mjd=float(product.mjd_avg), cutout_index=-1,
                pipeline=int(product.pipeline or 0))
    psf = product.has_psf and correction == "psf"
    geometry = pixel_geometry(product.wcs)  # the same in every window
    rows = []
    for i, sid in enumerate(ids):
        if near[i]:
            xc, yc_i = int(round(x[i])), int(round(y[i]))
            x0, x1 = max(xc - half, 0), min(xc + half + 1, nx)
            y0, y1 = max(yc_i - half, 0), min(yc_i + half + 1, ny)
        else:  # off the frame: a window of one pixel, which the measurement calls off_image
            x0, x1, y0, y1 = 0, 1, 0, 1
            partial.load_rows([(0, 1)])
        image = np.asarray(product.image[y0:y1, x0:x1])
        if subtract_zodi:
            image = image - np.asarray(product.zodi[y0:y1, x0:x1])
        frame = Frame(
            image=image,
            variance=np.asarray(product.variance[y0:y1, x0:x1]),
            bad=mask_from_names(flags[y0:y1, x0:x1], names, bits=bits),
            wcs=_ShiftedWCS(product.wcs, x0, y0),
            wave=_shifted_wave(product, x0, y0),
            psf=_shifted_psf(product, x0, y0) if psf else None,
            psf_fwhm=float(product.psf_fwhm),
            info=info,
            geometry=geometry,
        )
        r = float(per_source[i])
        if r not in checked:
            checked[r] = check_options(SkyCoord(0.0, 0.0, unit="deg"), r * u.arcsec, annulus,
                                       correction, fraction)[1]
        row = measure_point(0, frame, float(ra[i]), float(dec[i]), checked[r], annulus,
                            correction, fraction)
        row.update(id=sid, ra=float(ra[i]), dec=float(dec[i]),
                   x=row["x"] + x0, y=row["y"] + y0)
        rows.append(row)
    return rows


def _positions(wcs, ra, dec):
    """Frame pixels of the positions (NaN where the SIP inverse does not converge)."""
    if not len(ra):
        return np.zeros(0), np.zeros(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            x, y = wcs.all_world2pix(ra, dec, 0, quiet=False)
        except NoConvergence as exc:
            best = np.array(exc.best_solution, float)
            bad = np.union1d(np.asarray(exc.divergent or [], int),
                             np.asarray(exc.slow_conv or [], int))
            best[bad] = np.nan
            x, y = best[:, 0], best[:, 1]
    return np.asarray(x, float), np.asarray(y, float)


def _shifted_wave(product, x0, y0):
    def wave(x, y):
        wl, bw = product.pixel_to_wave(np.asarray(x, float) + x0, np.asarray(y, float) + y0)
        return (np.asarray(u.Quantity(wl, u.um).value, float),
                np.asarray(u.Quantity(bw, u.um).value, float))
    return wave


def _shifted_psf(product, x0, y0):
    return lambda x, y: product_psf(product, x + x0, y + y0)
