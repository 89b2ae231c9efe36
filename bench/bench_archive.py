"""Measure the local archive: start time (a fresh process until it accepts connections and
until it answers the tutorial TAP query), TAP latency, CONTAINS cost, cutout throughput,
full-frame first request, byte ranges of frames never rendered, and overlap of injected
latency.

Run: ``.venv/bin/python bench/bench_archive.py`` (about a minute; prints the figures);
``--ranges`` measures only the byte ranges of frames never rendered.
"""

import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pyvo
import requests

from glue_spherex.local_archive import LocalArchive

M101 = (210.80227, 54.34895)
N_STARTS = 5
TUTORIAL = (
    "SELECT 'https://irsa.ipac.caltech.edu/' || a.uri || '?center=210.80227,54.34895d&size=0.1' "
    "AS uri, p.time_bounds_lower FROM spherex.artifact a JOIN spherex.plane p "
    "ON a.planeid = p.planeid WHERE 1 = CONTAINS(POINT('ICRS', 210.80227, 54.34895), p.poly) "
    "AND p.energy_bandpassname = 'SPHEREx-D2' ORDER BY p.time_bounds_lower")

_START = """
import time
t0 = time.perf_counter()
import socket, sys, urllib.parse, urllib.request
from glue_spherex.local_archive import LocalArchive
t_import = time.perf_counter() - t0
arch = LocalArchive().start()
socket.create_connection(("127.0.0.1", arch.port)).close()
t_listen = time.perf_counter() - t0
form = urllib.parse.urlencode({"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": sys.argv[1]})
with urllib.request.urlopen(arch.tap_url + "/sync", form.encode()) as r:
    n_rows = r.read().count(b"<TR>")
t_answer = time.perf_counter() - t0
print(f"{t_import:.4f} {t_listen:.4f} {t_answer:.4f} {n_rows}")
arch.stop()
"""


def start_times():
    """Seconds from the start of a fresh process (before ``import glue_spherex.local_archive``) to:
    the import done, the server accepting connections, the tutorial TAP query answered."""
    out = subprocess.run([sys.executable, "-c", _START, TUTORIAL], capture_output=True,
                         text=True, check=True).stdout.split()
    return [float(x) for x in out[:3]] + [int(out[3])]


