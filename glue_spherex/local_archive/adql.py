"""The archive's ADQL engine: sqlglot translates ADQL to SQLite, SQLite evaluates it.

ADQL is parsed with sqlglot's T-SQL dialect (it knows ``TOP``), checked against the declared
tables (:mod:`.schema`; unknown tables and columns are named), and written out as SQLite
(``TOP`` -> ``LIMIT``, ``LOG`` -> ``LN`` and the like); the spherical functions come from
:mod:`.geometry`. What a query may do is bounded (:data:`LIMITS`: length, nesting, value and
answer sizes, a deadline), and an authorizer lets SQLite read only the declared tables and call
only :data:`ALLOWED_FUNCTIONS`. Queries run on a small pool of connections, each with its own
copy of the tables, so one slow query does not hold up the others.
"""

from __future__ import annotations

import contextlib
import math
import queue
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
from .schema import SQL_TYPES, TABLES, UPLOAD_SCHEMA, Column, sqlglot_schema, tap_schema_rows

__all__ = ["AdqlError", "AdqlEngine", "QueryResult", "clean_message", "LIMITS",
           "ALLOWED_FUNCTIONS"]

#: sqlglot type -> VOTable datatype
_VOTABLE_TYPES = {
    "VARCHAR": "char", "CHAR": "char", "TEXT": "char", "NVARCHAR": "char", "NCHAR": "char",
    "DOUBLE": "double", "FLOAT": "double", "DECIMAL": "double", "REAL": "double",
    "BIGINT": "long", "INT": "long", "SMALLINT": "short", "TINYINT": "short",
    "BOOLEAN": "short",
}

#: Bounds on one query (see docs/archive.rst).
LIMITS = {
    "query_chars": 100_000,      # ADQL text
    "nesting": 32,               # parentheses (and so subqueries) inside each other
    "nodes": 10_000,             # parsed expression nodes (translation time grows with them)
    "value_bytes": 1_000_000,    # one string or blob (SQLITE_LIMIT_LENGTH)
    "result_bytes": 64_000_000,  # the values of the answer, summed
    "connections": 4,            # queries running at once
}

#: SQL functions a translated query may call: ADQL's math, string and aggregate functions in
#: their SQLite spelling, plus the geometry functions.  Everything else (randomblob, zeroblob,
#: printf, json_*, load_extension, sqlite_*, ...) is refused by the authorizer.
ALLOWED_FUNCTIONS = frozenset({
    "abs", "acos", "asin", "atan", "atan2", "ceil", "ceiling", "cos", "cot", "degrees", "exp",
    "floor", "ln", "log", "log10", "log2", "mod", "pi", "pow", "power", "radians", "random",
    "round", "sign", "sin", "sqrt", "tan", "trunc",
    "lower", "upper", "length", "substr", "substring", "trim", "ltrim", "rtrim", "instr",
    "like", "coalesce", "ifnull", "nullif", "iif",
    "count", "sum", "total", "avg", "min", "max",
} | {name.lower() for name in geometry.FUNCTIONS})

_READABLE = frozenset(name.lower() for name in TABLES)
_CHEAP_ACTIONS = (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_RECURSIVE)


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


class _Connection:
    """One SQLite connection with every declared table, and the state of its running query."""

    def __init__(self, all_rows):
        self.deadline = None
        self.udf_error = None
        self.denied = None
        self.uploaded = frozenset()      # 'tap_upload.name' tables of the running query
        con = sqlite3.connect(":memory:", check_same_thread=False)
        for schema in sorted({t.schema for t in TABLES.values()} | {UPLOAD_SCHEMA}):
            con.execute(f"ATTACH DATABASE ':memory:' AS {schema}")
        con.execute("PRAGMA case_sensitive_like = ON")
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
        con.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, LIMITS["value_bytes"])
        con.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, 4 * LIMITS["query_chars"])
        con.set_authorizer(self._authorize)
        con.set_progress_handler(self._check_deadline, 20_000)
        self.con = con

    def _keep_error(self, fn):
        def wrapped(*args):
            try:
                return fn(*args)
            except Exception as e:      # sqlite3 would replace the message by a generic one
                self.udf_error = f"{fn.__name__.replace('sql_', '').upper()}: {e}" \
                    if not isinstance(e, geometry.GeometryError) else str(e)
                raise
        return wrapped

    def _check_deadline(self):
        return 1 if self.deadline is not None and time.monotonic() > self.deadline else 0

    def _authorize(self, action, arg1, arg2, database, _trigger):
        """Read-only, declared tables only (after SQLite resolved CTEs), allowed functions."""
        if action in _CHEAP_ACTIONS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ:
            name = f"{database}.{arg1}".lower()
            if database is None or name in _READABLE or name in self.uploaded:
                return sqlite3.SQLITE_OK     # (no database: a recursive CTE's own rows)
            self.denied = f"Table '{database}.{arg1}' is not available in this service"
        elif action == sqlite3.SQLITE_FUNCTION:
            if str(arg2).lower() in ALLOWED_FUNCTIONS:
                return sqlite3.SQLITE_OK
            self.denied = (f"Function {str(arg2).upper()} is not supported by this service; "
                           "it offers ADQL's math, string, aggregate and geometry functions")
        else:
            self.denied = "Only SELECT queries are accepted"
        return sqlite3.SQLITE_DENY


