"""The local IRSA-compatible archive: a threaded HTTP/1.1 server on 127.0.0.1.

Routes mirror IRSA's layout -- ``/TAP`` (:mod:`.tap`), ``/SIA`` (:mod:`.sia`),
``/ibe/data/spherex/<key>`` (files and cutouts, :mod:`.files`) and the S3 bucket
``/nasa-irsa-spherex/<key>`` (:mod:`.s3`) -- so a client given ``arch.url`` instead of IRSA's
works unchanged. Each connection has its own daemon thread (slow answers overlap), faults
(:mod:`.faults`) are drawn per request from one seeded stream, and every request is recorded
in :attr:`LocalArchive.log`. Connections are accepted as soon as :meth:`LocalArchive.start`
returns; the tables are built in the background. It refuses what IRSA refuses with IRSA's
error document, never a Python exception, and bounds body size (TAP uploads have their
own limit), time and concurrent rendering. Endpoints and limits: ``docs/archive.rst``.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import socket
import struct
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from ..errors import SpherexInputError, SpherexServiceError
from ..irsa.cutout_params import parse_cutout
from . import s3, vosi
from .catalog import build_catalog, default_catalog
from .faults import FaultConfig, is_body_fault, new_rng
from .files import serve_file
from .response import IBE_DESCRIPTION, FileBody, Response, error_document, text_response
from .votable import SIA_DESCRIPTION, TAP_DESCRIPTION

__all__ = ["LocalArchive", "LogRecord", "MAX_BODY_BYTES", "MAX_UPLOAD_BYTES", "BODY_SECONDS",
           "RENDER_SLOTS", "BIG_CUTOUT_PX"]

DATA_PREFIX = "/ibe/data/spherex/"
S3_PREFIX = f"/{s3.BUCKET}"
MAX_BODY_BYTES = 1_000_000      # a POSTed form: an ADQL query of up to 100,000 characters
MAX_UPLOAD_BYTES = 50_000_000   # a multipart/form-data POST carrying TAP_UPLOAD tables
BODY_SECONDS = 30.0             # time allowed to send that body
MAX_FIELDS = 100                # parameters in one request
RENDER_SLOTS = 4                # cutouts rendered at once
BIG_CUTOUT_PX = 1024 * 1024     # larger ones (up to a whole detector, ~72 MB): one at a time
_DRAIN_BYTES = 8_000_000        # unread body discarded before closing (so the answer arrives)


class _BadRequest(Exception):
    """A request refused before it reaches a route: HTTP ``status`` with ``message``."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


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


def refusal(kind, status, message):
    """IRSA's error document for a request on route ``kind`` ('tap', 'sia', 'data', ...)."""
    description = {"tap": TAP_DESCRIPTION, "sia": SIA_DESCRIPTION}.get(kind, IBE_DESCRIPTION)
    return error_document(status, message, description)


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


