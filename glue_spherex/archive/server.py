"""The local IRSA-compatible archive: a threaded HTTP/1.1 server on 127.0.0.1.

Routes mirror IRSA's layout, so a client configured with ``arch.url`` instead of
``https://irsa.ipac.caltech.edu`` works unchanged:

==================================  ============================================================
``/TAP/sync``                        ADQL queries (GET or POSTed form), :mod:`.tap`
``/TAP/capabilities|tables|availability``  VOSI
``/SIA``, ``/SIA/capabilities``      SIA2 image search, :mod:`.sia`
``/ibe/data/spherex/<key>``          whole files (HEAD, Range) and ``?center=&size=`` cutouts
``/nasa-irsa-spherex/<key>``         the public S3 bucket (path-style, anonymous), :mod:`.s3`
==================================  ============================================================

Every response carries Content-Length and connections are kept alive.  Each connection gets
its own daemon thread, so slow responses (injected latency, bandwidth caps, stalls) overlap.
Faults (:mod:`.faults`) are drawn per request from one seeded stream; every request is
recorded in :attr:`LocalArchive.log`.

The server accepts connections as soon as :meth:`LocalArchive.start` returns; the tables (and
the SQL engine, sqlglot and spherical-geometry with them) are built in a background thread,
which TAP and SIA requests wait for.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import SpherexServiceError
from . import s3, vosi
from .catalog import build_catalog, default_catalog
from .faults import FaultConfig, is_body_fault, new_rng
from .files import serve_file
from .response import FileBody, Response, text_response

__all__ = ["LocalArchive", "LogRecord"]

DATA_PREFIX = "/ibe/data/spherex/"
S3_PREFIX = f"/{s3.BUCKET}"


class LogRecord(NamedTuple):
    time: float             # request arrival, seconds since the epoch
    method: str
    path: str
    query: str
    status: int
    bytes_sent: int         # body bytes actually written
    fault: str | None       # injected fault, if any


def route_kind(path):
    if path.startswith(("/ibe/", S3_PREFIX)):
        return "data"
    if path == "/TAP" or path.startswith("/TAP/"):
        return "tap"
    if path == "/SIA" or path.startswith("/SIA/"):
        return "sia"
    return "other"


_FAULT_PAGES = {
    "500": (500, "Internal Server Error"),
    "502": (502, "Bad Gateway"),
    "503": (503, "Service Unavailable"),
    "429": (429, "Too Many Requests"),
    "html200": (200, "Service Temporarily Unavailable"),
}


def fault_response(kind, faults):
    status, title = _FAULT_PAGES[kind]
    page = (f"<!DOCTYPE html>\n<html><head><title>{status} {title}</title></head>\n"
            f"<body><h1>{title}</h1><p>The server could not complete your request. "
            f"Please try again later.</p></body></html>\n").encode()
    headers = [("Retry-After", str(int(faults.retry_after)))] if kind in ("429", "503") else []
    return Response(status, "text/html; charset=utf-8", page, headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "glue-spherex-archive/1.0"
    sys_version = ""
    timeout = 300                       # idle keep-alive connections are closed after this

    def do_GET(self):
        self._serve("GET")

    def do_HEAD(self):
        self._serve("HEAD")

    def do_POST(self):
        self._serve("POST")

    def log_message(self, format, *args):   # the archive keeps its own log
        pass

    # ------------------------------------------------------------------------------------------

    def _serve(self, method):
        started = time.time()
        archive = self.server.archive
        url = urlsplit(self.path)
        path = unquote(url.path)
        form = self._read_form() if method == "POST" else ""
        faults = archive.faults
        kind = route_kind(path)
        delay, fault = archive._draw(faults, kind)
        if delay > 0:
            time.sleep(delay)
        if fault in _FAULT_PAGES:
            response = fault_response(fault, faults)
        else:
            try:
                response = archive._dispatch(method, path, url.query, form, self.headers)
            except Exception as e:     # a bug must not kill the connection silently
                traceback.print_exc(file=sys.stderr)
                response = text_response(500, f"Internal error: {type(e).__name__}: {e}")
        if fault is not None and is_body_fault(fault) and method == "HEAD" and fault != "reset":
            fault = None               # nothing to truncate or stall in a HEAD answer
        bandwidth = faults.bandwidth if faults.applies_to(kind) else None
        record = LogRecord(started, method, path, url.query, response.status, 0, fault)
        self._send(response, method, fault, bandwidth, faults.stall_seconds, record)

    def _read_form(self):
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length > 0 else b""
        ctype = self.headers.get("Content-Type", "")
        if ctype.startswith("multipart/"):
            return None                # table uploads are not supported
        return data.decode("utf-8", "replace")

    def _send(self, response, method, fault, bandwidth, stall_seconds, record):
        """Send the response, applying a body fault, and log it.

        The request is logged just before its last byte (or the injected failure) reaches the
        client, so a client that has seen the whole answer also finds it in the log; if sending
        fails after that, the record is corrected to the bytes actually sent.
        """
        archive = self.server.archive
        body = response.body
        total = response.length
        self._sent = 0
        index = None

        def log(planned):
            nonlocal index
            index = archive._record(record._replace(bytes_sent=planned))

        try:
            if fault == "reset" and (method == "HEAD" or total == 0):
                log(0)
                self._reset()
                return
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(total))
            for name, value in response.headers:
                self.send_header(name, value)
            if method == "HEAD" or total == 0:
                log(0)
                self.end_headers()
                return
            self.end_headers()
            cut = total // 2 if fault in ("reset", "truncate", "stall") else total
            if fault == "stall":
                self._write(body, 0, cut, bandwidth)
                time.sleep(stall_seconds)
                self._write(body, cut, total, bandwidth, before_last=log)
            elif fault in ("truncate", "reset"):
                self._write(body, 0, cut, bandwidth)
                log(self._sent)
                if fault == "truncate":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_WR)
                else:
                    self._reset()
            else:
                self._write(body, 0, total, bandwidth, before_last=log)
        except (ConnectionError, TimeoutError, OSError):
            self.close_connection = True
            if index is None:
                log(self._sent)
            else:
                archive._amend(index, bytes_sent=self._sent)
        finally:
            if isinstance(body, FileBody):
                body.file.close()

    def _write(self, body, start, stop, bandwidth, before_last=None):
        """Write body[start:stop], paced to ``bandwidth`` bytes/s if given; ``before_last``
        is called with the planned total just before the last chunk goes out."""
        chunk = 256 * 1024 if bandwidth is None else max(1024, min(65536, int(bandwidth / 20)))
        t0 = time.monotonic()
        sent = 0
        pos = start
        if isinstance(body, FileBody):
            body.file.seek(body.offset + start)
        else:
            body = memoryview(body)  # slices without copying
        while pos < stop:
            n = min(chunk, stop - pos)
            data = body.file.read(n) if isinstance(body, FileBody) else body[pos:pos + n]
            if not data:
                break
            if before_last is not None and pos + len(data) >= stop:
                before_last(self._sent + len(data))
            self.wfile.write(data)
            pos += len(data)
            sent += len(data)
            self._sent += len(data)
            if bandwidth is not None:
                wait = t0 + sent / bandwidth - time.monotonic()
                if wait > 0:
                    time.sleep(wait)

    def _reset(self):
        """Close the connection with a TCP RST (SO_LINGER 0) instead of a clean FIN."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()