class AdqlEngine:
    """Evaluate ADQL over the declared tables.

    Parameters
    ----------
    rows : dict
        ``'spherex.plane'`` (etc.) -> list of tuples in the declared column order.
    timeout : float
        Seconds after which a running query is interrupted.
    connections : int
        Queries that may run at once (each connection holds a copy of the tables; the first
        is built here, the others when that many queries run at once).
    """

    def __init__(self, rows, timeout=30.0, connections=None):
        self.timeout = timeout
        self._schema = sqlglot_schema()
        self._all_rows = dict(tap_schema_rows())
        self._all_rows.update(rows)
        self._max_connections = connections or LIMITS["connections"]
        self._idle = queue.LifoQueue()
        self._made = 0
        self._made_lock = threading.Lock()
        self._idle.put(self._new_connection())

    # -- internals ---------------------------------------------------------------------------

    def _new_connection(self):
        with self._made_lock:
            self._made += 1
        try:
            return _Connection(self._all_rows)
        except BaseException:
            with self._made_lock:
                self._made -= 1
            raise

    def _spare(self):
        """Build one more idle connection in the background (a query that arrives while the
        others run then finds it ready instead of waiting ~0.3 s for its tables)."""
        with self._made_lock:
            if self._made >= self._max_connections:
                return
            self._made += 1

        def build():
            try:
                self._idle.put(_Connection(self._all_rows))
            except Exception:
                with self._made_lock:
                    self._made -= 1

        threading.Thread(target=build, name="adql-spare-connection", daemon=True).start()

    @contextlib.contextmanager
    def _connection(self):
        """An idle connection; a new one while fewer than ``connections`` exist; else wait."""
        try:
            conn = self._idle.get_nowait()
            if self._idle.empty():
                self._spare()
        except queue.Empty:
            with self._made_lock:
                grow = self._made < self._max_connections
            if grow:
                conn = self._new_connection()
            else:
                try:
                    conn = self._idle.get(timeout=self.timeout)
                except queue.Empty:
                    raise AdqlError(f"The service is busy: {self._max_connections} queries "
                                    "are running; try again later") from None
        try:
            yield conn
        finally:
            self._idle.put(conn)

    def translate(self, adql, uploads=None):
        """ADQL text -> (SQLite SQL, list of output :class:`Column`); ``uploads``
        (``{name: columns}``) declares the ``TAP_UPLOAD.name`` tables of this query."""
        uploads = uploads or {}
        _check_text(adql)
        try:
            trees = [t for t in sqlglot.parse(adql, read="tsql") if t is not None]
        except SqlglotError as e:
            raise AdqlError(f"Could not parse the query: {clean_message(e)}") from None
        except RecursionError:
            raise _too_deep() from None
        if len(trees) != 1 or not isinstance(trees[0], exp.Query):
            raise AdqlError("Could not parse the query: expected one SELECT statement, got "
                            f"{clean_message(adql)[:60]!r}")
        tree = trees[0]
        nodes = sum(1 for _ in tree.walk())
        if nodes > LIMITS["nodes"]:
            raise AdqlError(f"The query has {nodes} terms; this service accepts at most "
                            f"{LIMITS['nodes']} (split it into several queries)")
        for t in tree.find_all(exp.Table):
            name = ".".join(p for p in (t.catalog, t.db, t.name) if p).lower()
            if (name not in TABLES and not _is_cte_reference(t)
                    and not (t.db.lower() == UPLOAD_SCHEMA and t.name.lower() in uploads
                             and not t.catalog)):
                known = ", ".join(sorted(TABLES) + [f"TAP_UPLOAD.{n}" for n in uploads])
                raise AdqlError(f"Table '{name}' does not exist; this service has: {known}")
        try:
            schema = sqlglot_schema(uploads) if uploads else self._schema
            typed = annotate_types(qualify(tree.copy(), schema=schema, dialect="tsql"),
                                   schema=schema)
            if typed is None:
                return tree.sql(dialect="sqlite"), None
            return typed.sql(dialect="sqlite"), _output_columns(typed, tree)
        except OptimizeError as e:
            raise AdqlError(clean_message(e)) from None
        except SqlglotError:
            pass                    # unusual construct: SQLite still checks it, types from values
        except RecursionError:
            raise _too_deep() from None
        try:
            return tree.sql(dialect="sqlite"), None
        except (SqlglotError, RecursionError):
            raise _too_deep() from None

    def query(self, adql, maxrec=None, uploads=None):
        """Run ADQL; at most ``maxrec`` rows are returned (``overflow`` says if more existed).

        ``uploads`` (``{name: (columns, rows)}``) become the tables ``TAP_UPLOAD.name`` of this
        query only: created on the connection before it runs, dropped after it.
        """
        uploads = uploads or {}
        sql, columns = self.translate(adql, {n: cols for n, (cols, _) in uploads.items()})
        with self._connection() as conn:
            conn.udf_error = conn.denied = None
            conn.deadline = time.monotonic() + self.timeout
            cur = None
            try:
                _create_uploads(conn, uploads)
                cur = conn.con.execute(sql)
                names = [d[0] for d in cur.description]
                rows = _fetch(cur, None if maxrec is None else maxrec + 1)
            except sqlite3.Error as e:
                msg = conn.denied or conn.udf_error or clean_message(e)
                if "interrupted" in str(e):
                    msg = f"Query exceeded the {self.timeout:g} s time limit"
                elif "too big" in str(e):
                    msg = (f"A value of the query is larger than the {LIMITS['value_bytes']:,} "
                           "bytes this service allows")
                raise AdqlError(msg) from None
            finally:
                conn.deadline = None
                if cur is not None:
                    cur.close()          # a cursor stopped at MAXREC still locks its tables
                _drop_uploads(conn)
        overflow = maxrec is not None and len(rows) > maxrec
        if overflow:
            rows = rows[:maxrec]
        if columns is None or len(columns) != len(names):
            columns = [Column(n, "char") for n in names]
        columns = _fill_unknown_types(_unique_names(columns), rows)
        return QueryResult(columns, rows, overflow, sql)


