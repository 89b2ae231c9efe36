"""The ``EPSF`` table of pipeline-7 files: one effective PSF per detector zone.

Pipeline 7 (QR3, and QR2 reprocessed) replaced the ``PSF`` cube by a binary table with one
row per zone (21 x 21 on most detectors, 11 x 41 on D3): the zone indices ``BINX``/``BINY``,
the zone centre ``XCENTER``/``YCENTER`` (0-based parent-frame pixels) and an ``EPSF`` array
oversampled ``OVSMPX``/``OVSMPY`` times (33 x 33 at 5x). The arrays are *effective* PSFs --
the pixel response is already in them -- so the light a pixel gets is the array's value at
the pixel centre (point sampling, as photutils' :class:`~photutils.psf.ImagePSF` evaluates
it in IRSA's PSF tutorial), not an integral over the pixel.

:class:`EffectivePSF` picks a zone (nearest centre, the tutorial's rule) and gives the
fraction of a point source's light in each pixel of a grid.
"""

from __future__ import annotations

import numpy as np

from ..errors import SpherexFormatError

__all__ = ["EffectivePSF", "point_fractions"]

_COLUMNS = ("XCENTER", "YCENTER", "EPSF")


class EffectivePSF:
    """The zones of one EPSF table.

    Parameters
    ----------
    rows : numpy structured array
        The table's rows (at least ``XCENTER``, ``YCENTER`` and a 2-D ``EPSF`` column;
        ``BINX``/``BINY`` if present).
    oversampling : (int, int)
        ``(OVSMPY, OVSMPX)``: array samples per detector pixel along y and x.
    label : str
        Names the table in error messages.
    """

    def __init__(self, rows, oversampling, label="EPSF"):
        names = rows.dtype.names or ()
        missing = [c for c in _COLUMNS if c not in names]
        if missing:
            raise SpherexFormatError(f"{label}: EPSF table has no {', '.join(missing)} column")
        if len(rows) == 0 or rows.dtype["EPSF"].ndim != 2:
            raise SpherexFormatError(f"{label}: EPSF table has no rows of 2-D arrays (TDIM)")
        oy, ox = oversampling
        if not all(isinstance(v, (int, np.integer)) and 0 < v <= 100 for v in (oy, ox)):
            raise SpherexFormatError(f"{label}: invalid oversampling OVSMPY/OVSMPX {oversampling}")
        self._rows = rows
        self.label = label
        #: ``(OVSMPY, OVSMPX)``
        self.oversampling = (int(oy), int(ox))
        #: 0-based parent-frame pixel of each zone centre, ``(n_zones, 2)`` as (x, y)
        try:
            self.centres = np.column_stack([np.asarray(rows["XCENTER"], float),
                                            np.asarray(rows["YCENTER"], float)])
        except (TypeError, ValueError):
            raise SpherexFormatError(f"{label}: XCENTER/YCENTER are not numbers") from None
        if self.centres.shape != (len(rows), 2) or not np.isfinite(self.centres).all():
            raise SpherexFormatError(f"{label}: EPSF zone centres are not all finite")

    def __len__(self):
        return len(self._rows)

    def zone(self, x_parent, y_parent):
        """Row index of the zone whose centre is nearest to a 0-based parent pixel."""
        d2 = (self.centres[:, 0] - float(x_parent)) ** 2 + (self.centres[:, 1] - float(y_parent)) ** 2
        return int(np.argmin(d2))

    def bin_of(self, row):
        """``(BINX, BINY)`` of a row (from the table, else the row's position x-fast)."""
        names = self._rows.dtype.names
        if "BINX" in names and "BINY" in names:
            return int(self._rows["BINX"][row]), int(self._rows["BINY"][row])
        return row, 0

    def array(self, row):
        """The oversampled EPSF array of one row, float64 (a copy)."""
        return np.array(self._rows["EPSF"][row], dtype=float)

    def arrays(self):
        """Every zone's array, ``(n_zones, ny, nx)`` float64."""
        return np.array(self._rows["EPSF"], dtype=float)

    def model(self, row, x=0.0, y=0.0, flux=1.0):
        """photutils :class:`~photutils.psf.ImagePSF` of one zone centred at (x, y)."""
        from photutils.psf import ImagePSF

        array = self.array(row)
        return ImagePSF(np.where(np.isfinite(array), array, 0.0), flux=flux, x_0=x, y_0=y,
                        oversampling=self.oversampling)

    def fractions(self, row, x0, y0, xs, ys):
        """Fraction of a point source's light at (x0, y0) in each pixel of the grid ys x xs.

        The array is point-sampled at the pixel centres (``ImagePSF``'s interpolation) and
        normalised by the sum of those samples over every pixel the array reaches at the
        same sub-pixel phase -- the total a source there puts on the detector, whatever
        the array's own normalisation (each is meant to sum to 1 on its oversampled grid).
        """
        try:
            return point_fractions(self.array(row), self.oversampling, x0, y0, xs, ys)
        except SpherexFormatError as exc:
            raise SpherexFormatError(f"{self.label}: zone {self.bin_of(row)}: {exc}") from None


def point_fractions(array, oversampling, x0, y0, xs, ys):
    """Fraction of a point source's light at (x0, y0) in each pixel of the grid ys x xs.

    ``array`` is an effective PSF sampled ``oversampling`` = (oy, ox) times per pixel with
    its centre in the middle; see :meth:`EffectivePSF.fractions`.
    """
    from photutils.psf import ImagePSF

    data = np.where(np.isfinite(array), array, 0.0)
    model = ImagePSF(data, flux=1.0, x_0=x0, y_0=y0, oversampling=tuple(oversampling))
    oy, ox = oversampling
    ny, nx = data.shape
    hx, hy = nx / (2.0 * ox) + 1, ny / (2.0 * oy) + 1  # half support, pixels
    gx = np.arange(np.floor(x0 - hx), np.ceil(x0 + hx) + 1)
    gy = np.arange(np.floor(y0 - hy), np.ceil(y0 + hy) + 1)
    total = float(np.sum(model(*np.meshgrid(gx, gy))))
    if not total > 0:
        raise SpherexFormatError("the effective PSF is zero everywhere")
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    return model(*np.meshgrid(xs, ys)) / total
