"""Measure ``SpherexClass.query_region`` on TAP answers of 10^4 .. 10^6 rows (issue #15:
building the result table with ``Table.add_row`` was quadratic -- 10,000 rows took 29.5 s).

A loopback TAP service answers every query with the same VOTable of N rows (a third
of them pipeline-7 reprocessings of another third, so the newest-version rule has work to do).
For each N the script prints the whole ``query_region`` call, the part astropy needs to parse
the VOTable alone (same bytes, same process, the cyclic garbage collector paused as
``query_region`` pauses it), and what the client does on top (validation,
release choice, dedupe, sorting, the table), with the ratio between sizes; linear time means
the "on top" column grows 10x per 10x rows.

Run: ``python bench/bench_query_table.py [--max 1000000]`` (about a minute at 10^6).
"""

import argparse
import gc
import io
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from astropy.io.votable import from_table, parse
from astropy.table import Table

from glue_spherex.irsa.core import SpherexClass


def answer(n):
    """A VOTable with the columns of the client's TAP query and n rows."""
    i = np.arange(n)
    j = i - (i % 3 == 2)              # row 3k+2 is the reprocessing of row 3k+1
    obs = np.char.add("2025W20_1A_", np.char.zfill((j // 6).astype(str), 6))
    det = 1 + j % 6
    tag = np.where(i % 3 == 2, "l2b-v26-2026-196", "l2b-v21-2025-140")
    uri = [f"ibe/data/spherex/qr2/level2/2025W20_1A/{t}/{d}/level2_{o}D{d}_spx_{t}.fits"
           for o, d, t in zip(obs.tolist(), det.tolist(), tag.tolist())]
    did = [f"ivo://irsa.ipac/spherex_qr2?{o}/D{d}" for o, d in zip(obs.tolist(), det.tolist())]
    t0 = 60800.0 + i * 1e-3
    table = Table({"uri": uri, "obs_publisher_did": did,
                   "energy_bandpassname": [f"SPHEREx-D{d}" for d in det.tolist()],
                   "collection": np.full(n, "spherex_qr2"),
                   "time_bounds_lower": t0, "time_bounds_upper": t0 + 0.0013,
                   "energy_bounds_lower": 1e-6 + det * 1e-7, "energy_bounds_upper": 2e-6 + det * 1e-7})
    vot = from_table(table)                      # TABLEDATA, as IRSA answers
    buf = io.BytesIO()
    vot.to_xml(buf)
    return buf.getvalue()


def serve(body):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-votable+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max", type=int, default=1_000_000)
    args = ap.parse_args()
    sizes = [n for n in (10_000, 100_000, 1_000_000) if n <= args.max]
    print(f"{'rows':>9} {'query_region':>13} {'VOTable parse':>14} {'client on top':>14} "
          f"{'rows kept':>10}")
    previous = None
    for n in sizes:
        body = answer(n)
        server = serve(body)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            t0 = time.perf_counter()
            table = SpherexClass(url, timeout=600).query_region((210.8, 54.3), release="all")
            total = time.perf_counter() - t0
        finally:
            server.shutdown()
            server.server_close()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gc.disable()                  # as query_region parses it
            t0 = time.perf_counter()
            parse(io.BytesIO(body)).get_first_table().to_table()
            t_parse = time.perf_counter() - t0
            gc.enable()
        on_top = total - t_parse
        ratio = "" if previous is None else f"  x{on_top / previous:.1f} for x10 rows"
        print(f"{n:>9} {total:>12.2f}s {t_parse:>13.2f}s {on_top:>13.2f}s {len(table):>10}{ratio}")
        previous = on_top


if __name__ == "__main__":
    main()
