"""VOSI documents: ``/TAP/capabilities``, ``/TAP/tables``, ``/TAP/availability`` and
``/SIA/capabilities`` (pyvo's ``SIA2Service`` reads the query URL from the latter)."""

from __future__ import annotations

from xml.sax.saxutils import escape

from .schema import SCHEMA_DESCRIPTIONS, TABLES

__all__ = ["tap_capabilities", "sia_capabilities", "tables_document", "availability",
           "DEFAULT_MAXREC", "HARD_MAXREC"]

DEFAULT_MAXREC = 100_000
HARD_MAXREC = 2_000_000

_CAPS_OPEN = ('<?xml version="1.0" encoding="UTF-8"?>\n'
              '<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0" '
              'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
              'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
              'xmlns:tr="http://www.ivoa.net/xml/TAPRegExt/v1.0">\n')

_GEOMETRY = ("POINT", "CIRCLE", "POLYGON", "BOX", "CONTAINS", "INTERSECTS", "DISTANCE",
             "COORD1", "COORD2", "COORDSYS", "AREA")


def _vosi_caps(base):
    out = []
    for std, path in (("capabilities", "capabilities"), ("availability", "availability"),
                      ("tables", "tables")):
        if std == "tables" and not base.endswith("/TAP"):
            continue
        out.append(f'  <capability standardID="ivo://ivoa.net/std/VOSI#{std}">\n'
                   f'    <interface xsi:type="vs:ParamHTTP">\n'
                   f'      <accessURL use="full">{escape(base)}/{path}</accessURL>\n'
                   f"    </interface>\n  </capability>\n")
    return "".join(out)


def tap_capabilities(tap_url):
    geo = "".join(f"        <feature><form>{f}</form></feature>\n" for f in _GEOMETRY)
    doc = (
        _CAPS_OPEN
        + '  <capability standardID="ivo://ivoa.net/std/TAP" xsi:type="tr:TableAccess">\n'
        + '    <interface xsi:type="vs:ParamHTTP" role="std" version="1.1">\n'
        + f'      <accessURL use="base">{escape(tap_url)}</accessURL>\n'
        + "    </interface>\n"
        + "    <language>\n      <name>ADQL</name>\n"
        + '      <version ivo-id="ivo://ivoa.net/std/ADQL#v2.0">2.0</version>\n'
        + "      <description>ADQL 2.0 (and 2.1 OFFSET), evaluated by SQLite</description>\n"
        + '      <languageFeatures type="ivo://ivoa.net/std/TAPRegExt#features-adqlgeo">\n'
        + geo
        + "      </languageFeatures>\n    </language>\n"
        + '    <outputFormat ivo-id="ivo://ivoa.net/std/TAPRegExt#output-votable-td">\n'
        + "      <mime>application/x-votable+xml</mime>\n      <alias>votable</alias>\n"
        + "    </outputFormat>\n"
        + "    <outputFormat>\n      <mime>text/csv</mime>\n      <alias>csv</alias>\n"
        + "    </outputFormat>\n"
        + '    <uploadMethod ivo-id="ivo://ivoa.net/std/TAPRegExt#upload-inline"/>\n'
        + "    <outputLimit>\n"
        + f'      <default unit="row">{DEFAULT_MAXREC}</default>\n'
        + f'      <hard unit="row">{HARD_MAXREC}</hard>\n'
        + "    </outputLimit>\n"
        + "    <uploadLimit>\n"
        + '      <hard unit="byte">50000000</hard>\n'
        + "    </uploadLimit>\n  </capability>\n"
        + _vosi_caps(tap_url)
        + "</vosi:capabilities>\n")
    return doc.encode("utf-8")


def sia_capabilities(sia_url):
    doc = (
        _CAPS_OPEN
        + '  <capability standardID="ivo://ivoa.net/std/SIA#query-2.0">\n'
        + '    <interface xsi:type="vs:ParamHTTP" role="std" version="2.0">\n'
        + f'      <accessURL use="base">{escape(sia_url)}</accessURL>\n'
        + "    </interface>\n  </capability>\n"
        + _vosi_caps(sia_url)
        + "</vosi:capabilities>\n")
    return doc.encode("utf-8")


def tables_document():
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n'
           '<vosi:tableset xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" '
           'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
           'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n']
    for schema, desc in SCHEMA_DESCRIPTIONS.items():
        out.append(f"  <schema>\n    <name>{schema}</name>\n"
                   f"    <description>{escape(desc)}</description>\n")
        for t in TABLES.values():
            if t.schema != schema:
                continue
            out.append(f'    <table type="table">\n      <name>{t.name}</name>\n'
                       f"      <description>{escape(t.description)}</description>\n")
            for c in t.columns:
                size = f' arraysize="{c.arraysize}"' if c.arraysize else ""
                out.append("      <column>\n"
                           f"        <name>{c.name}</name>\n"
                           + (f"        <description>{escape(c.description)}</description>\n"
                              if c.description else "")
                           + (f"        <unit>{escape(c.unit)}</unit>\n" if c.unit else "")
                           + (f"        <ucd>{escape(c.ucd)}</ucd>\n" if c.ucd else "")
                           + f'        <dataType xsi:type="vs:VOTableType"{size}>'
                           f"{c.datatype}</dataType>\n      </column>\n")
            out.append("    </table>\n")
        out.append("  </schema>\n")
    out.append("</vosi:tableset>\n")
    return "".join(out).encode("utf-8")


def availability(available=True, note="service is accepting queries"):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<avl:availability xmlns:avl="http://www.ivoa.net/xml/VOSIAvailability/v1.0">\n'
            f"  <avl:available>{'true' if available else 'false'}</avl:available>\n"
            f"  <avl:note>{escape(note)}</avl:note>\n"
            "</avl:availability>\n").encode()
