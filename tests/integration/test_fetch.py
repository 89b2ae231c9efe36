"""Reliability of the cutout fetcher against the local archive's injected faults.

Every claim is checked twice where possible: by the results the fetcher yields and by the
archive's own request log (what really went over the wire: faults, retries, their timing and
how many requests were in flight).
"""

import hashlib
import threading
import time
from urllib.parse import urlsplit

import pytest

from glue_spherex.download.fetcher import fetch_cutouts, fetch_to_file
from glue_spherex.download.retry import RetryPolicy, parse_retry_after
from glue_spherex.errors import SpherexInputError, SpherexOutputError
from glue_spherex.fitsbytes.scan import scan_spectral_image
from glue_spherex.irsa.core import SpherexClass
from glue_spherex.local_archive import FaultConfig
from glue_spherex.products.combined import read_combined

M101 = (210.80227, 54.34895)
FAST = RetryPolicy(max_retries=6, backoff_base=0.05, backoff_cap=0.5)


def query(arch, bandpass="D2", size="20px", **kw):
    return SpherexClass(arch.url).query_region(M101, size=size, bandpass=bandpass, **kw)


def data_log(arch, since=0):
    return [r for r in arch.log[since:] if r.path.startswith("/ibe/")]


def request_key(url):
    parts = urlsplit(url)
    return parts.path, parts.query


def digest(data):
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def clean(archive):
    """Reference bodies of the M101 D1-D3 20px cutouts from the fault-free archive."""
    table = query(archive, bandpass=["D1", "D2", "D3"])[:200]
    bodies = {}
    for r in fetch_cutouts(table, workers=8, retry=FAST):
        assert r.ok, r.reason
        bodies[request_key(r.url)] = digest(r.data)
    return bodies


# -- retry-after parsing ----------------------------------------------------------------------

def test_parse_retry_after():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == \
        pytest.approx(10.0)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# -- transient faults -------------------------------------------------------------------------

@pytest.mark.slow
def test_transient_faults_every_cutout_arrives(make_archive, clean):
    faults = dict(p_500=0.015, p_502=0.015, p_503=0.01, p_429=0.01, p_reset=0.015,
                  p_truncate=0.015, p_html200=0.015, retry_after=1, seed=7)
    arch = make_archive(**faults)
    table = query(arch, bandpass=["D1", "D2", "D3"])[:200]
    assert len(table) == 200
    results = list(fetch_cutouts(table, workers=10, retry=FAST))

    assert sorted(r.cutout_index for r in results) == list(table["cutout_index"])
    failed = [r for r in results if not r.ok]
    assert not failed, failed[:3]
    for r in results:
        # byte-identical to the fault-free archive's cutout, and structurally complete
        assert digest(r.data) == clean[request_key(r.url)]
        scan_spectral_image(r.data)
    log = data_log(arch)
    injected = [rec.fault for rec in log if rec.fault]
    assert len(log) == 200 + len(injected)  # one extra request per fault
    assert len(injected) >= 8, injected
    assert len(set(injected)) >= 4, set(injected)
    # the fetcher's attempt counts add up to what the server saw
    assert sum(r.attempts for r in results) == len(log)
    retried = {request_key(r.url) for r in results if r.attempts > 1}
    assert retried == {(rec.path, rec.query) for rec in log if rec.fault}


@pytest.mark.slow
def test_gzip_bodies_are_unwrapped(make_archive, clean):
    arch = make_archive(gzip_cutouts=True)
    table = query(arch)[:6]
    results = list(fetch_cutouts(table, workers=3))
    assert all(r.ok for r in results)
    log = data_log(arch)
    for r in results:
        assert digest(r.data) == clean[request_key(r.url)]
        assert r.bytes < len(r.data)  # what came over the wire was the compressed file
    assert sum(rec.bytes_sent for rec in log) == sum(r.bytes for r in results)


