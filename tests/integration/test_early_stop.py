"""Early stop (issue #17 item 1): a pipeline-7 body is read only up to its EPSF header once the
run holds that EPSF and WCS-WAVE; the combined file is byte for byte the one full downloads
write, with the archive's faults on too; QR2 cutouts are downloaded in full, unchanged.

Everything against the local archive. One worker makes the order of the cutouts in the file
(and of the requests) the same in every run, so whole files can be compared.
"""

import re

import numpy as np
import pytest
from astropy.io import fits

from glue_spherex.download.earlystop import (
    BodyWatch,
    CalibrationStore,
    calibration_identity,
)
from glue_spherex.download.fetcher import fetch_cutouts, fetch_to_file
from glue_spherex.download.retry import RetryPolicy
from glue_spherex.fitsbytes.scan import scan_spectral_image
from glue_spherex.irsa.core import SpherexClass
from glue_spherex.local_archive import FaultConfig, LocalArchive

RA, DEC = 210.80227, 54.34895


def _table(url, release, n):
    table = SpherexClass(url).query_region((RA, DEC), size="20px", release=release)
    table.sort("cutout_index")
    return table[:n]


@pytest.fixture(scope="module")
def r7(archive, tmp_path_factory):
    """``(table, full file, full summary, {cutout_index: body})`` of pipeline-7 cutouts."""
    tmp = tmp_path_factory.mktemp("early")
    table = _table(archive.url, "qr3", 18)
    assert len(set(table["detector"])) >= 3
    full = fetch_to_file(table, tmp / "full.fits", workers=1, early_stop=False)
    assert full.complete and full.bytes_saved == 0
    bodies = {r.cutout_index: r.data for r in fetch_cutouts(table, workers=1,
                                                            early_stop=False)}
    return table, tmp / "full.fits", full, bodies


def test_pipeline7_file_is_byte_identical_and_far_fewer_bytes_come_down(archive, r7, tmp_path):
    table, full_path, full, bodies = r7
    n0 = len(archive.log)
    early = fetch_to_file(table, tmp_path / "early.fits", workers=1)
    assert early.complete
    assert (tmp_path / "early.fits").read_bytes() == full_path.read_bytes()
    # every byte is either downloaded or filled in; one full download per detector
    assert early.bytes_downloaded + early.bytes_saved == full.bytes_downloaded
    n_det = len(set(table["detector"]))
    epsf = min(len(b) - _epsf_header_end(b) for b in bodies.values())
    assert early.bytes_saved >= (len(table) - n_det) * epsf
    assert early.bytes_downloaded * 2.5 < full.bytes_downloaded
    # no connection went back to the pool half-read: every cutout took one request
    requests = [r for r in archive.log[n0:] if r.path.startswith("/ibe")]
    assert len(requests) == len(table)


def test_each_result_is_the_full_body_and_says_what_it_saved(r7):
    table, _, _, bodies = r7
    results = list(fetch_cutouts(table, workers=3))
    assert all(r.ok and r.attempts == 1 for r in results)
    for r in results:
        assert r.data == bodies[r.cutout_index]
        if r.bytes_saved:
            assert r.bytes == _epsf_header_end(r.data)
            assert r.bytes + r.bytes_saved == len(r.data)
        else:
            assert r.bytes == len(r.data)
    assert sum(r.bytes_saved > 0 for r in results) >= len(table) - 3 * len(set(table["detector"]))


FAULTS = dict(p_truncate=0.15, p_reset=0.1, p_html200=0.1, p_500=0.1)
#: retried at once: a retried cutout queues behind the others, so with one worker the order
#: of the cutouts in the file follows from the faults alone, not from timing
AT_ONCE = RetryPolicy(20, 0.0, 0.0)


def _faulty(port, cut_at):
    return LocalArchive(port=port, faults=FaultConfig(cut_at=cut_at, **FAULTS), seed=7).start()


def _hdus(path):
    """``{EXTNAME: header and data bytes}`` of a file (with CUTOUT_INFO's rows)."""
    out = {}
    with fits.open(path) as h:
        for hdu in h:
            raw = hdu._get_raw_data(hdu._data_size, np.uint8, hdu._data_offset)
            out[hdu.name] = hdu.header.tostring().encode() + (raw.tobytes() if raw is not None
                                                              else b"")
    return out


