"""The archive's ADQL engine: sqlglot translates ADQL to SQLite, SQLite evaluates it.

ADQL is parsed with sqlglot's T-SQL dialect (it understands ``TOP``), checked against the
declared tables (:mod:`.schema`: unknown tables and columns are reported by name), typed, and
written out as SQLite (``TOP`` -> ``LIMIT``, ``LOG`` -> ``LN``, ``LOG10(x)`` -> ``LOG(10, x)``,
``MOD`` -> ``%``, ``CEILING`` -> ``CEIL``, ``TRUNCATE`` -> ``TRUNC``, a bare ``OFFSET`` ->
``LIMIT -1 OFFSET``).  The spherical functions come from :mod:`.geometry`.  Schemas are
attached in-memory databases, so ``spherex.plane`` resolves as written; ``LIKE`` is
case-sensitive as ADQL requires.

One connection serves all threads behind a lock: queries take milliseconds, and the geometry
functions are Python, so the GIL would serialise them anyway.
"""

from __future__ import annotations

import math
import re
import sqlite3
import threading
import time
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, SqlglotError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify

from ..errors import SpherexInputError
from . import geometry
from .schema import SQL_TYPES, TABLES, Column, sqlglot_schema, tap_schema_rows

__all__ = ["AdqlError", "AdqlEngine", "QueryResult", "clean_message"]

#: sqlglot type -> VOTable datatype
_VOTABLE_TYPES = {
    "VARCHAR": "char", "CHAR": "char", "TEXT": "char", "NVARCHAR": "char", "NCHAR": "char",
    "DOUBLE": "double", "FLOAT": "double", "DECIMAL": "double", "REAL": "double",
    "BIGINT": "long", "INT": "long", "SMALLINT": "short", "TINYINT": "short",
    "BOOLEAN": "short",
}


class AdqlError(SpherexInputError):
    """The query cannot be run; the message is what a TAP client shows its user."""


def clean_message(msg):
    """Strip ANSI colour codes and control characters (sqlglot's messages carry both), which
    would otherwise make the error VOTable invalid XML."""
    msg = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(msg))
    msg = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "", msg)
    return " ".join(msg.split())


@dataclass
class QueryResult:
    columns: list           # list of schema.Column
    rows: list              # list of tuples
    overflow: bool          # True when MAXREC cut the result short
    sql: str = ""


class AdqlEngine:
    """Evaluate ADQL over the declared tables.

    Parameters
    ----------
    rows : dict
        ``'spherex.plane'`` (etc.) -> list of tuples in the declared column order.
    timeout : float
        Seconds after which a running query is interrupted.
    """

    def __init__(self, rows, timeout=30.0):
        self.timeout = timeout
        self._lock = threading.Lock()
        self._schema = sqlglot_schema()
        self._udf_error = None
        self._deadline = None
        con = sqlite3.connect(":memory:", check_same_thread=False)
        for schema in sorted({t.schema for t in TABLES.values()}):
            con.execute(f"ATTACH DATABASE ':memory:' AS {schema}")
        con.execute("PRAGMA case_sensitive_like = ON")
        all_rows = dict(tap_schema_rows())
        all_rows.update(rows)
        for name, table in TABLES.items():
            cols = ", ".join(f'"{c.name}" {SQL_TYPES[c.datatype]}' for c in table.columns)
            con.execute(f"CREATE TABLE {name} ({cols})")
            marks = ", ".join("?" * len(table.columns))
            con.executemany(f"INSERT INTO {name} VALUES ({marks})", all_rows.get(name, []))
        for table, column in (("plane", "planeid"), ("artifact", "planeid"),
                              ("plane", "energy_bandpassname"), ("obscore", "obs_collection")):
            con.execute(f"CREATE INDEX spherex.{table}_{column} ON {table} ({column})")
        con.commit()
        geometry.register(con, self._keep_error)
        con.create_function("COT", 1, lambda x: None if x is None else 1.0 / math.tan(x),
                            deterministic=True)
        con.set_authorizer(_read_only)
        con.set_progress_handler(self._check_deadline, 20_000)
        self._con = con

    # -- internals ---------------------------------------------------------------------------

    def _keep_error(self, fn):
        def wrapped(*args):
            try:
                return fn(*args)
            except Exception as e:      # sqlite3 would replace the message by a generic one
                self._udf_error = f"{fn.__name__.replace('sql_', '').upper()}: {e}" \
                    if not isinstance(e, geometry.GeometryError) else str(e)
                raise
        return wrapped

    def _check_deadline(self):
        return 1 if self._deadline is not None and time.monotonic() > self._deadline else 0

    def translate(self, adql):
        """ADQL text -> (SQLite SQL, list of output :class:`Column`)."""
        try:
            trees = [t for t in sqlglot.parse(adql, read="tsql") if t is not None]
        except SqlglotError as e:
            raise AdqlError(f"Could not parse the query: {clean_message(e)}") from None
        if len(trees) != 1 or not isinstance(trees[0], exp.Query):
            raise AdqlError("Could not parse the query: expected one SELECT statement, got "
                            f"{clean_message(adql)[:60]!r}")
        tree = trees[0]
        ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
        for t in tree.find_all(exp.Table):
            name = ".".join(p for p in (t.db, t.name) if p).lower()
            if name not in TABLES and name not in ctes:
                known = ", ".join(sorted(TABLES))
                raise AdqlError(f"Table '{name}' does not exist; this service has: {known}")
        try:
            typed = annotate_types(qualify(tree.copy(), schema=self._schema, dialect="tsql"),
                                   schema=self._schema)
        except OptimizeError as e:
            raise AdqlError(clean_message(e)) from None
        except SqlglotError:
            typed = None            # unusual construct: SQLite still checks it, types from values
        if typed is None:
            return tree.sql(dialect="sqlite"), None
        return typed.sql(dialect="sqlite"), _output_columns(typed, tree)

    def query(self, adql, maxrec=None):
        """Run ADQL; at most ``maxrec`` rows are returned (``overflow`` says if more existed)."""
        sql, columns = self.translate(adql)
        with self._lock:
            self._udf_error = None
            self._deadline = time.monotonic() + self.timeout
            try:
                cur = self._con.execute(sql)
                rows = cur.fetchall() if maxrec is None else cur.fetchmany(maxrec + 1)
                names = [d[0] for d in cur.description]
            except sqlite3.Error as e:
                msg = self._udf_error or clean_message(e)
                if "interrupted" in str(e):
                    msg = f"Query exceeded the {self.timeout:g} s time limit"
                raise AdqlError(msg) from None
            finally:
                self._deadline = None
        overflow = maxrec is not None and len(rows) > maxrec
        if overflow:
            rows = rows[:maxrec]
        if columns is None or len(columns) != len(names):
            columns = [Column(n, "char") for n in names]
        columns = _fill_unknown_types(_unique_names(columns), rows)
        return QueryResult(columns, rows, overflow, sql)


