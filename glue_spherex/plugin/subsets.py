"""Subset states that select the same thing in every cutout without needing links.

* :class:`SkyCircleSubsetState` -- the pixels within a radius of a sky position, computed
  from each dataset's own celestial WCS: works for any dataset with a celestial WCS, costs
  one WCS evaluation per dataset (linear in the number of cutouts).
* :class:`WavelengthRangeSubsetState` -- the pixels whose own central wavelength is in
  ``[lo, hi)``, read from each dataset's ``wavelength`` component.

Both are saved and restored with glue sessions.  :func:`sky_subset` and
:func:`wavelength_subset` create a subset group (one subset per dataset) from them.
"""

from __future__ import annotations

import math

import numpy as np
from glue.core.exceptions import IncompatibleAttribute
from glue.core.subset import SubsetState

from ..errors import SpherexInputError
from ..products.celestial import separation_deg

__all__ = ["SkyCircleSubsetState", "WavelengthRangeSubsetState", "sky_subset",
           "wavelength_subset"]


def _pixel_grid(data, view):
    yy, xx = np.indices(data.shape, dtype=float)
    if view is not None:
        yy, xx = yy[view], xx[view]
    return xx, yy


def _finite(name, value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise SpherexInputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise SpherexInputError(f"{name} must be finite, got {value!r}")
    return value


class SkyCircleSubsetState(SubsetState):
    """Pixels whose centre lies within ``radius`` degrees of (``ra``, ``dec``) (ICRS, deg).

    Any 2-D dataset whose ``coords`` is a celestial astropy WCS can be masked; others raise
    :class:`~glue.core.exceptions.IncompatibleAttribute` (glue then shows an empty subset).
    """

    def __init__(self, ra=0.0, dec=0.0, radius=0.0):
        super().__init__()
        self.ra = _finite("ra", ra)
        self.dec = _finite("dec", dec)
        self.radius = _finite("radius", radius)
        if not -90 <= self.dec <= 90:
            raise SpherexInputError(f"dec must be within [-90, 90] degrees, got {dec!r}")
        if self.radius < 0:
            raise SpherexInputError(f"radius must be >= 0 degrees, got {radius!r}")

    @classmethod
    def from_pixel_circle(cls, data, x, y, radius):
        """The sky circle of a circle drawn on ``data``: centre (x, y), radius in pixels."""
        wcs = _celestial(data)
        ra, dec = wcs.all_pix2world([x, x + radius, x], [y, y, y + radius], 0)
        centre = (ra[0], dec[0])
        return cls(ra[0], dec[0], max(separation_deg(*centre, ra[1], dec[1]),
                                      separation_deg(*centre, ra[2], dec[2])))

    def to_mask(self, data, view=None):
        wcs = _celestial(data)
        xx, yy = _pixel_grid(data, view)
        ra, dec = wcs.all_pix2world(xx, yy, 0)
        return separation_deg(self.ra, self.dec, ra, dec) <= self.radius

    def copy(self):
        return SkyCircleSubsetState(self.ra, self.dec, self.radius)

    def __repr__(self):
        return f"<SkyCircleSubsetState ra={self.ra} dec={self.dec} radius={self.radius}>"

    def __gluestate__(self, context):
        return dict(ra=self.ra, dec=self.dec, radius=self.radius)

    @classmethod
    def __setgluestate__(cls, rec, context):
        return cls(rec["ra"], rec["dec"], rec["radius"])


def _celestial(data):
    coords = getattr(data, "coords", None)
    if getattr(data, "ndim", 0) != 2 or not getattr(coords, "has_celestial", False) \
            or not hasattr(coords, "all_pix2world"):
        raise IncompatibleAttribute(f"{getattr(data, 'label', data)!r} has no 2-D celestial WCS")
    return coords.celestial if coords.naxis != 2 else coords


class WavelengthRangeSubsetState(SubsetState):
    """Pixels whose own central wavelength (µm) satisfies ``lo <= wavelength < hi``.

    Uses each dataset's ``wavelength`` component; datasets without one raise
    :class:`~glue.core.exceptions.IncompatibleAttribute`.
    """

    def __init__(self, lo=0.0, hi=0.0):
        super().__init__()
        self.lo = _finite("lo", lo)
        self.hi = _finite("hi", hi)
        if self.hi <= self.lo:
            raise SpherexInputError(f"empty wavelength range: need lo < hi, got [{lo}, {hi})")

    def to_mask(self, data, view=None):
        cid = next((c for c in getattr(data, "main_components", ()) if c.label == "wavelength"),
                   None)
        if cid is None:
            raise IncompatibleAttribute(f"{getattr(data, 'label', data)!r} has no wavelength")
        wavelength = np.asarray(data.get_data(cid, view=view))
        return (wavelength >= self.lo) & (wavelength < self.hi)

    def copy(self):
        return WavelengthRangeSubsetState(self.lo, self.hi)

    def __repr__(self):
        return f"<WavelengthRangeSubsetState {self.lo} <= wavelength < {self.hi} um>"

    def __gluestate__(self, context):
        return dict(lo=self.lo, hi=self.hi)

    @classmethod
    def __setgluestate__(cls, rec, context):
        return cls(rec["lo"], rec["hi"])


def sky_subset(data_collection, ra, dec, radius, label=None):
    """A subset group selecting the pixels within ``radius`` deg of (ra, dec) in every dataset."""
    state = SkyCircleSubsetState(ra, dec, radius)
    label = label or f"sky {state.ra:.5f} {state.dec:+.5f} r={state.radius * 3600:.1f}\""
    return data_collection.new_subset_group(label=label, subset_state=state)


def wavelength_subset(data_collection, lo, hi, label=None):
    """A subset group selecting ``lo <= wavelength < hi`` (µm) in every cutout."""
    state = WavelengthRangeSubsetState(lo, hi)
    label = label or f"{state.lo:g}-{state.hi:g} µm"
    return data_collection.new_subset_group(label=label, subset_state=state)
