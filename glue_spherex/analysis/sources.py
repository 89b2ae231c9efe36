"""The source list of a catalog-scale run: a table file or Table in, checked sources out.

:func:`read_sources` accepts an astropy :class:`~astropy.table.Table` or a file astropy reads
(ECSV, CSV, FITS, VOTable, by extension or content) with an identifier, RA and Dec columns
(found by their usual names or given) and optionally a per-source aperture radius. Every row
ends up in exactly one of two tables: ``sources`` (a QTable: ``id``, ``ra``, ``dec`` in degrees,
``radius`` in arcsec) or ``rejected`` (``row``, ``id``, ``reason``) — a NaN or missing
coordinate, a position off the sphere, a repeated id or a bad radius is reported, never
dropped silently.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import Angle
from astropy.table import MaskedColumn, QTable, Table

from ..errors import SpherexInputError

__all__ = ["SourceList", "read_sources", "MAX_RADIUS_ARCSEC"]

#: Largest aperture radius accepted (a 0.1 deg cutout is 360 arcsec across).
MAX_RADIUS_ARCSEC = 180.0

_NAMES = {
    "id": ("id", "source_id", "name", "objid", "obj_id", "designation", "source"),
    "ra": ("ra", "ra_deg", "raj2000", "ra_icrs", "radeg", "_raj2000", "alpha"),
    "dec": ("dec", "dec_deg", "dej2000", "decj2000", "dec_icrs", "dedeg", "_dej2000", "delta"),
    "radius": ("radius", "aperture", "aperture_radius", "r_ap", "radius_arcsec"),
}
_FORMATS = {".ecsv": "ascii.ecsv", ".csv": "ascii.csv", ".fits": "fits", ".fit": "fits",
            ".fits.gz": "fits", ".vot": "votable", ".xml": "votable", ".votable": "votable"}


@dataclass(frozen=True)
class SourceList:
    """Checked sources and the rows that were refused, with the reason for each."""

    sources: Table
    rejected: Table

    def __len__(self):
        return len(self.sources)


def read_sources(catalog, *, id_column=None, ra_column=None, dec_column=None,
                 radius_column=None, radius=None):
    """The :class:`SourceList` of ``catalog`` (a Table, or a path to a table file).

    Columns are found by their usual names (``id``/``source_id``/``name``, ``ra``/``raj2000``,
    ``dec``/``dej2000``, ``radius``/``aperture``; any case) unless named. Coordinates are
    degrees unless the column carries an angle unit, or sexagesimal strings (RA in hours).
    ``radius`` (a Quantity) is the aperture of sources without a radius column; with neither,
    ``sources['radius']`` is NaN (the measurement's default applies).
    """
    table = _as_table(catalog)
    if len(table) == 0:
        raise SpherexInputError("the source catalog has no rows")
    ra_name = _column(table, "ra", ra_column)
    dec_name = _column(table, "dec", dec_column)
    id_name = _column(table, "id", id_column, required=False)
    radius_name = _column(table, "radius", radius_column, required=False)

    n = len(table)
    ids = ([str(v).strip() for v in _filled(table[id_name], "")] if id_name
           else [str(i) for i in range(n)])
    ra = _degrees(table[ra_name], hours=True)
    dec = _degrees(table[dec_name], hours=False)
    if radius_name:
        col = table[radius_name]
        unit = col.unit or u.arcsec
        rad = _floats(col) * u.Unit(unit).to(u.arcsec)
    else:
        default = math.nan if radius is None else u.Quantity(radius, u.arcsec).value
        rad = np.full(n, default)

    keep, rows, rejected_ids, reasons = [], [], [], []
    first = {}
    for i in range(n):
        # an id seen before is ambiguous even where its first row was refused
        reason = (f"duplicate id {ids[i]!r} (first at row {first[ids[i]]})"
                  if ids[i] and ids[i] in first
                  else _problem(ids[i], ra[i], dec[i], rad[i], radius_name is not None))
        first.setdefault(ids[i], i)
        if reason is None:
            keep.append(i)
        else:
            rows.append(i)
            rejected_ids.append(ids[i])
            reasons.append(reason)
    keep = np.asarray(keep, dtype=int)
    sources = QTable({"id": np.asarray([ids[i] for i in keep], dtype=str),
                     "ra": np.asarray(ra)[keep] * u.deg, "dec": np.asarray(dec)[keep] * u.deg,
                     "radius": np.asarray(rad)[keep] * u.arcsec})
    rejected = Table({"row": np.asarray(rows, dtype=int),
                      "id": np.asarray(rejected_ids, dtype=str),
                      "reason": np.asarray(reasons, dtype=str)})
    return SourceList(sources, rejected)


def _as_table(catalog):
    if isinstance(catalog, Table):
        return catalog
    path = Path(catalog)
    if not path.is_file():
        raise SpherexInputError(f"source catalog {str(path)!r} does not exist or is not a file")
    name = path.name.lower()
    fmt = next((f for ext, f in _FORMATS.items() if name.endswith(ext)), None)
    try:
        return Table.read(path, format=fmt) if fmt else Table.read(path)
    except Exception as e:   # astropy raises many types for unreadable tables
        raise SpherexInputError(
            f"cannot read the source catalog {str(path)!r} ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else 'unreadable'}); give an ECSV, CSV, "
            "FITS or VOTable file") from None


def _column(table, kind, given, required=True):
    by_lower = {c.lower(): c for c in table.colnames}
    if given is not None:
        if given not in table.colnames:
            raise SpherexInputError(f"the source catalog has no column {given!r}; it has "
                                    f"{', '.join(table.colnames)}")
        return given
    for name in _NAMES[kind]:
        if name in by_lower:
            return by_lower[name]
    if required:
        raise SpherexInputError(
            f"no {kind.upper() if kind != 'id' else 'id'} column in the source catalog (looked "
            f"for {', '.join(_NAMES[kind][:4])}); it has {', '.join(table.colnames)} — name it "
            f"with {kind}_column=")
    return None


def _filled(col, fill):
    if isinstance(col, MaskedColumn) or hasattr(col, "mask"):
        return [fill if m else v for v, m in zip(col, np.ma.getmaskarray(col))]
    return list(col)


def _floats(col):
    values = np.full(len(col), np.nan)
    mask = np.ma.getmaskarray(col)
    for i, (v, m) in enumerate(zip(np.asarray(col.value if hasattr(col, "value") else col,
                                              dtype=object), mask)):
        if m:
            continue
        with contextlib.suppress(TypeError, ValueError):
            values[i] = float(v)
    return values


def _degrees(col, *, hours):
    """Degrees of an RA/Dec column: numbers (deg or the column's unit) or sexagesimal text."""
    if col.dtype.kind in "US":
        out = np.full(len(col), np.nan)
        for i, (v, m) in enumerate(zip(col, np.ma.getmaskarray(col))):
            text = str(v).strip()
            if m or not text:
                continue
            try:
                sexagesimal = any(c in text for c in ": hdms")
                unit = (u.hourangle if hours else u.deg) if sexagesimal else u.deg
                out[i] = Angle(text, unit=unit).deg
            except (ValueError, TypeError, u.UnitsError):
                pass
        return out
    values = _floats(col)
    if col.unit is not None and col.unit != u.deg:
        try:
            values = (values * col.unit).to_value(u.deg)
        except u.UnitsError:
            raise SpherexInputError(
                f"column {col.name!r} has unit {col.unit}, not an angle") from None
    return values


def _problem(source_id, ra, dec, radius, has_radius_column):
    if not source_id:
        return "empty id"
    if not math.isfinite(ra) or not math.isfinite(dec):
        return "RA or Dec missing or not a number"
    if not 0.0 <= ra < 360.0:
        return f"RA {ra:g} deg outside [0, 360)"
    if not -90.0 <= dec <= 90.0:
        return f"Dec {dec:g} deg outside [-90, 90]"
    if has_radius_column and not (math.isfinite(radius) and 0 < radius <= MAX_RADIUS_ARCSEC):
        return f"radius {radius:g} arcsec not in (0, {MAX_RADIUS_ARCSEC:g}]"
    return None