def test_concurrent_bodies_of_one_calibration_wait_for_one_full_read(archive):
    table = SpherexClass(archive.url).query_region((RA, DEC), size="20px", release="qr3",
                                                   bandpass="D5")[:8]
    assert len(table) == 8 and set(table["detector"]) == {5}
    results = list(fetch_cutouts(table, workers=4))
    assert all(r.ok and r.attempts == 1 for r in results)
    full = [r for r in results if not r.bytes_saved]
    assert len(full) == 1 and full[0].bytes == len(full[0].data)
    assert all(r.bytes == _epsf_header_end(r.data) for r in results if r.bytes_saved)


@pytest.mark.parametrize("cut_at", [0.02, 0.5])
def test_faults_early_parts_are_retried_and_the_file_is_the_same(r7, tmp_path, cut_at):
    # cut_at=0.02 cuts a body before its EPSF header (inside the part an early stop reads):
    # every such cutout is retried, so the full and the early-stop run make the same requests,
    # meet the same faults (two archives of one seed, on one port: the file names the URLs)
    # and write the same file. 0.5 cuts a body inside the EPSF data, which an early stop never
    # reads: fewer retries, so the cutouts arrive in another order; each HDU is the same.
    n = len(r7[0])
    runs = {}
    port = 0
    for early_stop in (False, True):
        arch = _faulty(port, cut_at)
        try:
            arch.wait_ready()
            port = arch.port
            table = _table(arch.url, "qr3", n)
            path = tmp_path / f"{early_stop}.fits"
            summary = fetch_to_file(table, path, workers=1, retry=AT_ONCE,
                                    early_stop=early_stop)
            requests = [r for r in arch.log if r.path.startswith("/ibe")]
        finally:
            arch.stop()
        assert summary.complete
        runs[early_stop] = (path, summary, requests)
    (full, s_full, r_full), (early, s_early, r_early) = runs[False], runs[True]
    assert s_early.bytes_saved > 0 and s_full.bytes_saved == 0
    faults = [r.fault for r in r_early if r.fault is not None]
    assert {"truncate", "reset", "html200"} <= set(faults)
    if cut_at < 0.1:  # every fault struck what was read: each cost one retry
        assert len(r_early) == len(r_full) == n + len(faults)
        assert early.read_bytes() == full.read_bytes()
    else:             # some struck only what an early stop leaves unread
        assert len(r_early) < len(r_full)
        assert _hdus(early) == _hdus(full)


def test_qr2_is_downloaded_in_full_and_unchanged(archive, tmp_path):
    table = _table(archive.url, "qr2", 8)
    full = fetch_to_file(table, tmp_path / "full.fits", workers=1, early_stop=False)
    early = fetch_to_file(table, tmp_path / "early.fits", workers=1)
    assert full.complete and early.complete
    assert (tmp_path / "early.fits").read_bytes() == (tmp_path / "full.fits").read_bytes()
    assert early.bytes_saved == 0 and early.bytes_downloaded == full.bytes_downloaded > 0


# -- the identity and the store, on real archive bodies -----------------------------------------

def _epsf_header_end(body):
    return next(s.data_start for s in scan_spectral_image(body) if s.extname == "EPSF")


def _watch(store, body):
    """Feed ``body`` to a BodyWatch as a reader would; ``(bytes read, tail)``."""
    watch = BodyWatch(store, len(body))
    buf = bytearray()
    while len(buf) < len(body):
        n = watch.next_read(len(buf), 1 << 20)
        buf += body[len(buf):len(buf) + n]
        tail = watch.update(buf)
        if tail is not None:
            return len(buf), tail
    return len(buf), None


def test_identity_from_the_image_header(r7):
    _, _, _, bodies = r7
    body = next(iter(bodies.values()))
    image = scan_spectral_image(body)[1]
    ident = calibration_identity(body[image.header_start:image.data_start])
    assert ident.complete and ident.detector in "123456"
    header = body[image.header_start:image.data_start].decode("latin-1")
    assert f"HISTORY [CALIB] epsf {ident.epsf}" in header
    assert f"HISTORY [CALIB] spectral_wcs {ident.spectral_wcs}" in header
    # two different UUIDs of one kind: no identity for that kind
    other = header.replace(f"[CALIB] epsf {ident.epsf}",
                           "[CALIB] epsf 00000000-0000-4000-8000-000000000000", 1)
    twice = (header[:header.index("END     ")] + f"{'HISTORY [CALIB] epsf ' + ident.epsf:80}"
             + header[header.index("END     "):])
    assert calibration_identity(twice.encode("latin-1")).epsf == ident.epsf  # same: fine
    mixed = other[:other.index("END     ")] + f"{'HISTORY [CALIB] epsf ' + ident.epsf:80}" \
        + other[other.index("END     "):]
    assert calibration_identity(mixed.encode("latin-1")).epsf is None


