"""A tiny hostile "IRSA" on loopback: its /TAP/sync answers whatever VOTable a test gives it.

``serve_votable(body)`` is a context manager yielding the base URL; ``votable(fields, rows)``
writes a TABLEDATA VOTable with the given ``(name, datatype)`` fields and rows of cell texts
(XML-escaped here, so a test can put anything into a cell).
"""

import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

TAP_FIELDS = (("uri", "char"), ("obs_publisher_did", "char"), ("energy_bandpassname", "char"),
              ("collection", "char"), ("time_bounds_lower", "double"),
              ("time_bounds_upper", "double"), ("energy_bounds_lower", "double"),
              ("energy_bounds_upper", "double"))

GOOD_ROW = ("ibe/data/spherex/qr2/level2/2025W20_1A/l2b-v21-2025-140/2/"
            "level2_2025W20_1A_0001_1D2_spx_l2b-v21-2025-140.fits",
            "ivo://irsa.ipac/spherex_qr2?2025W20_1A_0001_1/D2", "SPHEREx-D2", "spherex_qr2",
            "60810.1", "60810.2", "1.1e-06", "1.6e-06")


def votable(fields, rows):
    out = ['<?xml version="1.0" encoding="utf-8"?>\n<VOTABLE version="1.3" '
           'xmlns="http://www.ivoa.net/xml/VOTable/v1.3">\n<RESOURCE type="results">\n'
           '<INFO name="QUERY_STATUS" value="OK"/>\n<TABLE>\n']
    for name, datatype in fields:
        size = ' arraysize="*"' if datatype == "char" else ""
        out.append(f'<FIELD name="{name}" datatype="{datatype}"{size}/>\n')
    out.append("<DATA><TABLEDATA>\n")
    for row in rows:
        out.append("<TR>" + "".join(f"<TD>{escape(str(v))}</TD>" for v in row) + "</TR>\n")
    out.append("</TABLEDATA></DATA>\n</TABLE>\n</RESOURCE>\n</VOTABLE>\n")
    return "".join(out).encode("utf-8")


@contextlib.contextmanager
def serve_votable(body):
    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-votable+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