class LocalArchive:
    """An IRSA-compatible archive serving synthetic SPHEREx data on ``127.0.0.1``.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.

    Parameters
    ----------
    port : int
        TCP port; 0 picks a free one.
    faults : FaultConfig, optional
        Faults to inject; can be replaced while running (``arch.faults = FaultConfig(...)``).
    seed : int
        Seed of the fault stream.
    gzip_cutouts : bool
        Server-wide default of the cutout ``gzip`` parameter (False, see :mod:`.files`).
    specs : list of FrameSpec, optional
        Frames to serve instead of ``synthetic.observation_plan()``.
    """

    def __init__(self, port=0, faults=None, seed=0, gzip_cutouts=False, specs=None):
        self._port = port
        self.faults = faults if faults is not None else FaultConfig()
        self.seed = seed
        self.gzip_cutouts = gzip_cutouts
        self._specs = specs
        self._server = None
        self._thread = None
        self._log = []
        self._log_lock = threading.Lock()
        self._rng = new_rng(seed)
        self._rng_lock = threading.Lock()
        self._ready = threading.Event()
        self._engine = None
        self._catalog = None
        self._build_error = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self):
        """Bind, start serving in a background thread, and start building the tables."""
        if self._server is not None:
            return self
        self._server = _Server(("127.0.0.1", self._port), _Handler)
        self._server.archive = self
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name=f"archive-{self.port}", daemon=True)
        self._thread.start()
        threading.Thread(target=self._build, name="archive-build", daemon=True).start()
        return self

    def stop(self):
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _build(self):
        try:
            from .adql import AdqlEngine

            catalog = default_catalog() if self._specs is None else build_catalog(self._specs)
            self._engine = AdqlEngine(catalog.table_rows(self.url))
            self._catalog = catalog
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            self._build_error = e
        self._ready.set()

    def wait_ready(self, timeout=120.0):
        """Block until the tables are built; raises SpherexServiceError if that failed."""
        if not self._ready.wait(timeout):
            raise SpherexServiceError(f"archive tables not built after {timeout:g} s")
        if self._build_error is not None:
            raise SpherexServiceError(f"archive tables could not be built: {self._build_error}")
        return self

    # -- addresses -----------------------------------------------------------------------------

    @property
    def port(self):
        return self._server.server_address[1] if self._server else self._port

    @property
    def url(self):
        """Base URL, the local equivalent of ``https://irsa.ipac.caltech.edu``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def tap_url(self):
        return self.url + "/TAP"

    @property
    def sia_url(self):
        return self.url + "/SIA"

    def file_url(self, spec):
        return f"{self.url}{DATA_PREFIX}{spec.key}"

    @property
    def engine(self):
        return self.wait_ready()._engine

    @property
    def catalog(self):
        return self.wait_ready()._catalog

    # -- request log ---------------------------------------------------------------------------

    @property
    def log(self):
        """A snapshot of the request log (list of :class:`LogRecord`)."""
        with self._log_lock:
            return list(self._log)

    def clear_log(self):
        with self._log_lock:
            self._log.clear()

    def _record(self, rec):
        with self._log_lock:
            self._log.append(rec)
            return len(self._log) - 1

    def _amend(self, index, **changes):
        with self._log_lock:
            if index < len(self._log):          # clear_log() may have run meanwhile
                self._log[index] = self._log[index]._replace(**changes)

    def _draw(self, faults, kind):
        with self._rng_lock:
            return faults.draw(self._rng, kind)

    # -- routing -------------------------------------------------------------------------------

    def _dispatch(self, method, path, query, form, headers):
        from . import sia, tap  # they import the SQL engine, loaded by the table build

        if form is None:
            return tap.error("Table uploads (multipart/form-data) are not supported")
        if path == S3_PREFIX or path.startswith(S3_PREFIX + "/"):
            return s3.dispatch(method, path, query, headers, self.catalog)
        if path.startswith(DATA_PREFIX):
            if method not in ("GET", "HEAD"):
                return text_response(405, f"{method} is not allowed on files")
            spec = self.catalog.by_key.get(path[len(DATA_PREFIX):])
            if spec is None:
                return text_response(404, f"Not found: {path}")
            params = {k.lower(): v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
            return serve_file(spec, params, headers.get("Range"), self.gzip_cutouts)
        params = {}
        for source in (query, form):
            for k, values in parse_qs(source, keep_blank_values=True).items():
                params.setdefault(k.upper(), []).extend(values)
        path = path.rstrip("/") or "/"
        if path == "/TAP/sync":
            return tap.sync(params, self.engine)
        if path == "/SIA":
            return sia.query(params, self.engine)
        if path == "/TAP/capabilities":
            return Response(200, "text/xml", vosi.tap_capabilities(self.tap_url))
        if path == "/SIA/capabilities":
            return Response(200, "text/xml", vosi.sia_capabilities(self.sia_url))
        if path == "/TAP/tables":
            return Response(200, "text/xml", vosi.tables_document())
        if path in ("/TAP/availability", "/SIA/availability"):
            return Response(200, "text/xml", vosi.availability())
        if path.startswith("/TAP/async"):
            return tap.error("Asynchronous (UWS) queries are not supported; use /TAP/sync", 501)
        if path == "/":
            return text_response(200, self._index())
        return text_response(404, f"Not found: {path}")

    def _index(self):
        return (f"glue-spherex local archive (IRSA layout)\n"
                f"TAP  {self.tap_url}  (sync, capabilities, tables, availability)\n"
                f"SIA2 {self.sia_url}  (COLLECTION=spherex_qr2|spherex_qr2_deep)\n"
                f"data {self.url}{DATA_PREFIX}<key>  (?center=ra,dec&size=deg for cutouts)\n"
                f"S3   {self.url}{S3_PREFIX}/<key>  (anonymous HEAD, ranged GET, "
                f"ListObjectsV2; endpoint_url={self.url})\n"
                f"faults: {self.faults.describe()}\n")
