"""Ranged GETs of whole frames not yet rendered: the bytes of ``frame_bytes(spec)[a:b]``,
made from the frame's layout without rendering the frame, on ``/ibe/`` and on the S3 path."""

import http.client
import random
import time
from urllib.parse import urlsplit

import pytest
import requests

from glue_spherex.local_archive.files import LAZY_MAX_ROWS, frame_cache
from glue_spherex.local_archive.s3 import BUCKET
from glue_spherex.local_archive.synthetic import frame_bytes, frame_wcs, source_pixels
from glue_spherex.local_archive.synthetic.layout import ROW_BYTES, frame_layout

pytestmark = pytest.mark.timeout(300)
M101 = (210.80227, 54.34895)


def _is_cached(spec):
    f = frame_cache().cached(spec)
    if f is None:
        return False
    f.close()
    return True


def _pick(archive, collection, detector):
    """An uncached frame of ``collection`` holding M101 (so sources set SOURCE flags)."""
    for s in archive.catalog.specs:
        if s.collection == collection and s.detector == detector and abs(s.dec - M101[1]) < 3:
            x, y = frame_wcs(s).all_world2pix(*M101, 0)
            if 100 < x < 1940 and 100 < y < 1940 and not _is_cached(s):
                return s
    pytest.fail(f"no uncached {collection} D{detector} frame holds M101")


@pytest.fixture(scope="module", params=["qr2", "r7"])
def frame(request, archive):
    spec = (_pick(archive, "spherex_qr2", 5) if request.param == "qr2"
            else _pick(archive, "spherex_qr3", 1))
    assert spec.pipeline7 == (request.param == "r7") and source_pixels(spec)
    return spec, frame_bytes(spec)


def _urls(archive, spec):
    return (archive.file_url(spec), f"{archive.url}/{BUCKET}/{spec.key}")


def _spans(spec, size, seed=0):
    """Byte ranges (Range header value, start, stop): around every HDU boundary, first and last
    bytes, suffix ranges, open-ended ranges, random spans of up to a few rows."""
    out = [("bytes=0-0", 0, 1), ("bytes=0-2879", 0, 2880), (f"bytes={size - 1}-", size - 1, size),
           ("bytes=-500", size - 500, size), ("bytes=-1", size - 1, size),
           (f"bytes={size - 9000}-", size - 9000, size),
           (f"bytes={size - 10}-{size + 100}", size - 10, size)]
    for p in frame_layout(spec).pieces:
        for a, b in ((p.offset - 3000, p.offset + 7), (p.offset, p.offset + 2880),
                     (p.offset + p.length - 5, p.offset + p.length + 9000)):
            a, b = max(a, 0), min(b, size)
            out.append((f"bytes={a}-{b - 1}", a, b))
    rng = random.Random(seed)
    for _ in range(25):
        a = rng.randrange(size)
        b = min(size, a + rng.randrange(1, 40 * ROW_BYTES))
        out.append((f"bytes={a}-{b - 1}", a, b))
    return out


def test_ranges_are_the_bytes_of_the_frame(archive, frame):
    spec, full = frame
    size = len(full)
    session = requests.Session()
    for url in _urls(archive, spec):
        assert int(session.head(url).headers["Content-Length"]) == size
        for header, a, b in _spans(spec, size):
            r = session.get(url, headers={"Range": header}, timeout=60)
            assert r.status_code == 206, (url, header)
            assert r.headers["Content-Range"] == f"bytes {a}-{b - 1}/{size}", header
            assert r.content == full[a:b], (url, header)
    # none of these renders the frame: a full render would have put it in the frame cache
    assert not _is_cached(spec)


@pytest.mark.parametrize("collection, detector", [("spherex_qr2", 3), ("spherex_qr3", 2)])
def test_a_few_rows_cost_far_less_than_the_frame(archive, collection, detector):
    spec = _pick(archive, collection, detector)  # asked for by no other test: nothing cached
    url = archive.file_url(spec)
    size = int(requests.head(url).headers["Content-Length"])
    header = requests.get(url, headers={"Range": "bytes=2880-25919"})  # the IMAGE header
    assert header.status_code == 206 and header.content.startswith(b"XTENSION= 'IMAGE   '")
    a = 25920 + 900 * ROW_BYTES                  # rows 900-999 of IMAGE
    b = a + 100 * ROW_BYTES
    t0 = time.perf_counter()
    r = requests.get(url, headers={"Range": f"bytes={a}-{b - 1}"})
    t_rows = time.perf_counter() - t0
    assert r.status_code == 206 and not _is_cached(spec)
    t0 = time.perf_counter()
    full = frame_bytes(spec)
    t_full = time.perf_counter() - t0
    assert len(full) == size and r.content == full[a:b] and header.content == full[2880:25920]
    assert t_rows < t_full / 4, (t_rows, t_full)


def test_head_renders_nothing(archive):
    spec = _pick(archive, "spherex_qr3", 4)
    for url in _urls(archive, spec):
        head = requests.head(url)
        assert head.status_code == 200
        assert int(head.headers["Content-Length"]) == spec.file_size
        ranged = requests.head(url, headers={"Range": "bytes=-500"})
        assert ranged.status_code == 206 and ranged.headers["Content-Length"] == "500"
    assert not _is_cached(spec)


@pytest.mark.slow
def test_a_large_span_renders_the_frame_into_the_cache(archive, frame):
    spec, full = frame
    zodi = next(p for p in frame_layout(spec).pieces if p.plane == "zodi")
    a = zodi.offset
    b = a + (LAZY_MAX_ROWS + 100) * ROW_BYTES
    r = requests.get(archive.file_url(spec), headers={"Range": f"bytes={a}-{b - 1}"})
    assert r.status_code == 206 and r.content == full[a:b]
    assert _is_cached(spec)


def test_faults_apply_to_ranges_of_unrendered_frames(make_archive, archive):
    arch = make_archive(p_truncate=1.0)
    spec = _pick(archive, "spherex_qr2", 6)
    parts = urlsplit(arch.url)
    for path in (urlsplit(u).path for u in _urls(arch, spec)):
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            conn.request("GET", path, headers={"Range": "bytes=30000-39999"})
            resp = conn.getresponse()
            assert resp.status == 206
            with pytest.raises(http.client.IncompleteRead) as err:
                resp.read()
            assert len(err.value.partial) == 5000
        finally:
            conn.close()
        assert arch.log[-1].fault == "truncate"
    assert not _is_cached(spec)
