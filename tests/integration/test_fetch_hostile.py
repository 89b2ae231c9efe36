"""The fetcher against a hostile or broken archive (issue #15.7), with the small malicious
server of ``hostile_server`` on 127.0.0.1: refused redirects and hosts, endless and huge
bodies, gzip bombs, and failure reasons that keep their root cause."""

import socket
import time
import tracemalloc

import pytest
import requests
from astropy.table import Table
from hostile_server import hostile_server

from glue_spherex import SpherexClass
from glue_spherex.download.fetcher import MAX_BODY_BYTES, RetryPolicy, fetch_cutouts, plausible_size

M101 = (210.80227, 54.34895)
FAST = RetryPolicy(max_retries=3, backoff_base=0.01, backoff_cap=0.05)


@pytest.fixture(scope="module")
def cutout(archive):
    table = SpherexClass(archive_url=archive.url).query_region(
        f"{M101[0]} {M101[1]}", size="20px", bandpass="D2")
    r = requests.get(table["cutout_url"][0], timeout=30)
    assert r.status_code == 200
    return r.content


@pytest.fixture
def server(cutout):
    with hostile_server(cutout) as srv:
        yield srv


def fetch(items, **kw):
    return list(fetch_cutouts(items, workers=1, retry=FAST, timeout=(5, 10), **kw))


def measured(fn):
    """(result of fn(), seconds, peak bytes allocated by Python while it ran)."""
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        out = fn()
        return out, time.monotonic() - t0, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_redirect_to_file_is_final_not_retried(server):
    [r] = fetch([server.url("/redirect-file")])
    assert r.status == "failed" and r.attempts == 1
    assert "redirect refused" in r.reason and "file:///etc/passwd" in r.reason
    assert server.hits == ["/redirect-file"]


def test_redirects_stay_on_the_archive_host(server, cutout):
    other, same, loop = fetch([server.url("/redirect-other"), server.url("/redirect-same"),
                               server.url("/redirect-loop")])
    assert other.status == "failed" and other.attempts == 1
    assert "127.0.0.2" in other.reason and "not on the archive's host" in other.reason
    assert same.ok and same.data == cutout
    assert loop.status == "failed" and loop.attempts == 1 and "more than 5 redirects" in loop.reason
    assert server.hits.count("/ok") == 1            # only the same-host redirect was followed


def test_query_rows_on_other_hosts_are_recorded_failures(server, cutout, archive):
    port = server.server_address[1]
    table = Table({"cutout_index": [1, 2, 3, 4, 5],
                   "cutout_url": [server.url("/ok"), f"http://127.0.0.2:{port}/ok",
                                  "file:///etc/passwd", server.url("/ok?x=" + "a" * 9000),
                                  server.url("/ok?x=\x1b[31m")]})
    table.meta["archive_url"] = server.url("")
    results = {r.cutout_index: r for r in fetch(table)}
    assert results[1].ok and results[1].data == cutout
    assert all(results[i].status == "failed" and results[i].attempts == 0 for i in (2, 3, 4, 5))
    assert "not on the archive's host" in results[2].reason
    assert "not an http(s) URL" in results[3].reason
    assert "characters long" in results[4].reason
    assert "control characters" in results[5].reason
    assert server.hits == ["/ok"]                   # nothing was asked of another host
    # a query table says which archive answered it
    queried = SpherexClass(archive_url=archive.url).query_region(
        f"{M101[0]} {M101[1]}", size="20px", bandpass="D2")
    assert queried.meta["archive_url"] == archive.url


@pytest.mark.parametrize("path, says", [("/endless", "larger than this cutout can be"),
                                        ("/huge-length", "announced a body of 1,000,000,000,000"),
                                        ("/bomb", "inflates to more than"),
                                        ("/bomb-encoding", "larger than this cutout can be")])
@pytest.mark.parametrize("query", ["", "?center=210.8,54.3&size=20px"])
def test_endless_huge_and_bomb_bodies_are_refused_in_bounded_memory(server, path, says, query):
    limit = plausible_size(server.url(path + query))
    assert limit == (MAX_BODY_BYTES if not query else 24_012_800)
    [r], seconds, peak = measured(lambda: fetch([server.url(path + query)]))
    assert r.status == "failed" and r.attempts == 1, r.reason
    assert says in r.reason and f"{limit:,}" in r.reason
    assert seconds < 20
    assert peak < 2.5 * limit, peak


def test_failure_reasons_keep_the_root_cause():
    with socket.socket() as s:            # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = (f"http://127.0.0.1:{port}/ibe/data/spherex/qr2/level2/2025W23_2A/l2b-v21-2025-164/2/"
           "level2_2025W23_2A_0182_1D2_spx_l2b-v21-2025-164.fits?center=210.8,54.3&size=0.1")
    [r] = fetch([url], max_retries=1)
    assert r.status == "failed" and r.attempts == 2
    assert "Connection refused" in r.reason and f"port={port}" in r.reason
    assert "object at 0x" not in r.reason


def test_error_documents_are_reported_by_their_message(archive):
    spec = archive.catalog.specs[0]
    [r] = fetch([f"{archive.file_url(spec)}?center=0,0px&size=1e9"])
    assert r.status == "failed" and r.attempts == 1
    assert r.reason.startswith("HTTP 400: UsageFault: BAD_REQUEST: size 1e+09")
    assert "Caltech" not in r.reason


def test_loopback_names_are_one_host(archive):
    """An archive addressed as localhost serves rows whose URLs say 127.0.0.1 (SIA answers)."""
    import astropy.units as u

    from glue_spherex.download.fetcher import fetch_cutouts
    from glue_spherex.irsa.core import SpherexClass

    local = archive.url.replace("127.0.0.1", "localhost")
    table = SpherexClass(local).query_region((210.80227, 54.34895), size=0.02 * u.deg,
                                               bandpass="D2", via="sia")[:2]
    assert all("127.0.0.1" in url for url in table["cutout_url"])
    results = list(fetch_cutouts(table, workers=2))
    assert [r.status for r in results] == ["ok", "ok"], [r.reason for r in results]
