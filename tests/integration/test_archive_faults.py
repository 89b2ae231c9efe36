"""Fault injection of the local archive, observed by raw clients (requests, http.client)."""

import http.client
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import pyvo
import requests

from glue_spherex.errors import SpherexInputError
from glue_spherex.local_archive import FaultConfig

M101 = (210.80227, 54.34895)
MISSING = "/ibe/data/spherex/qr2/level2/none.fits"      # a cheap data-route request (404)


def cutout_path(arch, size="0.05"):
    spec = next(s for s in arch.catalog.specs if s.detector == 2 and abs(s.dec - M101[1]) < 1.5
                and abs(s.ra - M101[0]) < 2)
    return urlsplit(arch.file_url(spec)).path + f"?center={spec.ra},{spec.dec}&size={size}"


def raw_get(arch, path):
    """(status, headers, body or the exception raised while reading it)."""
    parts = urlsplit(arch.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        try:
            body = resp.read()
        except (http.client.IncompleteRead, ConnectionError) as e:
            body = e
        return resp.status, dict(resp.headers), body
    finally:
        conn.close()


@pytest.mark.parametrize("kind, status", [("500", 500), ("502", 502), ("503", 503),
                                          ("429", 429)])
def test_error_statuses(make_archive, kind, status):
    arch = make_archive(**{f"p_{kind}": 1.0}, retry_after=7)
    r = requests.get(arch.url + cutout_path(arch))
    assert r.status_code == status and r.headers["Content-Type"].startswith("text/html")
    assert (r.headers.get("Retry-After") == "7") == (kind in ("429", "503"))
    assert arch.log[-1].fault == kind and arch.log[-1].status == status


def test_html_error_page_with_status_200(make_archive):
    arch = make_archive(p_html200=1.0)
    r = requests.get(arch.url + cutout_path(arch))
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert r.content.startswith(b"<!DOCTYPE html>") and b"SIMPLE" not in r.content
    assert arch.log[-1].fault == "html200"


def test_truncated_body(make_archive):
    arch = make_archive(p_truncate=1.0)
    status, headers, body = raw_get(arch, cutout_path(arch))
    assert status == 200
    assert isinstance(body, http.client.IncompleteRead)
    length = int(headers["Content-Length"])
    assert len(body.partial) == length // 2
    assert arch.log[-1].fault == "truncate" and arch.log[-1].bytes_sent == length // 2


def test_connection_reset(make_archive):
    arch = make_archive(p_reset=1.0)
    status, headers, body = raw_get(arch, cutout_path(arch))
    assert status == 200 and isinstance(body, (ConnectionResetError, http.client.IncompleteRead))
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.head(arch.url + cutout_path(arch))     # reset before any byte of a HEAD answer
    assert [r.fault for r in arch.log] == ["reset", "reset"]


@pytest.mark.slow
def test_stalled_transfer(make_archive):
    arch = make_archive(p_stall=1.0, stall_seconds=1.0)
    url = arch.url + cutout_path(arch)
    with pytest.raises(requests.exceptions.ConnectionError):      # read timeout mid-body
        requests.get(url, timeout=(5, 0.3))
    t0 = time.monotonic()
    r = requests.get(url, timeout=10)
    assert r.status_code == 200 and r.content[:6] == b"SIMPLE"
    assert len(r.content) == int(r.headers["Content-Length"])
    assert time.monotonic() - t0 >= 1.0
    assert [rec.fault for rec in arch.log] == ["stall", "stall"]


@pytest.mark.slow
def test_latency_overlaps_across_concurrent_requests(make_archive):
    arch = make_archive(latency=0.15)

    def get(_):
        return requests.head(arch.url + MISSING).status_code

    t0 = time.monotonic()
    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(get, range(40)))
    elapsed = time.monotonic() - t0
    assert statuses == [404] * 40
    assert elapsed < 40 * 0.15 / 3                 # serial would take 6 s; 10 workers ~0.6 s
    t0 = time.monotonic()
    get(0)
    assert time.monotonic() - t0 >= 0.15


@pytest.mark.slow
def test_bandwidth_cap(make_archive):
    arch = make_archive(bandwidth=400_000, routes="tap")
    t0 = time.monotonic()
    r = requests.get(arch.tap_url + "/sync", params={
        "LANG": "ADQL", "FORMAT": "csv", "QUERY": "SELECT TOP 2000 s_region FROM spherex.obscore"})
    elapsed = time.monotonic() - t0
    assert r.status_code == 200 and len(r.content) > 200_000
    assert elapsed >= 0.9 * len(r.content) / 400_000


def test_faults_only_on_chosen_routes(make_archive):
    arch = make_archive(p_500=1.0)                  # default: data routes only
    assert requests.get(arch.url + MISSING).status_code == 500
    svc = pyvo.dal.TAPService(arch.tap_url)
    assert len(svc.search("SELECT TOP 1 planeid FROM spherex.plane")) == 1
    arch.faults = FaultConfig(p_503=1.0, routes="tap,sia")       # changed while running
    with pytest.raises(pyvo.dal.DALServiceError) as info:
        svc.search("SELECT TOP 1 planeid FROM spherex.plane")
    assert info.value.code == 503
    assert requests.get(arch.url + MISSING).status_code == 404
    assert [r.fault for r in arch.log] == ["500", None, "503", None]


@pytest.mark.slow
def test_faults_are_seeded(make_archive):
    def statuses(arch):
        return [requests.get(arch.url + MISSING).status_code for _ in range(30)]

    a, b, c = (make_archive(seed=s, p_503=0.5) for s in (11, 11, 12))
    sa = statuses(a)
    assert set(sa) == {404, 503}
    assert sa == statuses(b)
    assert sa != statuses(c)


@pytest.mark.parametrize("kwargs, message", [
    ({"p_500": 0.7, "p_503": 0.5}, "sum"),
    ({"p_reset": -0.1}, "reset"),
    ({"latency": "gaussian:1,2"}, "latency"),
    ({"latency": "uniform:0.3,0.1"}, "latency"),
    ({"bandwidth": 0}, "bandwidth"),
    ({"routes": "data,ftp"}, "routes"),
])
def test_fault_config_rejects_bad_settings(kwargs, message):
    with pytest.raises(SpherexInputError, match=message):
        FaultConfig(**kwargs)


def test_latency_distributions_draw_in_range():
    import random

    rng = random.Random(0)
    uniform = FaultConfig(latency="uniform:0.1,0.3")
    draws = [uniform.draw(rng, "data")[0] for _ in range(200)]
    assert min(draws) >= 0.1 and max(draws) <= 0.3 and max(draws) - min(draws) > 0.1
    lognormal = FaultConfig(latency="lognormal:0.15,0.5")
    draws = sorted(lognormal.draw(rng, "data")[0] for _ in range(401))
    assert 0.12 < draws[200] < 0.18                       # the median
    assert FaultConfig(latency=0.2).draw(rng, "tap") == (0.0, None)   # route not covered