def test_persistent_errors_are_recorded_not_retried(archive, tmp_path):
    table = query(archive)[:8]
    off_image = table["access_url"][2] + "?center=10.0,-30.0&size=20px"
    table["cutout_url"][2] = off_image
    missing = table["access_url"][5].replace("/level2_", "/level2_NOSUCH_")
    table["cutout_url"][5] = missing + "?center=210.8,54.3&size=20px"
    n0 = len(archive.log)
    out = tmp_path / "combined.fits"
    summary = fetch_to_file(table, out, workers=4, retry=FAST)

    assert (summary.ok, summary.failed, summary.total) == (6, 2, 8)
    reasons = dict(summary.failures)
    assert reasons[3].startswith("HTTP 400: ") and "does not overlap" in reasons[3]
    assert reasons[6].startswith("HTTP 404")
    statuses = [rec.status for rec in data_log(archive, n0)]
    assert statuses.count(400) == 1 and statuses.count(404) == 1  # never retried
    info, products = read_combined(out)
    assert len(products) == 6
    failed = {int(r["cutout_index"]): str(r["reason"]) for r in info if r["status"] == "failed"}
    assert set(failed) == {3, 6} and "does not overlap" in failed[3]


@pytest.mark.slow
def test_stall_is_cut_by_the_read_timeout(make_archive, clean):
    # every request sends half its body, then pauses 30 s; the archive heals after 0.3 s
    arch = make_archive(p_stall=1.0, stall_seconds=30)
    table = query(arch)[:2]
    threading.Timer(0.3, lambda: setattr(arch, "faults", FaultConfig())).start()
    t0 = time.monotonic()
    out = list(fetch_cutouts(table, workers=2, timeout=(2, 0.5), retry=FAST))
    assert time.monotonic() - t0 < 10
    assert all(r.ok and r.attempts == 2 for r in out)
    assert all(digest(r.data) == clean[request_key(r.url)] for r in out)


# -- push-back ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_retry_after_is_honoured(make_archive):
    arch = make_archive(p_429=0.25, p_503=0.15, retry_after=1, seed=3)
    table = query(arch)[:24]
    results = list(fetch_cutouts(table, workers=6, retry=FAST))
    assert all(r.ok for r in results)
    log = data_log(arch)
    by_key = {}
    for rec in log:
        by_key.setdefault((rec.path, rec.query), []).append(rec)
    gaps = []
    for recs in by_key.values():
        recs.sort(key=lambda r: r.time)
        for first, second in zip(recs, recs[1:]):
            if first.status in (429, 503):
                gaps.append(second.time - first.time)
    assert len(gaps) >= 4
    # FAST back-off alone would retry within 0.05-0.1 s; the server asked for 1 s
    assert min(gaps) >= 0.95, sorted(gaps)[:5]


def in_flight(records, latency, start, end):
    """Peak number of requests in flight in [start, end): each occupies [arrival, +latency)."""
    times = sorted(r.time for r in records)
    peak = 0
    for t in times:
        if start <= t < end:
            peak = max(peak, sum(1 for u in times if t - latency < u <= t))
    return peak


@pytest.mark.slow
def test_concurrency_eases_on_pushback_and_recovers(make_archive):
    latency, heal_after = 0.25, 2.5
    arch = make_archive(latency=latency, p_503=0.7, retry_after=0, seed=5)
    table = query(arch, bandpass=["D1", "D2"])[:90]
    t_start = time.time()
    threading.Timer(heal_after, lambda: setattr(arch, "faults", FaultConfig(latency=latency))
                    ).start()
    policy = RetryPolicy(max_retries=40, backoff_base=0.05, backoff_cap=0.2)
    results = list(fetch_cutouts(table, workers=8, retry=policy))
    assert all(r.ok for r in results)
    log = data_log(arch)
    healed = t_start + heal_after
    assert sum(r.status == 503 for r in log) >= 5
    # the first round (before any answer came back) had all 8 workers in flight ...
    assert in_flight(log, latency, t_start, t_start + 0.8 * latency) >= 7
    # ... then, while 503s kept coming, far fewer (tasks were queued all along) ...
    pushed = in_flight(log, latency, t_start + 4 * latency, healed)
    assert pushed <= 3, pushed
    # ... and once the archive stopped pushing back, the limit climbed back
    assert in_flight(log, latency, healed + 3.0, time.time()) >= 6


# -- cache, resume, cancellation ----------------------------------------------------------------

