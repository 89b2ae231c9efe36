"""A wavelength-ordered cube: SPHEREx cutouts reprojected onto one sky grid, one slice each.

Every cutout of a position samples the sky at a different wavelength (and every pixel of a
cutout at a slightly different one), so the natural cube is irregular along its spectral
axis. :func:`reproject_cube` puts each cutout on a common celestial grid with
``reproject.reproject_interp`` (bilinear; the input WCS keeps its SIP distortion) and orders
the slices by the wavelength each cutout sees at the grid centre. :func:`build_cube` turns
the result into a glue 3-D :class:`~glue.core.Data` whose world coordinates are RA, Dec and
that per-slice wavelength, so glue's profile viewer shows a pixel's spectrum against
wavelength; the exact per-pixel wavelength is kept as a component.

The spectral axis is a lookup table, expressed by :class:`CubeCoordinates`, a glue
``Coordinates`` (APE-14 low-level WCS) made of the celestial WCS and the table. glue-core has
no spectral-coordinates helper of its own, astropy cannot build a ``-TAB`` WCS without a FITS
table extension behind it, and a gwcs object would not survive a glue session file; this
class does (``__gluestate__``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import QTable
from astropy.wcs import WCS
from glue.core.coordinates import Coordinates

from .errors import SpherexInputError
from .flags import DEFAULT_BAD_FLAGS, mask_from_names

__all__ = ["CubeCoordinates", "SpectralCube", "reproject_cube", "build_cube", "cube_to_data"]

ORDERS = ("wavelength", "mjd")
_AXES = {  # order -> (world axis name, unit, physical type, slice-table column)
    "wavelength": ("Wavelength", "um", "em.wl", "wavelength"),
    "mjd": ("MJD", "d", "time", "mjd"),
}


class CubeCoordinates(Coordinates):
    """Celestial WCS on pixel axes (x, y) plus a lookup table on pixel axis z (the slice).

    World axes are (RA, Dec, ``name``): RA/Dec in degrees from ``celestial`` and the third
    by linear interpolation in ``values`` (non-decreasing, one per slice; linear
    extrapolation beyond the ends).
    """

    def __init__(self, celestial, values, name="Wavelength", unit="um", physical_type="em.wl"):
        if not isinstance(celestial, WCS):
            celestial = WCS(celestial)
        self.celestial = celestial.celestial
        self.values = np.asarray(values, dtype=float)
        if self.values.ndim != 1 or len(self.values) == 0 or np.any(np.diff(self.values) < 0):
            raise SpherexInputError("the spectral lookup table must be a non-empty, "
                                    "non-decreasing 1-D array")
        self.name, self.unit, self.physical_type = name, unit, physical_type
        super().__init__(pixel_n_dim=3, world_n_dim=3)

    # -- APE-14 ------------------------------------------------------------------------

    @property
    def world_axis_physical_types(self):
        return ["pos.eq.ra", "pos.eq.dec", self.physical_type]

    @property
    def world_axis_units(self):
        return ["deg", "deg", self.unit]

    @property
    def world_axis_names(self):
        return ["Right Ascension", "Declination", self.name]

    @property
    def axis_correlation_matrix(self):
        return np.array([[True, True, False], [True, True, False], [False, False, True]])

    @property
    def world_axis_object_components(self):
        return [("celestial", 0, "spherical.lon.degree"),
                ("celestial", 1, "spherical.lat.degree"),
                ("spectral", 0, "value")]

    @property
    def world_axis_object_classes(self):
        return {"celestial": (SkyCoord, (), {"frame": "icrs", "unit": u.deg}),
                "spectral": (u.Quantity, (), {"unit": u.Unit(self.unit)})}

    def _table(self, z):
        z = np.asarray(z, dtype=float)
        n = len(self.values)
        if n == 1:
            return np.full(z.shape, self.values[0])
        idx = np.arange(n)
        out = np.interp(z, idx, self.values)
        lo, hi = z < 0, z > n - 1
        out = np.where(lo, self.values[0] + z * (self.values[1] - self.values[0]), out)
        return np.where(hi, self.values[-1] + (z - n + 1) * (self.values[-1] - self.values[-2]),
                        out)

    def _inverse_table(self, w):
        w = np.asarray(w, dtype=float)
        n = len(self.values)
        if n == 1:
            return np.zeros(w.shape)
        idx = np.arange(n, dtype=float)
        out = np.interp(w, self.values, idx)
        slope0 = self.values[1] - self.values[0]
        slope1 = self.values[-1] - self.values[-2]
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(w < self.values[0], (w - self.values[0]) / slope0, out)
            out = np.where(w > self.values[-1], n - 1 + (w - self.values[-1]) / slope1, out)
        return out

    def pixel_to_world_values(self, x, y, z):
        ra, dec = self.celestial.pixel_to_world_values(x, y)
        return ra, dec, self._table(z)

    def world_to_pixel_values(self, ra, dec, w):
        x, y = self.celestial.world_to_pixel_values(ra, dec)
        return x, y, self._inverse_table(w)

    # -- glue session files ------------------------------------------------------------

    def __gluestate__(self, context):
        return dict(header=self.celestial.to_header_string(), values=self.values.tolist(),
                    name=self.name, unit=self.unit, physical_type=self.physical_type)

    @classmethod
    def __setgluestate__(cls, rec, context):
        from astropy.io import fits

        return cls(WCS(fits.Header.fromstring(rec["header"])), rec["values"], name=rec["name"],
                   unit=rec["unit"], physical_type=rec["physical_type"])


@dataclass
class SpectralCube:
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

    @property
    def coordinates(self):
        name, unit, ptype, column = _AXES[self.order]
        return CubeCoordinates(self.wcs, u.Quantity(self.slices[column]).value,
                               name=name, unit=unit, physical_type=ptype)


def _band_filter(band):
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
    SpectralCube
    """
    from reproject import reproject_interp
    from reproject.mosaicking import find_optimal_celestial_wcs

    from .spectrum import _load_products

    if order not in ORDERS:
        raise SpherexInputError(f"order must be one of {ORDERS}, got {order!r}")
    detector = _band_filter(band)
    if isinstance(products, (str, os.PathLike)):
        opened = _load_products(products)
        try:
            return reproject_cube(opened, band=band, wcs=wcs, shape=shape, order=order,
                                  bad_flags=bad_flags, subtract_zodi=subtract_zodi)
        finally:
            for p in opened:
                p.close()
    products = [p for p in _load_products(products)
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
    key = _AXES[order][3]
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
    return SpectralCube(flux, variance, wave, band_w, flagged, wcs, slices, order)


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


def cube_to_data(cube, label="SPHEREx cube"):
    """A glue 3-D ``Data`` of a :class:`SpectralCube` (components flux, variance,
    wavelength, bandwidth, flagged; world axes RA, Dec and the slice wavelength)."""
    from glue.core import Component, Data

    data = Data(label=label, coords=cube.coordinates)
    for name, array, unit in (("flux", cube.flux, "MJy/sr"),
                              ("variance", cube.variance, "MJy2/sr2"),
                              ("wavelength", cube.wavelength, "um"),
                              ("bandwidth", cube.bandwidth, "um"),
                              ("flagged", cube.flagged.astype(np.int8), "")):
        data.add_component(Component(array, units=unit), name)
    s = cube.slices
    data.meta.update(
        spherex_cube=True, order=cube.order,
        slice_wavelength=[float(v) for v in u.Quantity(s["wavelength"], u.um).value],
        slice_bandwidth=[float(v) for v in u.Quantity(s["bandwidth"], u.um).value],
        slice_mjd=[float(v) for v in s["mjd"]],
        slice_detector=[int(v) for v in s["detector"]],
        slice_obs_id=[str(v) for v in s["obs_id"]],
        slice_cutout_index=[int(v) for v in s["cutout_index"]],
        wavelength_at=f"RA {s.meta['ra']:.6f}, Dec {s.meta['dec']:.6f} (grid centre)",
    )
    return data


def build_cube(products, *, band=None, wcs=None, shape=None, order="wavelength",
               bad_flags=DEFAULT_BAD_FLAGS, subtract_zodi=True, label=None):
    """A glue 3-D ``Data`` cube of the cutouts, ordered by wavelength (see
    :func:`reproject_cube` for the parameters); the slice table is also returned.

    Returns
    -------
    (glue.core.Data, QTable)
        The cube and its per-slice table (also in ``data.meta['slice_*']``).
    """
    cube = reproject_cube(products, band=band, wcs=wcs, shape=shape, order=order,
                          bad_flags=bad_flags, subtract_zodi=subtract_zodi)
    if label is None:
        label = "SPHEREx cube" + (f" D{_band_filter(band)}" if band is not None else "")
    return cube_to_data(cube, label=label), cube.slices
