"""A stand-in for CDS Sesame on 127.0.0.1: astropy's name resolver is pointed at it and it
answers with Sesame's plain-text documents (a known name, or "Nothing found")."""

import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from astropy.coordinates.name_resolve import sesame_url

NOT_FOUND = """# {name}	#Q8371914
#! *** Nothing found ***

#====Done (2026-Sep-28,05:15:40z)====
"""


@contextmanager
def sesame_standin(answers):
    """Serve ``answers`` (object name -> Sesame document) while the block runs."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            name = self.path.rsplit("?", 1)[-1]
            body = answers.get(name, NOT_FOUND.format(name=name)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sesame_url.set([f"http://127.0.0.1:{server.server_address[1]}/sesame/"]):
            yield
    finally:
        server.shutdown()
        server.server_close()
