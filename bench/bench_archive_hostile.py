"""Measure the local archive under the hostile requests of issue #15: the archive's peak
memory (VmHWM of its own process), its memory after each request, how long each refusal
takes, and how long a trivial query waits while a slow query runs.

Run: ``.venv/bin/python bench/bench_archive_hostile.py`` (about half a minute; prints the
figures). The archive runs in a subprocess (``python -m glue_spherex.local_archive``) so that its
memory is its own; every request goes to 127.0.0.1 and every loop is bounded.
"""

import re
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

QUERY_TIMEOUT = 5.0
BYPASS = ('SELECT s.name, s.sql FROM spherex.sqlite_master s WHERE 1 = (SELECT COUNT(*) FROM '
          '(WITH "spherex.sqlite_master" AS (SELECT 1 AS x) SELECT x FROM '
          '"spherex.sqlite_master") q)')
CROSS3 = "SELECT COUNT(*) FROM spherex.plane a, spherex.plane b, spherex.plane c"


def memory(pid):
    """(VmRSS, VmHWM) of ``pid`` in MB."""
    with open(f"/proc/{pid}/status") as f:
        text = f.read()
    rss, hwm = (int(re.search(rf"{k}:\s+(\d+) kB", text).group(1)) / 1024
                for k in ("VmRSS", "VmHWM"))
    return rss, hwm


def tap(url, query, **params):
    r = requests.post(url + "/TAP/sync", timeout=120, data={
        "REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query, **params})
    return r.status_code


def raw(port, head, body_bytes=0, timeout=30.0):
    """Send ``head`` then up to ``body_bytes`` of body; the answer's status (None if none)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        chunk = b"x" * (1 << 20)
        sent = 0
        try:
            while sent < body_bytes:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass                           # the archive closed: it refused the body
        try:
            answer = sock.recv(4096)
        except OSError:
            return None
    m = re.match(rb"HTTP/1\.\d (\d+)", answer)
    return int(m.group(1)) if m else None


def main():
    proc = subprocess.Popen([sys.executable, "-m", "glue_spherex.local_archive", "--query-timeout",
                             str(QUERY_TIMEOUT)], stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        port = int(url.rsplit(":", 1)[1])
        while "ready" not in proc.stdout.readline():
            pass
        spec_url = requests.post(url + "/TAP/sync", timeout=60, data={
            "REQUEST": "doQuery", "LANG": "ADQL", "FORMAT": "csv",
            "QUERY": "SELECT TOP 1 uri FROM spherex.artifact"}).text.split()[1]
        frame = f"{url}/{spec_url.lstrip('/')}"
        tap(url, "SELECT TOP 10 * FROM spherex.obscore")
        rss0, _ = memory(proc.pid)
        print(f"archive ready: RSS {rss0:.0f} MB")
        print(f"{'request':58s} {'status':>6s} {'s':>6s} {'RSS MB':>7s}")

        def run(name, fn):
            t0 = time.perf_counter()
            status = fn()
            dt = time.perf_counter() - t0
            print(f"{name:58s} {status!s:>6s} {dt:6.2f} {memory(proc.pid)[0]:7.0f}")

        run("SELECT randomblob(300000000)", lambda: tap(url, "SELECT randomblob(300000000)"))
        run("SELECT zeroblob(300000000)", lambda: tap(url, "SELECT zeroblob(300000000)"))
        run("recursive CTE doubling a string 40 times", lambda: tap(
            url, "WITH RECURSIVE r(n, s) AS (SELECT 1, 'x' UNION ALL SELECT n + 1, s || s "
                 "FROM r WHERE n < 40) SELECT n, s FROM r"))
        run("SELECT * FROM obscore x obscore (62 M rows), MAXREC 2e6", lambda: tap(
            url, "SELECT * FROM spherex.obscore a, spherex.obscore b", MAXREC="2000000"))
        run("CTE named like a table (sqlite_master bypass)", lambda: tap(url, BYPASS))
        run("5,000 nested parentheses", lambda: tap(
            url, "SELECT " + "(" * 5000 + "1" + ")" * 5000 + " AS x FROM spherex.plane"))
        run("300 nested subqueries", lambda: tap(
            url, "SELECT planeid FROM spherex.plane WHERE planeid IN (" * 300 + "SELECT 1"
                 + ")" * 300))
        run("POST body of 1.5 GB (Content-Length 1.5e9)", lambda: raw(
            port, b"POST /TAP/sync HTTP/1.1\r\nHost: x\r\nContent-Length: 1500000000\r\n"
                  b"Content-Type: application/x-www-form-urlencoded\r\n\r\n", 1_500_000_000))
        run("Content-Length: abc", lambda: raw(
            port, b"POST /TAP/sync HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"))
        for size in ("1e9", "1e400"):
            run(f"cutout size={size}", lambda size=size: requests.get(
                frame, params={"center": "100,100px", "size": size}, timeout=60).status_code)
        print(f"peak RSS (VmHWM) over the hostile requests: {memory(proc.pid)[1]:.0f} MB")
        with ThreadPoolExecutor(3) as pool:
            run("3 whole-detector cutouts at once (size=2040px, allowed)", lambda: max(
                pool.map(lambda _: requests.get(frame, params={
                    "center": "1020,1020px", "size": "2040px"}, timeout=120).status_code,
                    range(3))))
        slow = {}
        thread = threading.Thread(target=lambda: slow.setdefault("status", tap(url, CROSS3)))
        t_slow = time.perf_counter()
        thread.start()
        time.sleep(0.5)
        t0 = time.perf_counter()
        quick = tap(url, "SELECT TOP 1 planeid FROM spherex.plane")
        wait = time.perf_counter() - t0
        thread.join()
        slow_s = time.perf_counter() - t_slow
        print(f"{'three-way cross join (stopped at the query time limit)':58s} "
              f"{slow['status']!s:>6s} {slow_s:6.2f} {memory(proc.pid)[0]:7.0f}")
        print(f"{'  a trivial query meanwhile':58s} {quick!s:>6s} {wait:6.2f}")
        t0 = time.perf_counter()
        ok = tap(url, "SELECT TOP 1 planeid FROM spherex.plane")
        idle = time.perf_counter() - t0
        print(f"trivial query while a slow one runs / on an idle archive: {wait / idle:.1f}x "
              f"({wait * 1000:.0f} ms / {idle * 1000:.0f} ms, status {ok})")
        rss, hwm = memory(proc.pid)
        print(f"archive peak RSS (VmHWM) over the run: {hwm:.0f} MB (ready: {rss0:.0f} MB, "
              f"now: {rss:.0f} MB)")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