class _Server6(_Server):
    address_family = socket.AF_INET6


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

    def send_error(self, code, message=None, explain=None):
        """Malformed request lines and headers (http.server's own checks): IRSA's error
        document instead of http.server's HTML page; the connection is closed after it."""
        self.close_connection = True
        self.request_version = "HTTP/1.1"   # no HTTP/0.9 answers (they have no status line)
        text = message or self.responses.get(code, ("Bad request",))[0]
        response = refusal(route_kind(getattr(self, "path", "") or ""), code,
                           f"UsageFault: BAD_REQUEST: {text}")
        with contextlib.suppress(ConnectionError, TimeoutError, OSError):
            self.send_response(code, message)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(response.length))
            self.send_header("Connection", "close")
            self.end_headers()
            if getattr(self, "command", None) != "HEAD" and code >= 200 and code not in (204, 304):
                self.wfile.write(response.body)

    # ------------------------------------------------------------------------------------------

    def _serve(self, method):
        started = time.time()
        archive = self.server.archive
        try:
            url = urlsplit(self.path)
        except ValueError:
            url = urlsplit("/")
            bad = _BadRequest(400, f"the request target {self.path[:80]!r} is malformed")
        else:
            bad = None
        path = unquote(url.path)
        kind = route_kind(path)
        try:
            if bad is not None:
                raise bad
            form = self._read_form() if method == "POST" else self._no_body()
        except _BadRequest as e:
            self.close_connection = True
            response = refusal(kind, e.status, f"UsageFault: BAD_REQUEST: {e}")
            record = LogRecord(started, method, path, url.query, response.status, 0, None)
            self._send(response, method, None, None, 0.0, record)
            return
        faults = archive.faults
        delay, fault = archive._draw(faults, kind)
        if delay > 0:
            time.sleep(delay)
        if fault in _FAULT_PAGES:
            response = fault_response(fault, faults)
        else:
            try:
                response = archive._dispatch(method, path, url.query, form, self.headers)
            except _BadRequest as e:
                response = refusal(kind, e.status, f"UsageFault: BAD_REQUEST: {e}")
            except Exception:          # a bug: logged on stderr, the client gets one line
                traceback.print_exc(file=sys.stderr)
                response = refusal(kind, 500, "Internal error of the local archive (its "
                                              "console shows the details)")
        if fault is not None and is_body_fault(fault) and method == "HEAD" and fault != "reset":
            fault = None               # nothing to truncate or stall in a HEAD answer
        bandwidth = faults.bandwidth if faults.applies_to(kind) else None
        record = LogRecord(started, method, path, url.query, response.status, 0, fault)
        self._send(response, method, fault, bandwidth, faults.stall_seconds, record,
                   faults.cut_at)

    def _content_length(self):
        """The declared body length (0 if none); _BadRequest if malformed or chunked."""
        if self.headers.get("Transfer-Encoding"):
            raise _BadRequest(411, "a request body must be sent with Content-Length "
                                   "(Transfer-Encoding is not accepted)")
        values = self.headers.get_all("Content-Length") or []
        if not values:
            return 0
        text = values[0].strip()
        if len(set(v.strip() for v in values)) > 1 or not text.isdigit() or len(text) > 18:
            raise _BadRequest(400, f"Content-Length {values[0][:40]!r} is not a byte count")
        return int(text)

    def _read_form(self):
        length = self._content_length()
        ctype = self.headers.get("Content-Type", "")
        multipart = ctype.lower().startswith("multipart/form-data")
        limit = MAX_UPLOAD_BYTES if multipart else MAX_BODY_BYTES
        if length > limit:
            self._drain(length)
            what = "TAP upload (multipart) request" if multipart else "request body"
            raise _BadRequest(413, f"the {what} of {length:,} bytes is larger than the "
                                   f"{limit:,} bytes this service accepts")
        data = self._read_body(length)
        if multipart:
            return _multipart(ctype, data)
        if ctype.lower().startswith("multipart/"):
            raise _BadRequest(415, f"Content-Type {ctype[:60]!r} is not accepted; send a form "
                                   "(application/x-www-form-urlencoded or multipart/form-data)")
        return data.decode("utf-8", "replace")

    def _no_body(self):
        """GET and HEAD: a body, if any, is discarded (it would be read as the next request)."""
        length = self._content_length()
        if length:
            self.close_connection = True
            self._drain(length)
        return ""

    def _read_body(self, length):
        """``length`` bytes of body, within BODY_SECONDS in all (408 otherwise)."""
        deadline = time.monotonic() + BODY_SECONDS
        buf = bytearray()
        old = self.connection.gettimeout()
        try:
            while len(buf) < length:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _BadRequest(408, f"the request body did not arrive within "
                                           f"{BODY_SECONDS:g} s")
                self.connection.settimeout(min(left, old or left))
                try:
                    chunk = self.rfile.read1(min(65536, length - len(buf)))
                except TimeoutError:
                    continue
                if not chunk:
                    raise _BadRequest(400, f"the request body ended after {len(buf)} of "
                                           f"{length} bytes")
                buf += chunk
        finally:
            self.connection.settimeout(old)
        return bytes(buf)

    def _drain(self, length):
        """Read and drop up to _DRAIN_BYTES of an unwanted body (briefly), so that closing
        the connection does not reset it before the client has read the answer."""
        self.close_connection = True
        old = self.connection.gettimeout()
        deadline = time.monotonic() + 2.0
        left = min(length, _DRAIN_BYTES)
        try:
            self.connection.settimeout(0.5)
            while left > 0 and time.monotonic() < deadline:
                chunk = self.rfile.read1(min(65536, left))
                if not chunk:
                    break
                left -= len(chunk)
        except (TimeoutError, OSError):
            pass
        finally:
            with contextlib.suppress(OSError):
                self.connection.settimeout(old)

    def _send(self, response, method, fault, bandwidth, stall_seconds, record, cut_at=0.5):
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
            cut = int(total * cut_at) if fault in ("reset", "truncate", "stall") else total
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


def _is_big(params):
    """True for a cutout of more than BIG_CUTOUT_PX pixels (rendered one at a time)."""
    try:
        cut = parse_cutout(params.get("center"), params.get("size"))
    except SpherexInputError:
        return False                   # refused when it is served
    return cut.width_px * cut.height_px > BIG_CUTOUT_PX