def test_cache_resumes_and_never_trusts_a_partial(archive, tmp_path):
    table = query(archive)[:10]
    cache = tmp_path / "cache"
    first = list(fetch_cutouts(table, workers=4, cache_dir=cache))
    assert all(r.ok and not r.from_cache and r.path.exists() for r in first)
    files = sorted(cache.glob("*.fits"))
    assert len(files) == 10 and not list(cache.glob("*.part"))

    # one cache file cut short (as a crash of another tool might leave it), one deleted
    victim = first[3]
    victim.path.write_bytes(victim.path.read_bytes()[:100_000])
    first[7].path.unlink()
    n0 = len(archive.log)
    second = {r.cutout_index: r for r in fetch_cutouts(table, workers=4, cache_dir=cache)}
    refetched = {request_key(rec.path + "?" + rec.query) for rec in data_log(archive, n0)}
    assert refetched == {request_key(first[3].url), request_key(first[7].url)}
    for r in first:
        again = second[r.cutout_index]
        assert again.ok
        # a cache hit leaves the bytes on disk (data None): the product maps the file
        held = again.path.read_bytes() if again.from_cache else again.data
        assert (again.data is None) == again.from_cache
        assert digest(held) == digest(r.data)
        assert again.product.image.shape == r.product.image.shape
        assert again.from_cache == (r.cutout_index not in (victim.cutout_index,
                                                          first[7].cutout_index))
        assert (again.attempts == 0) == again.from_cache


def test_cancel_stops_in_flight_requests_promptly(make_archive):
    # every request sends half its body and then stalls for 60 s
    arch = make_archive(p_stall=1.0, stall_seconds=60)
    table = query(arch)[:30]
    cancel = threading.Event()
    t0 = time.monotonic()
    threading.Timer(0.5, cancel.set).start()
    results = list(fetch_cutouts(table, workers=6, cancel=cancel, timeout=(5, 120)))
    elapsed = time.monotonic() - t0
    assert elapsed < 3.0, elapsed
    assert sorted(r.cutout_index for r in results) == list(table["cutout_index"])
    assert {r.status for r in results} == {"cancelled"}
    reasons = {r.reason for r in results}
    assert "cancelled while downloading" in reasons          # the six in flight
    assert "cancelled before it was fetched" in reasons      # the queued rest


@pytest.mark.slow
def test_closing_the_iterator_stops_the_batch(make_archive):
    arch = make_archive(latency=0.2)
    table = query(arch, bandpass=["D1", "D2"])[:60]
    gen = fetch_cutouts(table, workers=4)
    got = [next(gen) for _ in range(3)]
    assert all(r.ok for r in got)
    t0 = time.monotonic()
    gen.close()
    closed_at = time.time()
    assert time.monotonic() - t0 < 2.0
    time.sleep(1.0)  # requests cut in flight are logged when their handlers finish
    log = data_log(arch)
    # 4 workers at 0.2 s per request would have asked for ~20 more in that second; the log
    # timestamps are taken by the server thread, hence the slack for scheduling delays
    assert all(rec.time <= closed_at + 0.25 for rec in log)
    assert len(log) < 20


def test_progress_and_inputs(archive):
    table = query(archive)[:5]
    seen = []
    results = list(fetch_cutouts(list(table["cutout_url"]), workers=2,
                                 progress=lambda done, total, r: seen.append((done, total))))
    assert seen == [(i, 5) for i in range(1, 6)]
    assert sorted(r.cutout_index for r in results) == [1, 2, 3, 4, 5]
    assert results[0].product.detector == 2
    with pytest.raises(SpherexInputError):
        list(fetch_cutouts(["ftp://x/y"]))
    with pytest.raises(SpherexInputError):
        list(fetch_cutouts("http://x/y"))


# -- quick-look ---------------------------------------------------------------------------------

def png_size(path):
    import struct

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])  # IHDR width, height


@pytest.mark.slow
def test_quicklook_from_file_and_products(archive, tmp_path):
    from glue_spherex.analysis.quicklook import quicklook_png

    table = query(archive, bandpass=["D1", "D4"], size="0.05deg")[:30]
    out = tmp_path / "c.fits"
    fetch_to_file(table, out, workers=6)
    many = quicklook_png(out, tmp_path / "all.png")
    few = quicklook_png(out, tmp_path / "few.png", max_panels=4)
    assert png_size(few)[0] * png_size(few)[1] < png_size(many)[0] * png_size(many)[1] / 2
    results = [r for r in fetch_cutouts(table[:5], workers=3)]
    direct = quicklook_png([r.product for r in results], tmp_path / "direct.png")
    assert png_size(direct)[0] > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.png", "c.fits", "direct.png",
                                                          "few.png"]  # no .part left behind
    with pytest.raises(SpherexInputError):
        quicklook_png(out, tmp_path / "x.png", max_panels=0)
    with pytest.raises(SpherexInputError):
        quicklook_png([], tmp_path / "x.png")
    with pytest.raises(SpherexOutputError, match="does not exist"):
        quicklook_png(out, tmp_path / "no_such_dir" / "x.png")