def _read_only(action, *args):
    allowed = (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
               sqlite3.SQLITE_RECURSIVE)
    return sqlite3.SQLITE_OK if action in allowed else sqlite3.SQLITE_DENY


def _output_columns(tree, original):
    """Name, type and (for plain column references) unit/UCD of each SELECT expression.

    An unnamed aggregate or geometry function is named after the function (``COUNT(*)`` ->
    ``count``, as DaCHS does); other unnamed expressions keep sqlglot's ``_col_N``."""
    aliases = {}
    for t in tree.find_all(exp.Table):
        aliases[t.alias_or_name.lower()] = f"{t.db}.{t.name}".lower()
    given = original.selects if len(original.selects) == len(tree.selects) else tree.selects
    out = []
    for e, orig in zip(tree.selects, given):
        name = e.alias_or_name
        if isinstance(orig, exp.Anonymous):
            name = orig.name.lower()
        elif isinstance(orig, exp.AggFunc):
            name = orig.sql_name().lower()
        inner = e.this if isinstance(e, exp.Alias) else e
        type_name = e.type.this.name if e.type is not None else "UNKNOWN"
        datatype = _VOTABLE_TYPES.get(type_name, "")
        col = None
        if isinstance(inner, exp.Column) and inner.table:
            table = TABLES.get(aliases.get(inner.table.lower(), ""))
            if table is not None:
                try:
                    col = table.column(inner.name)
                except KeyError:
                    col = None
        if col is not None:
            out.append(Column(name, col.datatype, col.unit, col.ucd, col.description, col.xtype))
        else:
            out.append(Column(name, datatype))
    return out


def _unique_names(columns):
    seen = {}
    out = []
    for c in columns:
        n = seen.get(c.name.lower(), 0)
        seen[c.name.lower()] = n + 1
        if n:
            c = Column(f"{c.name}_{n + 1}", c.datatype, c.unit, c.ucd, c.description, c.xtype)
        out.append(c)
    return out


def _fill_unknown_types(columns, rows):
    """Expressions sqlglot cannot type (e.g. our geometry functions) are typed by their values."""
    out = []
    for i, c in enumerate(columns):
        if not c.datatype:
            values = [r[i] for r in rows if r[i] is not None]
            if values and all(isinstance(v, int) for v in values):
                datatype = "long"
            elif values and all(isinstance(v, (int, float)) for v in values):
                datatype = "double"
            else:
                datatype = "char"
            c = Column(c.name, datatype, c.unit, c.ucd, c.description, c.xtype)
        out.append(c)
    return out
