"""A small malicious "IRSA" on 127.0.0.1 for the fetcher's tests (issue #15.7).

Each path is one misbehaviour; ``/ok`` serves a valid cutout. Every loop is bounded in
bytes and seconds, and the server stops when the ``hostile_server`` block ends::

    with hostile_server(cutout) as srv:
        srv.url("/endless")
        srv.hits              # paths requested, in order

Paths: ``/ok``, ``/redirect-file`` (302 to ``file:///etc/passwd``), ``/redirect-other``
(302 to the same port on another loopback host, 127.0.0.2), ``/redirect-same`` (302 to ``/ok``),
``/redirect-loop``, ``/endless`` (a chunked body that never ends), ``/huge-length``
(announces 10^12 bytes), ``/bomb`` (a gzip body inflating to 1 GiB, IBE style),
``/bomb-encoding`` (the same as ``Content-Encoding: gzip``).
"""

import gzip
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SEND_LIMIT = 1 << 30            # no answer sends more than this
SEND_SECONDS = 30.0             # ... or for longer than this


def _bomb():
    member = gzip.compress(bytes(16 << 20), 9)      # 16 MiB of zeros in ~16 kB
    return member * 64                              # 1 GiB inflated, ~1 MB sent


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        path = self.path.split("?")[0]
        with srv.lock:
            srv.hits.append(path)
        port = srv.server_address[1]
        redirects = {"/redirect-file": "file:///etc/passwd",
                     "/redirect-other": f"http://127.0.0.2:{port}/ok",  # another host, on loopback
                     "/redirect-same": "/ok",
                     "/redirect-loop": "/redirect-loop"}
        if path in redirects:
            self.send_response(302)
            self.send_header("Location", redirects[path])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/ok":
            self._body(srv.cutout)
        elif path == "/bomb":
            self._body(srv.bomb)
        elif path == "/bomb-encoding":
            self._body(srv.bomb, [("Content-Encoding", "gzip")])
        elif path == "/huge-length":
            self.send_response(200)
            self.send_header("Content-Type", "application/fits")
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
            self._stream(lambda chunk: self.wfile.write(chunk))
        elif path == "/endless":
            self.send_response(200)
            self.send_header("Content-Type", "application/fits")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._stream(lambda chunk: self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk)))
        else:
            self._body(b"not here", status=404)

    def _body(self, data, headers=(), status=200):
        self.send_response(status)
        self.send_header("Content-Type", "application/fits")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, write):
        """Send FITS-looking blocks until the client goes, SEND_LIMIT or SEND_SECONDS."""
        chunk = (b"SIMPLE  =                    T" + b" " * 50) + b" " * (65536 - 80)
        sent, t0 = 0, time.monotonic()
        self.close_connection = True
        try:
            while sent < SEND_LIMIT and time.monotonic() - t0 < SEND_SECONDS:
                write(chunk)
                sent += len(chunk)
        except OSError:
            pass


@contextmanager
def hostile_server(cutout):
    """Serve the misbehaviours (``cutout``: the bytes of a valid cutout) on 127.0.0.1."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.cutout = cutout
    server.bomb = _bomb()
    server.hits = []
    server.lock = threading.Lock()
    server.url = lambda path: f"http://127.0.0.1:{server.server_address[1]}{path}"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                     daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
