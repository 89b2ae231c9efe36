"""Parse IBE cutout parameters (IRSA's cutout service): ``center=x,y[units]`` and ``size=s[,s2][units]``.

``center`` units: none, ``d``, ``deg``, ``rad``, ``arcmin``, ``arcsec`` (x, y are RA, Dec) or
``px``/``pix``/``pixels`` (x, y are pixel coordinates).  Pixel coordinates are **0-based with
pixel centres at integers** (numpy and astropy's ``world_to_pixel`` convention; IRSA does not
say which it uses).  ``size`` units: none (degrees), ``arcsec``, ``arcmin``, ``deg``, ``rad`` or
``px``/``pix``/``pixels``; one value gives a square, two give NAXIS1 then NAXIS2.  Angular sizes
become ``round(size_deg * 3600 / 6.153)`` pixels.  A cutout is at most :data:`MAX_SIZE_PX`
pixels (one detector, 3.49 deg) on a side; larger or non-finite values are refused (HTTP 400),
so no request renders more than one frame.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import SpherexInputError

__all__ = ["CutoutParams", "parse_cutout", "PIXEL_SCALE_ARCSEC", "MAX_SIZE_PX"]

PIXEL_SCALE_ARCSEC = 6.153
MAX_SIZE_PX = 2040                  # a whole SPHEREx detector

_ANGLE_UNITS = {"": 1.0, "d": 1.0, "deg": 1.0, "degree": 1.0, "degrees": 1.0,
                "rad": 180.0 / math.pi, "radian": 180.0 / math.pi, "radians": 180.0 / math.pi,
                "arcmin": 1 / 60.0, "arcsec": 1 / 3600.0}
_PIXEL_UNITS = {"px", "pix", "pixel", "pixels"}
_VALUE = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-zA-Z]*)\s*")


@dataclass(frozen=True)
class CutoutParams:
    """A parsed cutout request: a sky or pixel centre and a size in pixels."""

    width_px: int
    height_px: int
    ra: float | None = None
    dec: float | None = None
    x: float | None = None          # 0-based pixel centre, when the centre was given in px
    y: float | None = None

    @property
    def in_pixels(self):
        return self.x is not None


def _values(text, name, count):
    """Split ``'a,b[unit]'`` into floats and one unit (a unit on each value must agree)."""
    parts = text.split(",")
    if len(parts) not in count:
        raise SpherexInputError(f"{name}={text!r}: expected "
                                f"{' or '.join(str(c) for c in count)} comma-separated values")
    values, units = [], []
    for p in parts:
        m = _VALUE.fullmatch(p)
        if not m:
            raise SpherexInputError(f"{name}={text!r}: {p.strip()!r} is not a number with an "
                                    "optional unit")
        value = float(m.group(1))
        if not math.isfinite(value):
            raise SpherexInputError(f"{name}={text!r}: {p.strip()!r} is not a finite number")
        values.append(value)
        units.append(m.group(2).lower())
    given = {u for u in units if u}
    if len(given) > 1:
        raise SpherexInputError(f"{name}={text!r}: values have different units")
    unit = given.pop() if given else ""
    if unit not in _ANGLE_UNITS and unit not in _PIXEL_UNITS:
        raise SpherexInputError(f"{name}={text!r}: unknown unit {unit!r}; use deg, rad, arcmin, "
                                "arcsec or px")
    return values, unit


def _to_pixels(value, unit):
    if value < 0:
        raise SpherexInputError(f"size {value:g} is negative; sizes must be positive")
    if value == 0:
        raise SpherexInputError("size must be larger than zero")
    if unit in _PIXEL_UNITS:
        n = math.floor(value + 0.5)
    else:
        n = math.floor(value * _ANGLE_UNITS[unit] * 3600.0 / PIXEL_SCALE_ARCSEC + 0.5)
    if n > MAX_SIZE_PX:
        deg = MAX_SIZE_PX * PIXEL_SCALE_ARCSEC / 3600.0
        raise SpherexInputError(f"size {value:g}{unit} is larger than the largest cutout, "
                                f"{MAX_SIZE_PX} px ({deg:.3f} deg)")
    return max(1, n)


def parse_cutout(center, size):
    """Parse the ``center`` and ``size`` query values (both required)."""
    if center is None or size is None:
        raise SpherexInputError("a cutout needs both center=x,y[units] and size=s[,s2][units]")
    (x, y), cunit = _values(center, "center", (2,))
    sizes, sunit = _values(size, "size", (1, 2))
    nx = _to_pixels(sizes[0], sunit)
    ny = _to_pixels(sizes[-1], sunit)
    if cunit in _PIXEL_UNITS:
        return CutoutParams(nx, ny, x=x, y=y)
    scale = _ANGLE_UNITS[cunit]
    ra, dec = x * scale, y * scale
    if not -90.0 <= dec <= 90.0:
        raise SpherexInputError(f"dec value {dec:g} lies outside valid interval [-90, 90]")
    return CutoutParams(nx, ny, ra=ra % 360.0, dec=dec)
