"""Per-pixel wavelength and bandwidth from the SPHEREx ``W`` WCS (FITS Paper III ``-TAB``).

Every SPHEREx image header carries an alternate WCS ``W`` whose two axes (wavelength,
bandwidth) are a bilinear lookup in the ``WCS-WAVE`` table, indexed by parent-frame pixel.
This module evaluates that lookup as wcslib does (``WCS(hdr, fobj=hdul, key='W')``, SIP
never applied) but separably, so a full frame's grid is a few numpy operations instead of
millions of wcslib calls. The method is in ``docs/methods.rst`` ("Per-pixel wavelengths"),
its speed and agreement with astropy in ``docs/performance.rst``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
from astropy.io import fits

from ..errors import SpherexFormatError

__all__ = ["WaveTable", "SpectralWCS", "reference_table"]

DETECTORS = (1, 2, 3, 4, 5, 6)
#: Most knots a WCS-WAVE axis may have (the real tables have 9 to 20; the grid costs
#: pixels x knots per axis).
MAX_KNOTS = 1024


@dataclass(frozen=True)
class WaveTable:
    """The ``WCS-WAVE`` lookup table of one detector.

    Attributes
    ----------
    x, y : ndarray
        1-based parent-frame pixel positions of the table knots along NAXIS1 and NAXIS2.
    values : ndarray
        ``(ny, nx, 2)`` float array: ``[..., 0]`` wavelength, ``[..., 1]`` bandwidth (µm).
    """

    x: np.ndarray
    y: np.ndarray
    values: np.ndarray

    def __post_init__(self):
        nx, ny = len(self.x), len(self.y)
        if self.values.shape != (ny, nx, 2):
            raise SpherexFormatError(
                f"WCS-WAVE VALUES has shape {self.values.shape}, expected (ny, nx, 2) = ({ny}, {nx}, 2)"
            )
        if not (2 <= nx <= MAX_KNOTS and 2 <= ny <= MAX_KNOTS):
            raise SpherexFormatError(f"WCS-WAVE index vectors X and Y have {nx} and {ny} "
                                     f"knots; 2 to {MAX_KNOTS} are accepted")
        if not (np.all(np.diff(self.x) > 0) and np.all(np.diff(self.y) > 0)
                and np.isfinite(self.x).all() and np.isfinite(self.y).all()):
            raise SpherexFormatError("WCS-WAVE index vectors X and Y must increase strictly")

    @classmethod
    def from_hdu(cls, hdu, x_col="X", y_col="Y", values_col="VALUES"):
        """Read the table from a ``WCS-WAVE`` BinTableHDU (one row)."""
        try:
            row = hdu.data[0]
        except (IndexError, TypeError, ValueError) as exc:
            raise SpherexFormatError(f"cannot read the WCS-WAVE table {hdu.name!r}: {exc}") from exc
        return cls.from_row(row, x_col, y_col, values_col, label=hdu.name)

    @classmethod
    def from_row(cls, row, x_col="X", y_col="Y", values_col="VALUES", label="WCS-WAVE"):
        """Read the table from its one row: any ``{column name: array}`` (a FITS record too)."""
        try:
            x = np.asarray(row[x_col], dtype=float).ravel()
            y = np.asarray(row[y_col], dtype=float).ravel()
            # TDIM '(2,nx,ny)' gives numpy (ny, nx, 2); tolerate a flat column too.
            values = np.asarray(row[values_col], dtype=float).reshape(len(y), len(x), 2)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise SpherexFormatError(f"cannot read the WCS-WAVE table {label!r}: {exc}") from exc
        return cls(x, y, values)

    def to_hdu(self, name="WCS-WAVE"):
        """A BinTableHDU laid out like IRSA's (18 header cards, no TUNIT, no EXTVER)."""
        nx, ny = len(self.x), len(self.y)
        cols = [
            fits.Column(name="X", format=f"{nx}J", dim=f"({nx})",
                        array=np.asarray(self.x, dtype=">i4").reshape(1, nx)),
            fits.Column(name="Y", format=f"{ny}J", dim=f"({ny})",
                        array=np.asarray(self.y, dtype=">i4").reshape(1, ny)),
            fits.Column(name="VALUES", format=f"{2 * nx * ny}E", dim=f"(2,{nx},{ny})",
                        array=np.asarray(self.values, dtype=">f4").reshape(1, ny, nx, 2)),
        ]
        return fits.BinTableHDU.from_columns(cols, name=name)

    def lookup(self, psi_x, psi_y):
        """Wavelength and bandwidth (µm) at table coordinates ``psi`` (1-based parent pixels).

        Points beyond half a cell outside the table are NaN, as in wcslib.
        """
        psi_x, psi_y = np.broadcast_arrays(np.asarray(psi_x, float), np.asarray(psi_y, float))
        kx, tx, okx = _cell(self.x, psi_x)
        ky, ty, oky = _cell(self.y, psi_y)
        v = self.values
        out = []
        for k in (0, 1):
            val = ((1 - ty) * ((1 - tx) * v[ky, kx, k] + tx * v[ky, kx + 1, k])
                   + ty * ((1 - tx) * v[ky + 1, kx, k] + tx * v[ky + 1, kx + 1, k]))
            out.append(np.where(okx & oky, val, np.nan))
        return out[0], out[1]

    def grid(self, psi_x, psi_y):
        """Wavelength and bandwidth on the outer product of 1-D ``psi_y`` (rows) and ``psi_x``.

        Returns two ``(len(psi_y), len(psi_x))`` arrays. Bilinear interpolation is separable:
        with one weight matrix per axis (two non-zeros per pixel) the grid is
        ``Wy @ VALUES @ Wx.T``, two small matrix products instead of a lookup per pixel.
        """
        wx = _weights(self.x, np.asarray(psi_x, float))
        wy = _weights(self.y, np.asarray(psi_y, float))
        return tuple(wy @ self.values[..., k] @ wx.T for k in (0, 1))