class _Multipart(NamedTuple):
    """A multipart/form-data body: its text fields and the raw bytes of every part."""

    fields: list            # (name, value) of the parts without a filename
    parts: dict             # name -> bytes, every part (``UPLOAD=t,param:NAME`` names one)


def _multipart(ctype, data):
    """Parse a multipart/form-data body (the form a TAP client sends with uploads)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + ctype.encode("latin-1", "replace") + b"\r\n\r\n" + data)
    if not message.is_multipart():
        raise _BadRequest(400, "the multipart/form-data body could not be parsed (boundary?)")
    fields, parts = [], {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            raise _BadRequest(400, "a multipart/form-data part has no name")
        if len(parts) >= MAX_FIELDS:
            raise _BadRequest(400, f"more than {MAX_FIELDS} parameters in one request")
        payload = part.get_payload(decode=True) or b""
        parts[name] = payload
        if part.get_filename() is None:
            fields.append((name, payload.decode("utf-8", "replace")))
    return _Multipart(fields, parts)


def _parse_qs(text):
    try:
        return parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        raise _BadRequest(400, f"more than {MAX_FIELDS} parameters in one request") from None


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
    cutout_flags : {'compressed', 'plain'}
        FLAGS of pipeline-7 cutouts: RICE_1-compressed over the window (default) or plain int32.
    gzip_cutouts : bool
        Server-wide default of the cutout ``gzip`` parameter (False, see :mod:`.files`).
    specs : list of FrameSpec, optional
        Frames to serve instead of ``synthetic.observation_plan()``.
    host : str
        Address to bind; ``127.0.0.1`` (this machine only) unless told otherwise.
    query_timeout : float
        Seconds one TAP or SIA query may run before it is stopped.
    """

    def __init__(self, port=0, faults=None, seed=0, gzip_cutouts=False, specs=None,
                 host="127.0.0.1", query_timeout=30.0, cutout_flags="compressed"):
        if cutout_flags not in ("compressed", "plain"):
            raise SpherexInputError(f"cutout_flags={cutout_flags!r}: give compressed or plain")
        self.cutout_flags = cutout_flags
        self._port = port
        self.host = host
        self.query_timeout = query_timeout
        self._render_slots = threading.BoundedSemaphore(RENDER_SLOTS)
        self._big_render = threading.BoundedSemaphore(1)
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
        server_class = _Server6 if ":" in self.host else _Server
        self._server = server_class((self.host, self._port), _Handler)
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
            self._engine = AdqlEngine(catalog.table_rows(self.url), timeout=self.query_timeout)
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
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "127.0.0.1") else self.host
        if ":" in host:
            host = f"[{host}]"         # an IPv6 address
        return f"http://{host}:{self.port}"

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

        parts = {}
        if isinstance(form, _Multipart):
            parts = form.parts
            form = urlencode(form.fields)
        if path == S3_PREFIX or path.startswith(S3_PREFIX + "/"):
            return s3.dispatch(method, path, query, headers, self.catalog)
        if path.startswith(DATA_PREFIX):
            if method not in ("GET", "HEAD"):
                return text_response(405, f"{method} is not allowed on files")
            spec = self.catalog.by_key.get(path[len(DATA_PREFIX):])
            if spec is None:
                return text_response(404, f"Not found: {path}")
            params = {k.lower(): v[0] for k, v in _parse_qs(query).items()}
            args = (spec, params, headers.get("Range"), self.gzip_cutouts, self.cutout_flags,
                    method)
            if "center" not in params and "size" not in params:
                return serve_file(*args)
            big = self._big_render if _is_big(params) else contextlib.nullcontext()
            with big, self._render_slots:  # bounds the memory of cutouts rendered at once
                return serve_file(*args)
        params = {}
        for source in (query, form):
            for k, values in _parse_qs(source).items():
                params.setdefault(k.upper(), []).extend(values)
        path = path.rstrip("/") or "/"
        if path == "/TAP/sync":
            return tap.sync(params, self.engine, parts)
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
                f"SIA2 {self.sia_url}  (COLLECTION=spherex_qr2|spherex_qr2_deep|spherex_qr3|spherex_qr3_deep)\n"
                f"data {self.url}{DATA_PREFIX}<key>  (?center=ra,dec&size=deg for cutouts)\n"
                f"S3   {self.url}{S3_PREFIX}/<key>  (anonymous HEAD, ranged GET, "
                f"ListObjectsV2; endpoint_url={self.url})\n"
                f"faults: {self.faults.describe()}\n")
