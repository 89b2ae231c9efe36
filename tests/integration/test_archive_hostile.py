"""The local archive against hostile requests (issue #15.6): each is refused with HTTP 4xx and
IRSA's error document, promptly, and the archive keeps serving everyone else."""

import re
import socket
import threading
import time

import pytest
import requests

from glue_spherex.local_archive import LocalArchive
from glue_spherex.local_archive.server import MAX_BODY_BYTES

STATUS = re.compile(rb'<INFO name="QUERY_STATUS" value="ERROR">(.*?)</INFO>', re.S)


def tap(arch, query, **params):
    return requests.post(arch.tap_url + "/sync", timeout=60, data={
        "REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query, **params})


def error_text(response_body):
    """The message of IRSA's error document; fails the test if the body is not one."""
    m = STATUS.search(response_body)
    assert m is not None, response_body[:300]
    assert b"Traceback" not in response_body
    return m.group(1).decode()


def raw(arch, data, timeout=10.0):
    """Send raw bytes, return (status, body) of the answer (read until close/Content-Length)."""
    with socket.create_connection(("127.0.0.1", arch.port), timeout=timeout) as sock:
        sock.sendall(data)
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            head, sep, body = buf.partition(b"\r\n\r\n")
            if sep:
                m = re.search(rb"(?i)content-length: *(\d+)", head)
                if m and len(body) >= int(m.group(1)):
                    break
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1."), buf[:200]
    return int(head.split()[1]), body


def test_a_cte_named_like_a_table_does_not_open_sqlite_master(archive):
    for query in [
        'SELECT s.name, s.sql FROM spherex.sqlite_master s WHERE 1 = (SELECT COUNT(*) FROM '
        '(WITH "spherex.sqlite_master" AS (SELECT 1 AS x) SELECT x FROM '
        '"spherex.sqlite_master") q)',
        "WITH sqlite_master AS (SELECT 1 AS x) SELECT * FROM spherex.sqlite_master",
        "WITH p AS (SELECT planeid FROM spherex.plane) SELECT * FROM p, sqlite_master",
        "SELECT * FROM pragma_table_info('plane')",
    ]:
        r = tap(archive, query)
        assert r.status_code == 400, query
        assert "sqlite_master" in error_text(r.content) or "does not exist" in r.text
        assert "CREATE TABLE" not in r.text
    # a real CTE still works
    r = tap(archive, "WITH p AS (SELECT planeid FROM spherex.plane) SELECT COUNT(*) AS n FROM p",
            FORMAT="csv")
    assert r.status_code == 200 and int(r.text.split()[1]) > 1000


@pytest.mark.parametrize("call", ["randomblob(300000000)", "zeroblob(300000000)",
                                  "printf('%.*c', 300000000, 'x')", "load_extension('x')",
                                  "sqlite_version()", "readfile('/etc/passwd')"])
def test_functions_outside_the_allow_list_are_refused(archive, call):
    t0 = time.monotonic()
    r = tap(archive, f"SELECT {call} AS v FROM spherex.plane")
    assert time.monotonic() - t0 < 5
    assert r.status_code == 400 and len(r.content) < 2000
    message = error_text(r.content)
    assert call.split("(")[0].upper() in message.upper()


@pytest.mark.slow
def test_values_and_results_are_bounded(archive):
    r = tap(archive, "WITH RECURSIVE r(n, s) AS (SELECT 1, 'x' UNION ALL "
                     "SELECT n + 1, s || s FROM r WHERE n < 40) SELECT n, s FROM r")
    assert r.status_code == 400 and "larger than the 1,000,000 bytes" in error_text(r.content)
    r = tap(archive, "SELECT * FROM spherex.obscore a, spherex.obscore b", MAXREC="2000000")
    assert r.status_code == 400 and "The result is larger than" in error_text(r.content)


@pytest.mark.parametrize("query", [
    "SELECT " + "(" * 5000 + "1" + ")" * 5000 + " AS x FROM spherex.plane",
    "SELECT planeid FROM spherex.plane WHERE planeid IN (SELECT planeid FROM spherex.plane "
    "WHERE planeid IN (" * 150 + "SELECT 1" + "))" * 150,
    "SELECT planeid FROM spherex.plane WHERE " + " OR ".join(f"planeid = {i}"
                                                              for i in range(6000)),
    "SELECT planeid FROM spherex.plane WHERE planeid IN (" + "1," * 60_000 + "1)",
])
def test_deep_and_huge_queries_are_400_not_500(archive, query):
    t0 = time.monotonic()
    r = tap(archive, query)
    assert time.monotonic() - t0 < 5
    assert r.status_code == 400
    assert re.search(r"levels of parentheses|terms|characters long", error_text(r.content))


@pytest.mark.slow
def test_a_slow_query_does_not_block_the_others():
    with LocalArchive(query_timeout=4.0) as arch:
        arch.wait_ready()
        slow = {}

        def run_slow():
            slow["response"] = tap(arch, "SELECT COUNT(*) AS n FROM spherex.plane a, "
                                         "spherex.plane b, spherex.plane c")

        thread = threading.Thread(target=run_slow)
        thread.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        r = tap(arch, "SELECT TOP 1 planeid FROM spherex.plane", FORMAT="csv")
        quick = time.monotonic() - t0
        thread.join(30)
        assert r.status_code == 200 and quick < 1.5, quick
        assert slow["response"].status_code == 400
        assert "4 s time limit" in error_text(slow["response"].content)


def test_request_bodies_are_bounded(archive):
    t0 = time.monotonic()
    status, body = raw(archive, b"POST /TAP/sync HTTP/1.1\r\nHost: x\r\n"
                                b"Content-Type: application/x-www-form-urlencoded\r\n"
                                b"Content-Length: 1500000000\r\n\r\nQUERY=" + b"x" * 100_000)
    assert status == 413 and time.monotonic() - t0 < 5
    assert f"{MAX_BODY_BYTES:,} bytes" in error_text(body)
    for header, code, says in [(b"Content-Length: abc", 400, "Content-Length"),
                               (b"Content-Length: -5", 400, "Content-Length"),
                               (b"Transfer-Encoding: chunked", 411, "Content-Length")]:
        status, body = raw(archive, b"POST /TAP/sync HTTP/1.1\r\nHost: x\r\n" + header
                           + b"\r\n\r\n5\r\nQUERY\r\n0\r\n\r\n")
        assert status == code and says in error_text(body), header
    status, body = raw(archive, b"POST /TAP/sync HTTP/1.1\r\nHost: x\r\nContent-Length: 10"
                                b"\r\n\r\nQUERY=SELECT")  # connection shut after 12 bytes: fine
    assert status == 400
    query = "&".join(f"p{i}=1" for i in range(500))
    r = requests.get(archive.tap_url + "/sync?" + query, timeout=10)
    assert r.status_code == 400 and "parameters" in error_text(r.content)


def test_malformed_request_lines_and_headers(archive):
    for request, code in [(b"GARBAGE\r\n\r\n", 400),
                          (b"GET /TAP/sync HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", 431),
                          (b"GET /TAP/sync HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 200
                           + b"\r\n", 431),
                          (b"BREW /TAP/sync HTTP/1.1\r\nHost: x\r\n\r\n", 501)]:
        status, body = raw(archive, request)
        assert status == code, request[:40]
        error_text(body)


@pytest.mark.parametrize("size", ["1e9", "1e400", "2041px", "0.1,1e999", "inf"])
def test_cutout_sizes_are_bounded(archive, size):
    spec = archive.catalog.specs[0]
    t0 = time.monotonic()
    r = requests.get(archive.file_url(spec), params={"center": "0,0px", "size": size},
                     timeout=30)
    assert time.monotonic() - t0 < 5
    assert r.status_code == 400
    assert error_text(r.content).startswith("UsageFault: BAD_REQUEST: ")


def listening_addresses(port):
    """Local addresses of the sockets listening on ``port`` (from /proc/net/tcp)."""
    found = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:
                found.add(socket.inet_ntoa(bytes.fromhex(addr)[::-1]))
    return found


def test_binds_to_loopback_unless_told(archive):
    assert listening_addresses(archive.port) == {"127.0.0.1"}
    assert archive.url.startswith("http://127.0.0.1:")


def test_the_archive_still_serves_after_all_that(archive):
    r = tap(archive, "SELECT TOP 3 planeid FROM spherex.plane", FORMAT="csv")
    assert r.status_code == 200 and len(r.text.split()) == 4


@pytest.mark.parametrize("query", ["max-keys=-5", "max-keys=0", "max-keys=1e400",
                                   "max-keys=" + "9" * 500, "prefix=%00"])
def test_s3_listing_parameters_never_500(archive, query):
    r = requests.get(f"{archive.url}/nasa-irsa-spherex?list-type=2&{query}", timeout=30)
    assert r.status_code in (200, 400), r.text[:300]
