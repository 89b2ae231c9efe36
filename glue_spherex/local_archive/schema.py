"""Declared tables of the local archive: column names, VOTable datatypes, units and UCDs.

SQLite is dynamically typed, so every datatype the archive reports (VOTable FIELDs, VOSI
``/TAP/tables``, ``TAP_SCHEMA.columns``) comes from these declarations, never from the values.
``spherex.obscore`` has the 51 columns of IRSA's SIA2 answer, in IRSA's order (products doc §5.2).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Column", "Table", "TABLES", "SIA_COLUMNS", "SQL_TYPES", "sqlglot_schema",
           "UPLOAD_SCHEMA"]


@dataclass(frozen=True)
class Column:
    name: str
    datatype: str                 # VOTable datatype: char, double, long, int, short, boolean
    unit: str = ""
    ucd: str = ""
    description: str = ""
    xtype: str = ""

    @property
    def arraysize(self):
        return "*" if self.datatype == "char" else ""


@dataclass(frozen=True)
class Table:
    name: str                     # schema-qualified, e.g. 'spherex.plane'
    description: str
    columns: tuple

    @property
    def schema(self):
        return self.name.split(".")[0]

    @property
    def short_name(self):
        return self.name.split(".")[1]

    def column(self, name):
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


#: VOTable datatype -> SQLite column affinity
SQL_TYPES = {"char": "TEXT", "double": "REAL", "float": "REAL", "long": "INTEGER",
             "int": "INTEGER", "short": "INTEGER", "boolean": "INTEGER"}

#: VOTable datatype -> sqlglot type name (for typing expressions in SELECT lists)
_SQLGLOT_TYPES = {"char": "VARCHAR", "double": "DOUBLE", "float": "FLOAT", "long": "BIGINT",
                  "int": "INT", "short": "SMALLINT", "boolean": "BOOLEAN"}


def C(name, datatype, unit="", ucd="", description="", xtype=""):
    return Column(name, datatype, unit, ucd, description, xtype)


SIA_COLUMNS = (
    C("s_ra", "double", "deg", "pos.eq.ra", "Central right ascension, ICRS"),
    C("s_dec", "double", "deg", "pos.eq.dec", "Central declination, ICRS"),
    C("facility_name", "char", "", "meta.id;instr.tel", "Observatory"),
    C("instrument_name", "char", "", "meta.id;instr", "Instrument"),
    C("dataproduct_subtype", "char", "", "meta.code.class", "Data product subtype"),
    C("calib_level", "short", "", "meta.code;obs.calib", "Calibration level"),
    C("dataproduct_type", "char", "", "meta.code.class", "Data product type"),
    C("energy_bandpassname", "char", "", "instr.bandpass", "Detector bandpass"),
    C("energy_emband", "char", "", "instr.bandpass", "Spectral region"),
    C("obs_id", "char", "", "meta.id", "Observation id"),
    C("s_resolution", "double", "arcsec", "pos.angResolution", "Spatial resolution"),
    C("em_min", "double", "m", "em.wl;stat.min", "Shortest wavelength"),
    C("em_max", "double", "m", "em.wl;stat.max", "Longest wavelength"),
    C("em_res_power", "double", "", "spect.resolution", "Spectral resolving power"),
    C("proposal_title", "char", "", "meta.title;obs.proposal", "Proposal title"),
    C("access_url", "char", "", "meta.ref.url", "URL of the FITS file"),
    C("access_format", "char", "", "meta.code.mime", "Content type of the file"),
    C("access_estsize", "long", "kbyte", "phys.size;meta.file", "File size"),
    C("t_exptime", "double", "s", "time.duration;obs.exposure", "Exposure time"),
    C("s_region", "char", "", "pos.outline;obs.field", "Footprint (STC-S polygon)"),
    C("obs_collection", "char", "", "meta.id", "Collection"),
    C("obs_intent", "char", "", "meta.code", "Intent"),
    C("algorithm_name", "char", "", "meta.code", "Processing algorithm"),
    C("facility_keywords", "char", "", "meta.id;instr.tel", ""),
    C("instrument_keywords", "char", "", "meta.id;instr", ""),
    C("environment_photometric", "char", "", "meta.code", ""),
    C("proposal_id", "char", "", "meta.id;obs.proposal", ""),
    C("proposal_pi", "char", "", "meta.id.PI", ""),
    C("proposal_project", "char", "", "meta.id;obs.proposal", "Project"),
    C("target_name", "char", "", "meta.id;src", "Survey target"),
    C("target_type", "char", "", "src.class", ""),
    C("target_standard", "int", "", "meta.code", ""),
    C("target_moving", "int", "", "meta.code", ""),
    C("target_keywords", "char", "", "meta.id;src", ""),
    C("obs_release_date", "char", "", "time.release", "Release date (UTC)"),
    C("s_xel1", "long", "", "meta.number", "Pixels along NAXIS1"),
    C("s_xel2", "long", "", "meta.number", "Pixels along NAXIS2"),
    C("s_pixel_scale", "double", "arcsec", "phys.angSize;instr.pixel", "Pixel scale"),
    C("position_timedependent", "int", "", "meta.code", ""),
    C("t_min", "double", "d", "time.start;obs.exposure", "Exposure start, MJD (MJD-BEG)"),
    C("t_max", "double", "d", "time.end;obs.exposure", "Exposure end, MJD (MJD-END)"),
    C("t_resolution", "double", "s", "time.resolution", ""),
    C("t_xel", "long", "", "meta.number", ""),
    C("obs_publisher_did", "char", "", "meta.ref.ivoid", "Publisher dataset id"),
    C("s_fov", "double", "deg", "phys.angSize;instr.fov", "Field of view diameter"),
    C("em_xel", "long", "", "meta.number", ""),
    C("pol_states", "char", "", "meta.code;phys.polarization", ""),
    C("pol_xel", "long", "", "meta.number", ""),
    C("cloud_access", "char", "", "meta.ref", "JSON locating the file in AWS S3"),
    C("o_ucd", "char", "", "meta.ucd", ""),
    C("upload_row_id", "long", "", "meta.id", ""),
)

PLANE = Table("spherex.plane", "One row per Level-2 spectral image (CAOM plane)", (
    C("planeid", "long", "", "meta.id;meta.main", "Plane id (join key to spherex.artifact)"),
    C("obsid", "char", "", "meta.id", "Observation id"),
    C("poly", "char", "", "pos.outline;obs.field", "Footprint polygon"),
    C("pt", "char", "", "pos.eq", "Footprint centre (POINT)"),
    C("time_bounds_lower", "double", "d", "time.start", "Exposure start, MJD"),
    C("time_bounds_upper", "double", "d", "time.end", "Exposure end, MJD"),
    C("energy_bounds_lower", "double", "m", "em.wl;stat.min", "Shortest wavelength"),
    C("energy_bounds_upper", "double", "m", "em.wl;stat.max", "Longest wavelength"),
    C("energy_bandpassname", "char", "", "instr.bandpass", "'SPHEREx-D1' ... 'SPHEREx-D6'"),
    C("obs_publisher_did", "char", "", "meta.ref.ivoid", "Publisher dataset id"),
    C("dataproducttype", "char", "", "meta.code.class", "'image'"),
    C("calibrationlevel", "short", "", "meta.code;obs.calib", "2"),
))

ARTIFACT = Table("spherex.artifact", "Files of each plane", (
    C("planeid", "long", "", "meta.id", "Plane id"),
    C("uri", "char", "", "meta.ref", "Path below the archive root, no leading slash"),
    C("producttype", "char", "", "meta.code", "'science'"),
))

OBSERVATION = Table("spherex.observation", "One row per exposure (CAOM observation); its "
                    "collection tells wide from deep and QR2 from QR3", (
    C("obsid", "char", "", "meta.id;meta.main", "Observation key (join key to spherex.plane)"),
    C("observationid", "char", "", "meta.id", "Observation id (ObsCore obs_id)"),
    C("collection", "char", "", "meta.id", "'spherex_qr2', 'spherex_qr2_deep', 'spherex_qr3', "
      "'spherex_qr3_deep'"),
    C("intent", "char", "", "meta.code", "'science'"),
    C("type", "char", "", "meta.code.class", "'exposure'"),
))

OBSCORE = Table("spherex.obscore", "ObsCore view of the Level-2 images (the SIA2 columns)",
                SIA_COLUMNS)

TAP_SCHEMAS = Table("tap_schema.schemas", "Schemas in this service", (
    C("schema_name", "char"), C("description", "char"), C("utype", "char"),
))
TAP_TABLES = Table("tap_schema.tables", "Tables in this service", (
    C("schema_name", "char"), C("table_name", "char"), C("table_type", "char"),
    C("description", "char"), C("utype", "char"), C("table_index", "int"),
))
TAP_COLUMNS = Table("tap_schema.columns", "Columns in this service", (
    C("table_name", "char"), C("column_name", "char"), C("description", "char"),
    C("unit", "char"), C("ucd", "char"), C("utype", "char"), C("datatype", "char"),
    C("arraysize", "char"), C("xtype", "char"), C("size", "int"), C("principal", "int"),
    C("indexed", "int"), C("std", "int"), C("column_index", "int"),
))

TABLES = {t.name: t for t in (PLANE, ARTIFACT, OBSERVATION, OBSCORE, TAP_SCHEMAS, TAP_TABLES,
                               TAP_COLUMNS)}

SCHEMA_DESCRIPTIONS = {
    "spherex": "SPHEREx Level-2 spectral images (synthetic, local archive)",
    "tap_schema": "Metadata of this TAP service",
}


#: Schema of the tables a TAP request uploads (``TAP_UPLOAD.name``).
UPLOAD_SCHEMA = "tap_upload"


def sqlglot_schema(uploads=None):
    """The declarations in sqlglot's nested-dict form, for column resolution and typing;
    ``uploads`` (``{name: columns}``) adds ``tap_upload.name`` tables."""
    out = {}
    for t in TABLES.values():
        out.setdefault(t.schema, {})[t.short_name] = {
            c.name: _SQLGLOT_TYPES[c.datatype] for c in t.columns}
    for name, columns in (uploads or {}).items():
        out.setdefault(UPLOAD_SCHEMA, {})[name] = {
            c.name: _SQLGLOT_TYPES[c.datatype] for c in columns}
    return out


def tap_schema_rows():
    """Rows of tap_schema.schemas, .tables and .columns describing every declared table."""
    schemas = [(name, desc, None) for name, desc in SCHEMA_DESCRIPTIONS.items()]
    tables, columns = [], []
    for ti, t in enumerate(TABLES.values()):
        tables.append((t.schema, t.name, "table", t.description, None, ti))
        for ci, c in enumerate(t.columns):
            columns.append((t.name, c.name, c.description or None, c.unit or None, c.ucd or None,
                            None, c.datatype, c.arraysize or None, c.xtype or None, None,
                            1, 0, 1 if t.name == "spherex.obscore" else 0, ci))
    return {"tap_schema.schemas": schemas, "tap_schema.tables": tables,
            "tap_schema.columns": columns}
