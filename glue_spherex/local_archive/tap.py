"""``/TAP/sync``: run an ADQL query and answer with a VOTable (or CSV), as IRSA's TAP does.

Parameters (GET query or POSTed form; names case-insensitive): ``REQUEST=doQuery``,
``LANG=ADQL``, ``QUERY``, optional ``MAXREC`` and ``FORMAT``/``RESPONSEFORMAT``
(``votable`` by default, or ``csv``).  A query error is HTTP 400 with an error VOTable whose
``QUERY_STATUS`` INFO carries the message (pyvo raises it as ``DALQueryError``).

Table uploads (TAP 1.1 / DALI): ``UPLOAD=name,param:part`` with the VOTable in the
multipart/form-data part ``part`` -- what pyvo's ``run_sync(q, uploads={"name": table})``
sends -- makes ``TAP_UPLOAD.name`` a table of that query only, at most :data:`MAX_UPLOAD_ROWS`
rows (the HTTP layer bounds the body to 50 MB).
"""

from __future__ import annotations

import io
import re
import warnings

import numpy as np

from .adql import AdqlError
from .response import Response
from .vosi import DEFAULT_MAXREC, HARD_MAXREC
from .votable import csv_bytes, error_votable, votable_bytes

__all__ = ["sync", "VOTABLE_TYPE", "output_format", "first", "parse_uploads", "MAX_UPLOAD_ROWS",
           "MAX_UPLOAD_TABLES"]

#: Rows of one uploaded table, and tables in one request.
MAX_UPLOAD_ROWS = 200_000
MAX_UPLOAD_TABLES = 8
_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")

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


def sync(params, engine, parts=None):
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
        uploads = parse_uploads(params.get("UPLOAD", []), parts or {})
        result = engine.query(query, maxrec=maxrec, uploads=uploads)
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


def parse_uploads(values, parts):
    """``{name: (columns, rows)}`` of the ``UPLOAD`` parameter values (``name,param:part``
    pairs separated by ``;``); AdqlError with the reason when one cannot be used."""
    from .schema import Column

    uploads = {}
    for value in values:
        for item in filter(None, (v.strip() for v in value.split(";"))):
            name, _, uri = (s.strip() for s in item.partition(","))
            if not _IDENT.match(name):
                raise AdqlError(f"UPLOAD table name {name[:40]!r} is not an ADQL identifier")
            if not uri.startswith("param:"):
                raise AdqlError(f"UPLOAD {name}: only inline uploads (param:NAME, multipart) "
                                f"are supported, not {uri[:60]!r}")
            part = uri[len("param:"):]
            if part not in parts:
                raise AdqlError(f"UPLOAD {name}: the request has no part {part[:40]!r} "
                                "(send the VOTable as multipart/form-data)")
            if name.lower() in uploads:
                raise AdqlError(f"UPLOAD table {name!r} is given twice")
            if len(uploads) >= MAX_UPLOAD_TABLES:
                raise AdqlError(f"at most {MAX_UPLOAD_TABLES} tables may be uploaded at once")
            uploads[name.lower()] = _upload_table(name, parts[part], Column)
    return uploads


def _upload_table(name, data, Column):
    from astropy.io.votable import parse_single_table

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = parse_single_table(io.BytesIO(data)).to_table()
    except Exception as e:     # astropy raises many types for a bad VOTable
        text = " ".join(str(e).split())[:200] or type(e).__name__
        raise AdqlError(f"UPLOAD {name}: not a readable VOTable ({text})") from None
    if len(table) > MAX_UPLOAD_ROWS:
        raise AdqlError(f"UPLOAD {name}: {len(table):,} rows; this service accepts at most "
                        f"{MAX_UPLOAD_ROWS:,} rows per uploaded table (split it)")
    columns, values, seen = [], [], set()
    for col in table.itercols():
        cname = col.name.lower()
        if not _IDENT.match(cname) or cname in seen:
            raise AdqlError(f"UPLOAD {name}: column name {col.name[:40]!r} is not a distinct "
                            "ADQL identifier")
        seen.add(cname)
        kind = col.dtype.kind
        if col.ndim > 1 or kind not in "biufUS":
            raise AdqlError(f"UPLOAD {name}: column {col.name!r} is not a scalar number or "
                            "string")
        datatype = {"b": "boolean", "i": "long", "u": "long", "f": "double"}.get(kind, "char")
        mask = np.ma.getmaskarray(col)
        data_ = np.ma.getdata(col)
        if kind == "S":
            data_ = np.char.decode(data_, "utf-8", "replace")
        items = data_.tolist()
        if kind == "b":
            items = [int(v) for v in items]
        elif kind == "f":
            items = [None if v != v else v for v in items]
        if mask.any():
            items = [None if m else v for v, m in zip(items, mask.tolist())]
        columns.append(Column(cname, datatype, str(col.unit or ""), "", col.description or ""))
        values.append(items)
    return columns, list(zip(*values)) if values else []