def _create_uploads(conn, uploads):
    """Create and fill ``tap_upload.<name>`` for each upload (the authorizer, which refuses
    writes, is lifted meanwhile) and let the query read them."""
    if not uploads:
        return
    con = conn.con
    conn.uploaded = frozenset(f"{UPLOAD_SCHEMA}.{n}" for n in uploads)   # dropped after
    con.set_authorizer(None)
    try:
        for name, (columns, rows) in uploads.items():
            cols = ", ".join(f'"{c.name}" {SQL_TYPES[c.datatype]}' for c in columns)
            con.execute(f'DROP TABLE IF EXISTS {UPLOAD_SCHEMA}."{name}"')
            con.execute(f'CREATE TABLE {UPLOAD_SCHEMA}."{name}" ({cols})')
            marks = ", ".join("?" * len(columns))
            con.executemany(f'INSERT INTO {UPLOAD_SCHEMA}."{name}" VALUES ({marks})', rows)
    finally:
        con.set_authorizer(conn._authorize)


def _drop_uploads(conn):
    if not conn.uploaded:
        return
    con = conn.con
    con.set_authorizer(None)
    try:
        for name in conn.uploaded:
            con.execute(f'DROP TABLE IF EXISTS {UPLOAD_SCHEMA}."{name.split(".", 1)[1]}"')
        con.commit()
    finally:
        con.set_authorizer(conn._authorize)
        conn.uploaded = frozenset()


def _fetch(cur, limit):
    """At most ``limit`` rows (all if None) whose values add up to at most ``result_bytes``."""
    rows = []
    size = 0
    cap = LIMITS["result_bytes"]
    while limit is None or len(rows) < limit:
        batch = cur.fetchmany(1000 if limit is None else min(1000, limit - len(rows)))
        if not batch:
            break
        size += sum(len(v) if isinstance(v, (str, bytes)) else 8 for r in batch for v in r)
        if size > cap:
            raise AdqlError(f"The result is larger than {cap // 1_000_000} MB after "
                            f"{len(rows) + len(batch):,} rows; ask for fewer rows (MAXREC, "
                            "TOP, WHERE) or columns")
        rows.extend(batch)
    return rows


def _check_text(adql):
    """Refuse a query too long or nested too deeply to be parsed with bounded effort."""
    if len(adql) > LIMITS["query_chars"]:
        raise AdqlError(f"The query is {len(adql):,} characters long; this service accepts at "
                        f"most {LIMITS['query_chars']:,}")
    depth = deepest = 0
    quote = None
    for ch in adql:
        if quote is not None:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth -= 1
    if deepest > LIMITS["nesting"]:
        raise _too_deep(deepest)


def _too_deep(depth=None):
    found = f"nests {depth} levels deep" if depth else "is nested too deeply"
    return AdqlError(f"The query {found}; this service accepts at most {LIMITS['nesting']} "
                     "levels of parentheses or subqueries")


def _is_cte_reference(table):
    """True if ``table`` (unqualified) names a CTE of a WITH clause that encloses it."""
    if table.db or table.catalog:
        return False                 # a CTE name has no schema: 'spherex.x' is never one
    name = table.name.lower()
    node = table.parent
    while node is not None:
        with_ = None
        if isinstance(node, exp.Query):      # sqlglot >= 26 calls the key 'with_'
            with_ = node.args.get("with_") or node.args.get("with")
        if with_ is not None and name in {c.alias_or_name.lower() for c in with_.expressions}:
            return True
        node = node.parent
    return False


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