def median_time(fn, n):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    if "--ranges" in sys.argv[1:]:
        with LocalArchive() as arch:
            arch.wait_ready()
            _lazy_ranges(arch, arch.catalog.specs)
        return
    runs = [start_times() for _ in range(N_STARTS)]
    print(f"server start, {N_STARTS} fresh processes (no disk cache exists); seconds since the "
          "process began importing, min / median / max")
    for i, label in enumerate(("import glue_spherex.local_archive", "accepting connections",
                               f"tutorial TAP query answered ({runs[0][3]} rows)")):
        t = sorted(r[i] for r in runs)
        print(f"  {label:<42} {t[0]:.3f} / {statistics.median(t):.3f} / {t[-1]:.3f}")

    with LocalArchive() as arch:
        arch.wait_ready()
        specs = arch.catalog.specs
        print(f"catalog: {len(specs)} frames")
        t0 = time.perf_counter()
        with LocalArchive() as second:
            second.wait_ready()
        print(f"  another archive in the same process: ready in {time.perf_counter() - t0:.2f} s")

        svc = pyvo.dal.TAPService(arch.tap_url)
        n_rows = len(svc.search(TUTORIAL))
        t_tap = median_time(lambda: svc.search(TUTORIAL), 20)
        t_sql = median_time(lambda: arch.engine.query(TUTORIAL), 20)
        t_all = median_time(lambda: arch.engine.query(
            "SELECT COUNT(*) FROM spherex.plane WHERE "
            "1 = CONTAINS(POINT('ICRS', 210.80227, 54.34895), poly)"), 20)
        t_circle = median_time(lambda: arch.engine.query(
            "SELECT COUNT(*) FROM spherex.obscore WHERE "
            "1 = INTERSECTS(CIRCLE('ICRS', 210.80227, 54.34895, 0.5), s_region)"), 20)
        sia = pyvo.dal.SIA2Service(arch.sia_url)
        t_sia = median_time(lambda: sia.search(pos=(*M101, 0.01), collection="spherex_qr2"), 10)
        print(f"TAP tutorial query ({n_rows} rows): {t_tap * 1000:.1f} ms through pyvo, "
              f"{t_sql * 1000:.1f} ms in the engine")
        print(f"CONTAINS(POINT, poly) over all {len(specs)} rows: {t_all * 1000:.1f} ms "
              f"({t_all / len(specs) * 1e6:.2f} us/row); INTERSECTS(CIRCLE 0.5 deg, s_region): "
              f"{t_circle * 1000:.1f} ms")
        print(f"SIA2 query at M101 (r=0.01 deg) through pyvo: {t_sia * 1000:.1f} ms")

        d2 = [s for s in specs if s.detector == 2 and abs(s.dec - M101[1]) < 2
              and abs(s.ra - M101[0]) < 3]
        urls = [f"{arch.file_url(s)}?center={M101[0]},{M101[1]}d&size=0.1" for s in d2]
        urls = [u for u in urls if requests.head(u).status_code == 200][:60]

        def fetch_all(session, batch):
            return sum(len(session.get(u).content) for u in batch)

        with requests.Session() as s:
            fetch_all(s, urls[:3])
            t0 = time.perf_counter()
            nbytes = fetch_all(s, urls)
            dt = time.perf_counter() - t0
        print(f"cutouts (0.1 deg, {nbytes / len(urls) / 1e6:.1f} MB each), 1 client: "
              f"{len(urls) / dt:.1f} req/s, {nbytes / dt / 1e6:.0f} MB/s")

        def worker(batch):
            with requests.Session() as s:
                return fetch_all(s, batch)

        batches = [urls[i::10] for i in range(10)]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(10) as pool:
            nbytes = sum(pool.map(worker, batches))
        dt = time.perf_counter() - t0
        print(f"cutouts, 10 concurrent clients: {len(urls) / dt:.1f} req/s, "
              f"{nbytes / dt / 1e6:.0f} MB/s")

        spec = d2[-1]
        t0 = time.perf_counter()
        size = len(requests.get(arch.file_url(spec)).content)
        t_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        requests.get(arch.file_url(spec))
        t_second = time.perf_counter() - t0
        t0 = time.perf_counter()
        requests.get(arch.file_url(spec), headers={"Range": "bytes=0-65535"})
        t_range = time.perf_counter() - t0
        print(f"full frame ({size / 1e6:.1f} MB): first request {t_first:.2f} s (generated), "
              f"again {t_second:.2f} s (cached), 64 kB range {t_range * 1000:.1f} ms")
        _pipeline7(arch, specs)
        _lazy_ranges(arch, specs)

    with LocalArchive() as arch:
        arch.wait_ready()
        from glue_spherex.local_archive import FaultConfig
        arch.faults = FaultConfig(latency=0.15)
        missing = arch.url + "/ibe/data/spherex/qr2/level2/none.fits"

        def head(_):
            with requests.Session() as s:
                for _ in range(5):
                    s.head(missing)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(10) as pool:
            list(pool.map(head, range(10)))
        dt = time.perf_counter() - t0
        print(f"latency 0.15 s, 10 workers x 5 requests: {dt:.2f} s "
              f"({50 / dt * 0.15:.1f} responses per 150 ms; serial would give 1)")


def _pipeline7(arch, specs):
    """Pipeline-7 (QR3) cutouts with FLAGS compressed and plain, and a QR3 full frame."""
    r7 = [s for s in specs if getattr(s, "pipeline7", False) and s.detector == 2
          and abs(s.dec - M101[1]) < 2 and abs(s.ra - M101[0]) < 3]
    if not r7:
        print("pipeline 7: this archive serves no QR3 frames")
        return
    urls = [f"{arch.file_url(s)}?center={M101[0]},{M101[1]}d&size=0.1" for s in r7]
    urls = [u for u in urls if requests.head(u).status_code == 200][:30]
    with LocalArchive(cutout_flags="plain") as plain:
        plain.wait_ready()
        for label, base in (("FLAGS compressed", arch.url), ("FLAGS plain", plain.url)):
            batch = [u.replace(arch.url, base) for u in urls]
            with requests.Session() as s:
                s.get(batch[0])
                t0 = time.perf_counter()
                nbytes = sum(len(s.get(u).content) for u in batch)
                dt = time.perf_counter() - t0
            print(f"QR3 cutouts (0.1 deg, {nbytes / len(batch) / 1e6:.1f} MB each, EPSF whole), "
                  f"{label}, 1 client: {len(batch) / dt:.1f} req/s")
    t0 = time.perf_counter()
    size = len(requests.get(arch.file_url(r7[-1])).content)
    print(f"QR3 full frame ({size / 1e6:.1f} MB, 2040 RICE_1 rows): first request "
          f"{time.perf_counter() - t0:.2f} s (generated)")


