"""``/TAP/sync``: run an ADQL query and answer with a VOTable (or CSV), as IRSA's TAP does.

Parameters (GET query or POSTed form; names case-insensitive): ``REQUEST=doQuery``,
``LANG=ADQL``, ``QUERY``, optional ``MAXREC`` and ``FORMAT``/``RESPONSEFORMAT``
(``votable`` by default, or ``csv``).  A query error is HTTP 400 with an error VOTable whose
``QUERY_STATUS`` INFO carries the message (pyvo raises it as ``DALQueryError``).
"""

from __future__ import annotations

from .adql import AdqlError
from .response import Response
from .vosi import DEFAULT_MAXREC, HARD_MAXREC
from .votable import csv_bytes, error_votable, votable_bytes

__all__ = ["sync", "VOTABLE_TYPE", "output_format", "first"]

VOTABLE_TYPE = "application/x-votable+xml"
_FORMATS = {"votable": "votable", "application/x-votable+xml": "votable", "text/xml": "votable",
            "votable/td": "votable", "application/x-votable+xml;serialization=tabledata":
            "votable", "csv": "csv", "text/csv": "csv"}


def first(params, name, default=None):
    values = params.get(name)
    return values[0] if values else default


def output_format(params, names=("RESPONSEFORMAT", "FORMAT")):
    """``'votable'`` or ``'csv'`` from the first of ``names`` given; AdqlError otherwise."""
    value = next((first(params, n) for n in names if first(params, n)), "votable")
    fmt = _FORMATS.get(value.strip().lower().replace(" ", ""))
    if fmt is None:
        raise AdqlError(f"Output format {value!r} is not supported; use votable or csv")
    return fmt


def error(message, status=400):
    return Response(status, VOTABLE_TYPE, error_votable(message))


def sync(params, engine):
    """Answer one synchronous TAP request; ``engine`` is an :class:`~.adql.AdqlEngine`."""
    request = first(params, "REQUEST", "doQuery")
    if request.lower() != "doquery":
        return error(f"REQUEST={request!r} is not supported; use REQUEST=doQuery")
    lang = first(params, "LANG", "ADQL")
    if lang.upper() not in ("ADQL", "ADQL-2.0", "ADQL-2.1"):
        return error(f"LANG={lang!r} is not supported; use LANG=ADQL")
    query = first(params, "QUERY")
    if not query or not query.strip():
        return error("Missing QUERY parameter")
    try:
        fmt = output_format(params)
        maxrec = _maxrec(first(params, "MAXREC"))
        result = engine.query(query, maxrec=maxrec)
    except AdqlError as e:
        return error(str(e))
    if fmt == "csv":
        return Response(200, "text/csv; charset=utf-8", csv_bytes(result.columns, result.rows))
    return Response(200, VOTABLE_TYPE,
                    votable_bytes(result.columns, result.rows, overflow=result.overflow))


def _maxrec(value):
    if value is None or value == "":
        return DEFAULT_MAXREC
    try:
        n = int(value)
    except ValueError:
        raise AdqlError(f"MAXREC={value!r} is not an integer") from None
    if n < 0:
        raise AdqlError(f"MAXREC={n} is negative")
    return min(n, HARD_MAXREC)
