"""Serialise query results the way IRSA does: VOTable 1.3 (TABLEDATA), CSV, error documents.

The VOTable is written directly rather than through astropy, so FIELD datatypes, units and
UCDs are exactly the declared ones and a few thousand rows serialise in milliseconds.  Error
documents have the shape of IRSA's real SIA2 error (``irsa-samples/sia2_error_response.xml``):
no TABLE, one ``INFO name="QUERY_STATUS" value="ERROR"`` inside ``RESOURCE type="results"``.
"""

from __future__ import annotations

import csv
import io
import math
import re
from xml.sax.saxutils import escape, quoteattr

__all__ = ["votable_bytes", "csv_bytes", "error_votable", "SIA_DESCRIPTION", "TAP_DESCRIPTION"]

SIA_DESCRIPTION = "Caltech/IPAC-IRSA IVOA Simple Image Access v2 Service"
TAP_DESCRIPTION = "Caltech/IPAC-IRSA IVOA Table Access Protocol Service (local)"

_HEAD = ('<?xml version="1.0" encoding="utf-8"?>\n'
         '<VOTABLE version="1.3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
         'xmlns="http://www.ivoa.net/xml/VOTable/v1.3" '
         'xsi:schemaLocation="http://www.ivoa.net/xml/VOTable/v1.3 '
         'http://www.ivoa.net/xml/VOTable/v1.3">\n'
         '  <DESCRIPTION>{description}</DESCRIPTION>\n')

_BAD_XML_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value):
    return escape(_BAD_XML_CHARS.sub("", value))


def _cell(value, datatype):
    if value is None:
        return "<TD/>"
    if datatype in ("double", "float"):
        value = float(value)
        return "<TD/>" if math.isnan(value) else f"<TD>{value!r}</TD>"
    if datatype in ("long", "int", "short"):
        return f"<TD>{int(value)}</TD>"
    return f"<TD>{_text(str(value))}</TD>"


def _field(c):
    attrs = [f"name={quoteattr(c.name)}", f'datatype="{c.datatype}"']
    if c.arraysize:
        attrs.append(f'arraysize="{c.arraysize}"')
    for key in ("unit", "ucd", "xtype"):
        value = getattr(c, key)
        if value:
            attrs.append(f"{key}={quoteattr(value)}")
    if c.description:
        return (f"      <FIELD {' '.join(attrs)}>\n"
                f"        <DESCRIPTION>{_text(c.description)}</DESCRIPTION>\n      </FIELD>")
    return f"      <FIELD {' '.join(attrs)}/>"


def votable_bytes(columns, rows, overflow=False, description=TAP_DESCRIPTION):
    """A results VOTable with ``QUERY_STATUS`` OK, plus a trailing OVERFLOW INFO (DALI) when
    MAXREC cut the result short."""
    out = [_HEAD.format(description=_text(description)),
           '  <RESOURCE type="results">\n',
           '    <INFO name="QUERY_STATUS" value="OK"/>\n',
           "    <TABLE>\n"]
    out.extend(_field(c) + "\n" for c in columns)
    out.append("      <DATA>\n        <TABLEDATA>\n")
    types = [c.datatype for c in columns]
    for row in rows:
        out.append("<TR>" + "".join(_cell(v, t) for v, t in zip(row, types)) + "</TR>\n")
    out.append("        </TABLEDATA>\n      </DATA>\n    </TABLE>\n")
    if overflow:
        out.append('    <INFO name="QUERY_STATUS" value="OVERFLOW"/>\n')
    out.append("  </RESOURCE>\n</VOTABLE>\n")
    return "".join(out).encode("utf-8")


def error_votable(message, description=TAP_DESCRIPTION):
    """IRSA's error document: the message is the text of the QUERY_STATUS INFO."""
    return (_HEAD.format(description=_text(description))
            + '  <RESOURCE type="results">\n'
            + f'    <INFO name="QUERY_STATUS" value="ERROR">{_text(message)}</INFO>\n'
            + "  </RESOURCE>\n</VOTABLE>\n").encode("utf-8")


def csv_bytes(columns, rows):
    """CSV with a header line, quoted where needed (IRSA leaves cloud_access unquoted, which
    breaks CSV readers; the JSON text itself is kept byte for byte)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([c.name for c in columns])
    types = [c.datatype for c in columns]
    for row in rows:
        w.writerow([_csv_value(v, t) for v, t in zip(row, types)])
    return buf.getvalue().encode("utf-8")


def _csv_value(value, datatype):
    if value is None:
        return ""
    if datatype in ("double", "float"):
        value = float(value)
        return "" if math.isnan(value) else repr(value)
    return value