def _lazy_ranges(arch, specs):
    """A ranged GET of 100 IMAGE rows of a frame never requested (S3 path; assembled from the
    frame's layout) against rendering the whole frame, and the archive's time per image for
    the catalog client's reads (headers, rows 900-1030, PSF planes) with and without it."""
    from glue_spherex.download.http import make_session
    from glue_spherex.download.ranges import RangeReader
    from glue_spherex.local_archive import files
    from glue_spherex.local_archive.s3 import BUCKET
    from glue_spherex.local_archive.synthetic import frame_bytes
    from glue_spherex.local_archive.synthetic.layout import ROW_BYTES
    from glue_spherex.products.partial import HEADER_CHUNK, PartialImage

    near = [s for s in specs if abs(s.dec - M101[1]) < 2 and abs(s.ra - M101[0]) < 3]
    a = 25920 + 900 * ROW_BYTES                           # rows 900-999 of IMAGE
    b = a + 100 * ROW_BYTES
    for label, group in (("QR2", [s for s in near if not s.pipeline7 and s.detector == 5]),
                         ("QR3", [s for s in near if s.pipeline7 and s.detector == 5])):
        if len(group) < 9:
            continue

        def rows(spec):
            return requests.get(f"{arch.url}/{BUCKET}/{spec.key}",
                                headers={"Range": f"bytes={a}-{b - 1}"})

        rows(group[8])                  # the detector's templates and tables, made once
        times = []
        for spec in group[:3]:
            t0 = time.perf_counter()
            r = rows(spec)
            times.append(time.perf_counter() - t0)
        t_rows = statistics.median(times)
        t0 = time.perf_counter()
        full = frame_bytes(group[0])
        t_full = time.perf_counter() - t0
        assert r.status_code == 206 and r.content == frame_bytes(group[2])[a:b]
        print(f"{label} frame never requested, ranged GET of 100 IMAGE rows (median of 3 frames): "
              f"{t_rows * 1000:.0f} ms; full render {t_full:.2f} s; ratio 1:{t_full / t_rows:.0f}")
        del full

        def client(spec, session):
            reader = RangeReader(f"{arch.url}/{BUCKET}/{spec.key}", session)
            head = reader.read(0, HEADER_CHUNK)
            partial = PartialImage(reader.read, reader.size, spec.key, head=head)
            partial.load_rows([(900, 1030)])
            partial.load_psf([1000.0, 1500.0], [950.0, 1000.0])
            return reader

        session = make_session((10, 120))
        hows = {"lazy": "assembled from the layout", "full": "full render per frame (as before)",
                "cached": "the same frames, now in the frame cache (the client's own time)"}
        for how, batch in (("lazy", group[3:5]), ("full", group[5:7]), ("cached", group[5:7])):
            saved = files.LAZY_MAX_ROWS
            files.LAZY_MAX_ROWS = -1 if how == "full" else saved  # -1: any range renders all
            try:
                t0 = time.perf_counter()
                readers = [client(s, session) for s in batch]
                dt = (time.perf_counter() - t0) / len(batch)
            finally:
                files.LAZY_MAX_ROWS = saved
            n = sum(rd.requests for rd in readers) / len(batch)
            mb = sum(rd.bytes_read for rd in readers) / len(batch) / 1e6
            print(f"  catalog client per {label} image ({n:.0f} ranged GETs, {mb:.1f} MB): "
                  f"{dt:.2f} s, {hows[how]}")


if __name__ == "__main__":
    main()