# -- the append path: cutout bytes read at the byte level --------------------------------------

def _astropy_wavelength(hdul, target):
    """Reference: sky -> pixel with SIP (astropy), pixel -> (wavelength, bandwidth) with the
    W WCS without SIP (wcslib's -TAB), as IRSA's tutorial computes a cutout's wavelength."""
    from astropy.wcs import WCS

    x, y = WCS(hdul["IMAGE"].header).world_to_pixel(target)
    wave = WCS(hdul["IMAGE"].header, fobj=hdul, key="W")
    wave.sip = None
    wl, bw = wave.pixel_to_world_values(x, y)
    return float(wl), float(bw)


@pytest.mark.slow
def test_cutout_bytes_read_like_astropy():
    import gzip
    import io

    import numpy as np
    from astropy.io import fits
    from astropy.wcs import WCS
    from cutouts import frame_spec, make_cutout, to_bytes

    from glue_spherex.errors import SpherexFormatError
    from glue_spherex.products.spectral_image import SpectralImage

    # interior, corner-clipped and edge windows, every detector (D3/D4 have non-square tables)
    windows = {1: (1000, 1000, 59, 59), 2: (0, 0, 20, 30), 3: (2020, 1500, 20, 40),
               4: (1990, 2000, 50, 40), 5: (700, 2030, 33, 10), 6: (5, 1200, 117, 117)}
    for det, (x0, y0, nx, ny) in windows.items():
        cut = make_cutout(frame_spec(det), x0, y0, nx, ny)
        data = to_bytes(cut)
        hdul = fits.open(io.BytesIO(data))
        h = hdul["IMAGE"].header
        targets = WCS(h).pixel_to_world([nx / 2 - 0.3, nx - 1.5], [ny / 2 + 0.2, 1.0])
        buf = io.BytesIO()
        cut.writeto(buf, checksum=True)  # CHECKSUM/DATASUM cards are blanked when renamed
        assert b"CHECKSUM= " in buf.getvalue()
        with SpectralImage.open(buf.getvalue()) as image:
            assert b"CHECKSUM= " not in b"".join(bytes(c) for c in image._extension_bytes("3"))
        for body in (data, gzip.compress(data, 1), buf.getvalue()):
            with SpectralImage.open(body) as image:
                assert image.shape == (h["NAXIS2"], h["NAXIS1"]) == (ny, nx)
                assert (image.obsid, image.detector) == (h["OBSID"], h["DETECTOR"]) \
                    and image.detector == det
                assert (image.mjd_beg, image.mjd_end) == (h["MJD-BEG"], h["MJD-END"])
                np.testing.assert_array_equal(image.flags, hdul["FLAGS"].data)
                for target in targets:
                    assert image.wavelength_at(target) == pytest.approx(
                        _astropy_wavelength(hdul, target), rel=1e-9)
                # far outside the parent frame's wavelength table: NaN, as wcslib gives
                far = WCS(h).pixel_to_world(-3000.0, 1.0)
                assert all(np.isnan(image.wavelength_at(far)))
    with pytest.raises(SpherexFormatError, match="truncated"):
        SpectralImage.open(data[:-5000])


def _saved(tmp_path, result):
    path = tmp_path / f"cutout_{result.cutout_index}.fits"
    path.write_bytes(result.data)
    return path


def test_combined_file_is_the_same_from_bytes_or_files(archive, tmp_path):
    """Bytes in memory and memory-mapped files go through the same reader."""
    from glue_spherex.products.combined import CombinedWriter

    table = query(archive, bandpass=["D1", "D3", "D4", "D6"], size="0.05deg")[::9][:10]
    results = sorted(fetch_cutouts(table, workers=5), key=lambda r: r.cutout_index)
    planned = [dict(cutout_index=int(r["cutout_index"]), access_url=str(r["cutout_url"]))
               for r in table]
    target = (M101[0], M101[1])
    paths = []
    for name, product in (("bytes", lambda r: r.data),
                          ("path", lambda r: r.path or _saved(tmp_path, r))):
        path = tmp_path / f"{name}.fits"
        with CombinedWriter(path, planned, target=target) as writer:
            for r in results:
                writer.add(r.cutout_index, product(r))
        paths.append(path)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    info, products = read_combined(paths[0])
    assert len(products) == len(table)
    assert all(0.7 < w < 5.1 for w in info["central_wavelength"])
