"""``/SIA``: IVOA SIA2 queries, answered by running ADQL on ``spherex.obscore``.

Parameters (names case-insensitive; a repeated parameter ORs its values, different
parameters AND): ``POS`` (``CIRCLE ra dec r``, ``RANGE ra1 ra2 dec1 dec2``, ``POLYGON ra1 dec1
...``; degrees), ``BAND`` (metres), ``TIME`` (MJD), ``FOV``, ``SPATRES``, ``EXPTIME``,
``TIMERES``, ``SPECRP`` (intervals ``lo hi`` or one value; ``-Inf``/``+Inf`` allowed), ``ID``,
``FACILITY``, ``INSTRUMENT``, ``DPTYPE``, ``TARGET``, ``FORMAT`` (the file's MIME type),
``CALIB``, ``POL``, the required ``COLLECTION``, ``MAXREC`` and ``RESPONSEFORMAT`` (``votable``
or ``csv``).  An unknown collection gives an empty table; bad parameters give IRSA's error
document (``UsageFault: BAD_REQUEST: ...``) with HTTP 400.
"""

from __future__ import annotations

import math

from .adql import AdqlError
from .response import Response
from .schema import SIA_COLUMNS
from .tap import VOTABLE_TYPE, first, output_format
from .vosi import DEFAULT_MAXREC, HARD_MAXREC
from .votable import SIA_DESCRIPTION, csv_bytes, error_votable, votable_bytes

__all__ = ["query", "build_adql", "SiaUsageError"]

_INTERVALS = {"BAND": ("em_min", "em_max"), "TIME": ("t_min", "t_max")}
_RANGES = {"FOV": "s_fov", "SPATRES": "s_resolution", "EXPTIME": "t_exptime",
           "TIMERES": "t_resolution", "SPECRP": "em_res_power"}
_STRINGS = {"ID": "obs_publisher_did", "FACILITY": "facility_name",
            "INSTRUMENT": "instrument_name", "DPTYPE": "dataproduct_type",
            "TARGET": "target_name", "FORMAT": "access_format", "COLLECTION": "obs_collection"}


class SiaUsageError(AdqlError):
    """A bad SIA2 parameter; the message follows IRSA's ``UsageFault: BAD_REQUEST:`` form."""


def _usage(msg):
    return SiaUsageError(f"UsageFault: BAD_REQUEST: {msg}")


def _number(token, what):
    try:
        x = float(token)
    except ValueError:
        raise _usage(f"{what} value {token} is not a number") from None
    if math.isnan(x):
        raise _usage(f"{what} value {token} is not a number")
    return x


def _checked(token, what, lo, hi, *, open_lo=False, infinite=False):
    x = _number(token, what)
    if infinite and math.isinf(x):
        return x
    if not (lo < x if open_lo else lo <= x) or not x <= hi:
        bracket = "(" if open_lo else "["
        raise _usage(f"{what} value {token} lies outside valid interval {bracket}{lo:g}, {hi:g}]")
    return x


def _lit(x):
    return repr(float(x))


def _str(s):
    return "'" + s.replace("'", "''") + "'"


def _pos(value):
    tokens = value.split()
    if not tokens:
        raise _usage("empty POS value")
    shape, args = tokens[0].upper(), tokens[1:]
    if shape == "CIRCLE":
        if len(args) != 3:
            raise _usage(f"POS CIRCLE needs ra dec radius, got {value!r}")
        ra = _checked(args[0], "ra", 0, 360)
        dec = _checked(args[1], "dec", -90, 90)
        r = _checked(args[2], "radius", 0, 180, open_lo=True)
        return f"1 = INTERSECTS(CIRCLE('ICRS', {_lit(ra)}, {_lit(dec)}, {_lit(r)}), s_region)"
    if shape == "POLYGON":
        if len(args) < 6 or len(args) % 2:
            raise _usage(f"POS POLYGON needs at least 3 ra dec pairs, got {value!r}")
        coords = []
        for i in range(0, len(args), 2):
            coords.append(_lit(_checked(args[i], "ra", 0, 360)))
            coords.append(_lit(_checked(args[i + 1], "dec", -90, 90)))
        return f"1 = INTERSECTS(POLYGON('ICRS', {', '.join(coords)}), s_region)"
    if shape == "RANGE":
        if len(args) != 4:
            raise _usage(f"POS RANGE needs ra1 ra2 dec1 dec2, got {value!r}")
        ra1, ra2 = (_checked(a, "ra", 0, 360, infinite=True) for a in args[:2])
        dec1, dec2 = (_checked(a, "dec", -90, 90, infinite=True) for a in args[2:])
        if dec1 > dec2:
            raise _usage(f"POS RANGE dec1 {args[2]} is larger than dec2 {args[3]}")
        if math.isinf(ra1) or math.isinf(ra2):
            ra1, ra2 = 0.0, 360.0
        dec1, dec2 = max(dec1, -90.0), min(dec2, 90.0)
        return (f"1 = INTERSECTS(COORDRANGE('ICRS', {_lit(ra1)}, {_lit(ra2)}, {_lit(dec1)}, "
                f"{_lit(dec2)}), s_region)")
    raise _usage(f"POS shape {tokens[0]!r} is not supported; use CIRCLE, RANGE or POLYGON")


