"""The SPHEREx cube as glue data: a 3-D ``Data`` whose world axes are RA, Dec and the
per-slice wavelength (or MJD), so glue's profile viewer shows a pixel's spectrum.

The spectral axis is a lookup table, :class:`CubeCoordinates` (APE-14 low-level WCS of the
celestial WCS plus the table): glue-core has no spectral-coordinates class of its own, astropy
cannot build a ``-TAB`` WCS without a FITS table behind it, and a gwcs object would not survive
a glue session file; this class does (``__gluestate__``).
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS
from glue.core.coordinates import Coordinates

from ..analysis.cube import CUBE_AXES, band_number, reproject_cube
from ..errors import SpherexInputError
from ..products.flags import DEFAULT_BAD_FLAGS

__all__ = ["CubeCoordinates", "build_cube", "cube_to_data", "cube_coordinates"]


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


def cube_coordinates(cube):
    """The :class:`CubeCoordinates` of a :class:`~glue_spherex.analysis.cube.ReprojectedCube`."""
    name, unit, ptype, column = CUBE_AXES[cube.order]
    return CubeCoordinates(cube.wcs, u.Quantity(cube.slices[column]).value,
                           name=name, unit=unit, physical_type=ptype)


def cube_to_data(cube, label="SPHEREx cube"):
    """A glue 3-D ``Data`` of a :class:`ReprojectedCube` (components flux, variance,
    wavelength, bandwidth, flagged; world axes RA, Dec and the slice wavelength)."""
    from glue.core import Component, Data

    data = Data(label=label, coords=cube_coordinates(cube))
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
        label = "SPHEREx cube" + (f" D{band_number(band)}" if band is not None else "")
    return cube_to_data(cube, label=label), cube.slices