def test_watch_stops_only_for_a_held_identity(r7):
    table, _, _, bodies = r7
    by_det = {}
    for row in table:
        by_det.setdefault(int(row["detector"]), []).append(bodies[int(row["cutout_index"])])
    det, (first, second, *_) = next((d, b) for d, b in by_det.items() if len(b) >= 2)
    store = CalibrationStore()
    assert _watch(store, second) == (len(second), None)          # nothing held: full
    store.learn(first, scan_spectral_image(first))
    read, tail = _watch(store, second)
    assert read == _epsf_header_end(second) and bytes(second[:read]) + tail == second
    other = next(b for d, bs in by_det.items() if d != det for b in bs)
    assert _watch(store, other)[1] is None                        # another detector: full
    # the same identity with other EPSF bytes: neither copy is trusted any more
    spans = scan_spectral_image(first)
    epsf = spans[5]
    changed = bytearray(first)
    changed[epsf.data_start + 100] ^= 1
    store.learn(bytes(changed), spans)
    assert store.conflicts == 1 and _watch(store, second)[1] is None
    # a Content-Length that the held tail does not fill exactly: no stop
    fresh = CalibrationStore()
    fresh.learn(first, spans)
    watch = BodyWatch(fresh, len(second) + 2880)
    buf = bytearray()
    while watch.active:
        buf += second[len(buf):len(buf) + watch.next_read(len(buf), 1 << 20)]
        assert watch.update(buf) is None


def test_fetch_prints_the_bytes_early_stop_saved(archive, tmp_path, capsys):
    from glue_spherex.cli import main

    with pytest.raises(SystemExit) as info:
        main(["fetch", "--ra", str(RA), "--dec", str(DEC), "-b", "D5", "--size", "20px",
              "--release", "qr3", "--no-progress", "--workers", "1",
              "-o", str(tmp_path / "a.fits"), "--archive", archive.url])
    out, err = capsys.readouterr()
    assert info.value.code == 0, err
    (line,) = [x for x in out.splitlines() if x.startswith("downloaded ")]
    m = re.search(r"early stop saved (\d[\d,]*) bytes", line)
    assert m is not None, line
    assert int(m.group(1).replace(",", "")) > 0


# -- the calibrations kept in the cache (issue #17 item 3, first part) --------------------------

def test_a_later_run_with_the_cache_downloads_no_calibration_again(archive, tmp_path):
    table = _table(archive.url, "qr3", 30)
    seen = {}
    rank = [seen.setdefault(int(d), []).append(1) or len(seen[int(d)]) for d in table["detector"]]
    rank = np.array(rank)
    first, later = table[rank % 2 == 1], table[rank % 2 == 0]  # other cutouts, same detectors
    assert len(later) >= 6 and set(later["detector"]) <= set(first["detector"])
    cache = tmp_path / "cache"
    assert all(r.ok for r in fetch_cutouts(first, cache_dir=cache, workers=2))
    kept = sorted(p.name.split("-")[0] for p in (cache / "calibrations").glob("*.bin"))
    n_det = len(set(first["detector"]))
    assert kept == ["epsf"] * n_det + ["spectral_wcs"] * n_det
    full = {r.cutout_index: r.data for r in fetch_cutouts(later, workers=2, early_stop=False)}
    results = list(fetch_cutouts(later, cache_dir=cache, workers=2))
    assert all(r.ok and not r.from_cache for r in results)
    for r in results:  # every one stopped at its EPSF header, from the first request on
        assert r.bytes_saved > 0 and r.bytes == _epsf_header_end(r.data)
        assert r.data == full[r.cutout_index]
    # calibration files that do not check out are deleted and not used
    for path in (cache / "calibrations").glob("epsf-*.bin"):
        raw = bytearray(path.read_bytes())
        raw[5000] ^= 1
        path.write_bytes(bytes(raw))
    store = CalibrationStore(cache / "calibrations")
    body = full[int(later["cutout_index"][0])]
    spans = scan_spectral_image(body)
    ident = calibration_identity(body[spans[1].header_start:spans[1].data_start])
    assert store.tail(ident, spans[5]) is None
    assert len(list((cache / "calibrations").glob("epsf-*.bin"))) == n_det - 1
    assert _watch(store, body) == (len(body), None)   # read in full
    store.learn(body, spans)                           # ... and learnt again
    assert store.tail(ident, spans[5]) == body[spans[5].data_start:]
    assert len(list((cache / "calibrations").glob("epsf-*.bin"))) == n_det