def _interval(value, name):
    tokens = value.split()
    if len(tokens) not in (1, 2):
        raise _usage(f"{name} needs one value or an interval 'low high', got {value!r}")
    lo = _number(tokens[0], name)
    hi = _number(tokens[-1], name)
    if lo > hi:
        raise _usage(f"{name} interval {value!r} has low > high")
    return lo, hi


def _overlap(lo, hi, col_min, col_max):
    conds = []
    if not math.isinf(hi):
        conds.append(f"{col_min} <= {_lit(hi)}")
    if not math.isinf(lo):
        conds.append(f"{col_max} >= {_lit(lo)}")
    return " AND ".join(conds) or "1 = 1"


def build_adql(params):
    """The ADQL that answers an SIA2 query (``params``: upper-case name -> list of values)."""
    if not params.get("COLLECTION"):
        raise _usage("COLLECTION parameter is required (e.g. COLLECTION=spherex_qr2)")
    where = []

    def any_of(conds):
        where.append("(" + " OR ".join(f"({c})" for c in conds) + ")")

    if params.get("POS"):
        any_of([_pos(v) for v in params["POS"]])
    for name, (cmin, cmax) in _INTERVALS.items():
        if params.get(name):
            any_of([_overlap(*_interval(v, name), cmin, cmax) for v in params[name]])
    for name, col in _RANGES.items():
        if params.get(name):
            any_of([_overlap(*_interval(v, name), col, col) for v in params[name]])
    for name, col in _STRINGS.items():
        if params.get(name):
            any_of([f"{col} = {_str(v)}" for v in params[name]])
    if params.get("CALIB"):
        levels = [int(_checked(v, "CALIB", 0, 4)) for v in params["CALIB"]]
        any_of([f"calib_level = {n}" for n in levels])
    if params.get("POL"):
        any_of([f"pol_states LIKE {_str('%' + v + '%')}" for v in params["POL"]])
    cols = ", ".join(c.name for c in SIA_COLUMNS)
    return f"SELECT {cols} FROM spherex.obscore WHERE " + " AND ".join(where)


def query(params, engine):
    """Answer one SIA2 request; ``engine`` is an :class:`~.adql.AdqlEngine`."""
    try:
        adql = build_adql(params)
        maxrec = first(params, "MAXREC")
        if maxrec is None:
            maxrec = DEFAULT_MAXREC
        else:
            try:
                maxrec = min(int(maxrec), HARD_MAXREC)
            except ValueError:
                raise _usage(f"MAXREC value {maxrec} is not an integer") from None
            if maxrec < 0:
                raise _usage(f"MAXREC value {maxrec} is negative")
        try:
            fmt = output_format(params, ("RESPONSEFORMAT",))   # SIA2 FORMAT is the file type
        except AdqlError as e:
            raise _usage(str(e)) from None
        result = engine.query(adql, maxrec=maxrec)
    except SiaUsageError as e:
        return Response(400, VOTABLE_TYPE, error_votable(str(e), SIA_DESCRIPTION))
    except AdqlError as e:
        return Response(400, VOTABLE_TYPE,
                        error_votable(f"UsageFault: BAD_REQUEST: {e}", SIA_DESCRIPTION))
    if fmt == "csv":
        return Response(200, "text/csv; charset=utf-8", csv_bytes(result.columns, result.rows))
    return Response(200, VOTABLE_TYPE, votable_bytes(result.columns, result.rows,
                                                     overflow=result.overflow,
                                                     description=SIA_DESCRIPTION))