def _weights(knots, psi):
    """``(len(psi), len(knots))`` interpolation weights; rows of invalid points are NaN."""
    k, t, valid = _cell(knots, psi)
    w = np.zeros((len(psi), len(knots)))
    rows = np.arange(len(psi))
    w[rows, k] = 1 - t
    w[rows, k + 1] = t
    w[~valid] = np.nan
    return w


def _cell(knots, psi):
    """Lower knot index (0-based), fraction within the cell, and validity for each ``psi``.

    Mirrors wcslib's ``tabx2s``: linear within the knots, linear extrapolation of the edge
    cell up to half a cell (table index 0.5 .. K+0.5), invalid beyond.
    """
    k = np.clip(np.searchsorted(knots, psi, side="right") - 1, 0, len(knots) - 2)
    t = (psi - knots[k]) / (knots[k + 1] - knots[k])
    upsilon = k + 1 + t
    valid = (upsilon >= 0.5) & (upsilon <= len(knots) + 0.5)
    return k, t, valid


@cache
def _reference_tables():
    with resources.files("glue_spherex.data").joinpath("wave_tables.json").open() as f:
        return json.load(f)["tables"]


def reference_table(detector, release="qr2"):
    """The real WCS-WAVE table of a detector (1-6), as shipped with the package."""
    try:
        t = _reference_tables()[f"{release}:D{int(detector)}"]
    except (KeyError, ValueError):
        raise SpherexFormatError(
            f"no reference wavelength table for detector {detector!r} of release {release!r}; "
            "detectors 1-6 of qr2 and qr3 are available"
        ) from None
    values = np.stack([np.array(t["wavelength"], float), np.array(t["bandwidth"], float)], axis=-1)
    # float32, as stored in the real files
    return WaveTable(np.array(t["x"], float), np.array(t["y"], float),
                     values.astype(np.float32).astype(float))


class SpectralWCS:
    """The ``W`` WCS of one SPHEREx image: pixel -> (wavelength, bandwidth) in µm.

    Build it with :meth:`from_header`; pixel coordinates are 0-based like astropy's
    ``pixel_to_world``.
    """

    def __init__(self, table, crpix=(1.0, 1.0), crval=(1.0, 1.0), cdelt=(1.0, 1.0)):
        self.table = table
        self.crpix = tuple(float(v) for v in crpix)
        self.crval = tuple(float(v) for v in crval)
        self.cdelt = tuple(float(v) for v in cdelt)

    @classmethod
    def from_header(cls, header, hdulist, key="W"):
        """Read the ``W`` keywords of ``header`` and the table they point to in ``hdulist``."""
        extname, columns = cls.table_reference(header, key)
        try:
            hdu = hdulist[extname]
        except KeyError:
            raise SpherexFormatError(
                f"the wavelength table {extname!r} named by PS1_0{key} is not in the file"
            ) from None
        return cls.from_table(header, WaveTable.from_hdu(hdu, *columns), key)

    @staticmethod
    def table_reference(header, key="W"):
        """``(EXTNAME, (x, y, values column names))`` of the table the ``key`` WCS of
        ``header`` (anything with ``get`` and ``in``) looks up, after checking that it is
        a -TAB WCS this class evaluates."""
        k = key
        if str(header.get(f"CTYPE1{k}", "")).strip() != "WAVE-TAB":
            raise SpherexFormatError(
                f"header has no spectral WCS {k!r} (CTYPE1{k} = 'WAVE-TAB' is missing)"
            )
        for name in (f"PC1_2{k}", f"PC2_1{k}", f"CD1_1{k}"):
            if name in header:
                raise SpherexFormatError(f"unsupported {name} in the -TAB wavelength WCS")
        columns = tuple(str(header.get(name, default)).strip() for name, default in
                        ((f"PS1_2{k}", "X"), (f"PS2_2{k}", "Y"), (f"PS1_1{k}", "VALUES")))
        return str(header.get(f"PS1_0{k}", "WCS-WAVE")).strip(), columns

    @classmethod
    def from_table(cls, header, table, key="W"):
        """The ``key`` WCS of ``header`` with its lookup table already read."""
        def number(name):
            value = header.get(f"{name}{key}", 1.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise SpherexFormatError(
                    f"{name}{key} = {str(value)[:20]!r} is not a finite number")
            return value

        return cls(table, *((number(f"{name}1"), number(f"{name}2"))
                            for name in ("CRPIX", "CRVAL", "CDELT")))

    def _psi(self, axis, pix0):
        # Paper III: psi = CRVAL + CDELT * (p - CRPIX), with p the 1-based pixel.
        return self.crval[axis] + self.cdelt[axis] * (np.asarray(pix0, float) + 1.0 - self.crpix[axis])

    def pixel_to_wave(self, x, y):
        """(wavelength, bandwidth) in µm at 0-based pixel positions ``x``, ``y``."""
        return self.table.lookup(self._psi(0, x), self._psi(1, y))

    def grid(self, shape):
        """(wavelength, bandwidth) arrays of ``shape = (ny, nx)`` for every pixel."""
        ny, nx = shape
        return self.table.grid(self._psi(0, np.arange(nx)), self._psi(1, np.arange(ny)))

    @property
    def parent_origin(self):
        """0-based parent-frame pixel of this image's pixel (0, 0)."""
        return (self._psi(0, 0.0) - 1.0, self._psi(1, 0.0) - 1.0)
