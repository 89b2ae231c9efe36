"""A wavelength-ordered cube: SPHEREx cutouts reprojected onto one sky grid, one slice each.

Every cutout of a position samples the sky at a different wavelength (and every pixel at a
slightly different one). :func:`reproject_cube` puts each cutout on a common celestial grid
with ``reproject.reproject_interp`` (bilinear, SIP kept) and orders the slices by the
wavelength each cutout sees at the grid centre. Its glue form (a 3-D ``Data`` with a
lookup-table spectral axis) is :func:`glue_spherex.plugin.build_cube`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.table import QTable
from astropy.wcs import WCS

from ..errors import SpherexInputError
from ..products.flags import DEFAULT_BAD_FLAGS, mask_from_names

__all__ = ["ReprojectedCube", "reproject_cube", "CUBE_AXES", "band_number"]

ORDERS = ("wavelength", "mjd")
CUBE_AXES = {  # order -> (world axis name, unit, physical type, slice-table column)
    "wavelength": ("Wavelength", "um", "em.wl", "wavelength"),
    "mjd": ("MJD", "d", "time", "mjd"),
}


@dataclass
class ReprojectedCube:
    """Cutouts reprojected onto one grid; arrays are ``(n_slice, ny, nx)``.

    ``flux`` and ``variance`` in MJy/sr and (MJy/sr)^2 (NaN where a cutout does not cover
    the grid; the variance propagated through the bilinear weights), ``wavelength``/``bandwidth`` in µm (per pixel, reprojected from each cutout's
    ``W`` WCS), ``flagged`` True where a flagged (or invalid) input pixel contributed to the
    interpolation. ``slices`` has one row per slice: ``wavelength`` (at the grid centre),
    ``bandwidth``, ``mjd``, ``detector``, ``bandpass``, ``obs_id``, ``cutout_index``.
    """

    flux: np.ndarray
    variance: np.ndarray
    wavelength: np.ndarray
    bandwidth: np.ndarray
    flagged: np.ndarray
    wcs: WCS
    slices: QTable
    order: str = "wavelength"



def band_number(band):
    if band is None:
        return None
    text = str(band).strip().upper().removeprefix("SPHEREX-").removeprefix("D")
    if text not in {"1", "2", "3", "4", "5", "6"}:
        raise SpherexInputError(f"band must be 1-6, 'D1'-'D6' or 'SPHEREx-D1'..'-D6', got {band!r}")
    return int(text)


def _celestial_scale_arcsec(wcs):
    from astropy.wcs.utils import proj_plane_pixel_scales

    return float(np.sqrt(np.prod(proj_plane_pixel_scales(wcs.celestial))) * 3600.0)


def reproject_cube(products, *, band=None, wcs=None, shape=None, order="wavelength",
                   bad_flags=DEFAULT_BAD_FLAGS, subtract_zodi=True):
    """Reproject SPHEREx cutouts onto one celestial grid, one slice per cutout.

    Parameters
    ----------
    products : path or list of SpectralImage
        A combined cutout file or opened products.
    band : int or str, optional
        Keep only one detector (``3``, ``'D3'`` or ``'SPHEREx-D3'``); default all.
    wcs, shape : astropy WCS and (ny, nx), optional
        The output grid. By default the smallest north-up TAN grid covering every cutout at
        the cutouts' median pixel scale (``reproject.mosaicking.find_optimal_celestial_wcs``).
    order : {'wavelength', 'mjd'}
        Slice order and third world axis: wavelength at the grid centre (default), or the
        mid-exposure time.
    bad_flags : sequence of str
        FLAGS names marking pixels as flagged (``flagged`` array).
    subtract_zodi : bool
        Subtract the ZODI model from IMAGE (default True).

    Returns
    -------
    ReprojectedCube
    """
    from reproject import reproject_interp
    from reproject.mosaicking import find_optimal_celestial_wcs

    from .spectrum import load_products

    if order not in ORDERS:
        raise SpherexInputError(f"order must be one of {ORDERS}, got {order!r}")
    detector = band_number(band)
    if isinstance(products, (str, os.PathLike)):
        opened = load_products(products)
        try:
            return reproject_cube(opened, band=band, wcs=wcs, shape=shape, order=order,
                                  bad_flags=bad_flags, subtract_zodi=subtract_zodi)
        finally:
            for p in opened:
                p.close()
    products = [p for p in load_products(products)
                if detector is None or int(p.detector) == detector]
    if not products:
        raise SpherexInputError(
            "no cutouts to put in the cube" + (f" for band D{detector}" if detector else ""))
    if (wcs is None) != (shape is None):
        raise SpherexInputError("give both wcs and shape for the output grid, or neither")
    if wcs is None:
        scale = float(np.median([_celestial_scale_arcsec(p.wcs) for p in products]))
        wcs, shape = find_optimal_celestial_wcs([(p.shape, p.wcs) for p in products],
                                                resolution=scale * u.arcsec)
    else:
        wcs = wcs.celestial if isinstance(wcs, WCS) else WCS(wcs).celestial
        try:
            shape = tuple(int(n) for n in shape)
        except (TypeError, ValueError):
            shape = ()
        if len(shape) != 2 or min(shape) < 1:
            raise SpherexInputError(f"shape must be (ny, nx) of positive integers, got {shape!r}")

    ny, nx = shape
    centre = wcs.pixel_to_world((nx - 1) / 2.0, (ny - 1) / 2.0)
    rows = []
    for i, p in enumerate(products):
        wl, bw = p.wavelength_at(centre)
        rows.append(dict(index=i, wavelength=float(wl), bandwidth=float(bw),
                         mjd=float(p.mjd_avg), detector=int(p.detector), bandpass=str(p.bandpass),
                         obs_id=str(p.obsid),
                         cutout_index=-1 if p.cutout_index is None else int(p.cutout_index)))
    key = CUBE_AXES[order][3]
    rows.sort(key=lambda r: (np.inf if not np.isfinite(r[key]) else r[key]))
    n = len(rows)
    flux = np.full((n, ny, nx), np.nan, np.float32)
    variance = np.full_like(flux, np.nan)
    wave = np.full_like(flux, np.nan)
    band_w = np.full_like(flux, np.nan)
    flagged = np.zeros((n, ny, nx), bool)
    for k, row in enumerate(rows):
        p = products[row["index"]]
        image = np.asarray(p.image, float)
        if subtract_zodi:
            image = image - np.asarray(p.zodi, float)
        var = np.asarray(p.variance, float)
        bad = mask_from_names(p.flags, bad_flags, bits=p.flag_bits)
        bad |= ~np.isfinite(image) | ~np.isfinite(var)
        stack = np.stack([np.where(bad, 0.0, image), p.wavelength(), p.bandwidth(),
                          bad.astype(float)])
        out, footprint = reproject_interp((stack, p.wcs), wcs, shape_out=(ny, nx),
                                          order="bilinear")
        covered = footprint[0] > 0
        flux[k] = np.where(covered, out[0], np.nan)
        variance[k] = np.where(covered, _bilinear_variance(np.where(bad, 0.0, var), wcs,
                                                           p.wcs, (ny, nx)), np.nan)
        wave[k] = np.where(covered, out[1], np.nan)
        band_w[k] = np.where(covered, out[2], np.nan)
        flagged[k] = covered & (out[3] > 0)

    slices = QTable(dict(
        wavelength=np.array([r["wavelength"] for r in rows]) * u.um,
        bandwidth=np.array([r["bandwidth"] for r in rows]) * u.um,
        mjd=np.array([r["mjd"] for r in rows]),
        detector=np.array([r["detector"] for r in rows], int),
        bandpass=np.array([r["bandpass"] for r in rows], str),
        obs_id=np.array([r["obs_id"] for r in rows], str),
        cutout_index=np.array([r["cutout_index"] for r in rows], int),
    ))
    slices.meta.update(ra=float(centre.ra.deg), dec=float(centre.dec.deg),
                       wavelength_at="the grid centre (RA, Dec above)")
    return ReprojectedCube(flux, variance, wave, band_w, flagged, wcs, slices, order)


def _bilinear_variance(var, wcs_out, wcs_in, shape):
    """Variance of the bilinear resampling reproject_interp does: sum of w_i^2 var_i.

    Interpolating the variance itself would give sum of w_i var_i, up to four times too
    large between pixel centres. The output pixels are mapped to input pixels as
    reproject does (through the sky, with SIP) and its edge rule is kept: positions within
    half a pixel of the border take the border pixel, farther out are NaN.
    """
    from astropy.wcs.utils import pixel_to_pixel

    ny_in, nx_in = var.shape
    yo, xo = np.mgrid[:shape[0], :shape[1]]
    xi, yi = (np.asarray(c, float) for c in pixel_to_pixel(wcs_out, wcs_in, xo, yo))
    out = np.full(shape, np.nan)
    inside = (np.isfinite(xi) & np.isfinite(yi) & (xi >= -0.5) & (xi < nx_in - 0.5)
              & (yi >= -0.5) & (yi < ny_in - 0.5))
    x = np.clip(xi[inside], 0, nx_in - 1)
    y = np.clip(yi[inside], 0, ny_in - 1)
    x0 = np.minimum(np.floor(x).astype(int), max(nx_in - 2, 0))
    y0 = np.minimum(np.floor(y).astype(int), max(ny_in - 2, 0))
    fx, fy = x - x0, y - y0
    total = np.zeros(x.shape)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            w = wx * wy
            yy, xx = np.minimum(y0 + dy, ny_in - 1), np.minimum(x0 + dx, nx_in - 1)
            total += np.where(w > 0, w * w * var[yy, xx], 0.0)
    out[inside] = total
    return out
