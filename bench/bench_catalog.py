"""Benchmark: spectra of a 1,000-source catalog, image-major from S3 byte ranges vs per source.

A local archive runs in its own process with a latency per request and a bandwidth cap per
response. The catalog is the synthetic universe's sources within ``--field`` degrees of M101
plus random positions there, ``--sources`` in all. Methods:

- ours: ``extract_catalog`` (``via='s3'``) on a Dask LocalCluster of 1 and of 2 workers
  (8 threads each), started here so that the workers' peak RSS can be read; wall time
  includes the TAP upload plan;
- per-source cutouts through our fetcher: for ``--sample`` sources, ``query_region`` +
  ``fetch_to_file`` (0.1 deg cutouts, 10 connections) + ``extract_spectrum``, then
  extrapolated to all sources (labelled so);
- the seed notebook's method (``bench_fetch.run_tutorial``: ``fits.open(url)`` per row in a
  thread pool, one ``writeto``) for one source, capped, extrapolated (its photometry is not
  even counted).

The bandpass filter (``--bandpass``, default D2) keeps the run to ~90 images. Ratios are from
one run. Usage::

    python bench/bench_catalog.py                  # 1000 sources, L=0.15 s, 2 MB/s/response
    python bench/bench_catalog.py --sources 200    # quick check
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

M101 = (210.80227, 54.34895)
TARGETS = {"bytes: cutouts/ours": 20.0, "time: cutouts/ours": 10.0, "peak RSS/worker (MB)": 1024}


def make_catalog(path, n, field, seed=1):
    import numpy as np
    from astropy.table import Table

    from glue_spherex.local_archive.synthetic import default_sky
    from glue_spherex.products.celestial import separation_deg

    sky = default_sky()
    known = [(s.name, s.ra, s.dec) for s in sky.sources
             if separation_deg(s.ra, s.dec, *M101) < field][:n]
    rng = np.random.default_rng(seed)
    ids, ra, dec = [k[0] for k in known], [k[1] for k in known], [k[2] for k in known]
    while len(ids) < n:  # uniform on the sky within the field
        r = field * np.sqrt(rng.uniform())
        t = rng.uniform(0, 2 * np.pi)
        ids.append(f"rnd{len(ids):05d}")
        dec.append(M101[1] + r * np.sin(t))
        ra.append(M101[0] + r * np.cos(t) / np.cos(np.radians(M101[1])))
    Table({"id": ids, "ra": ra, "dec": dec}).write(path, format="ascii.ecsv", overwrite=True)
    return len(known)


def run_ours(url, catalog, out, workers, bandpass, time_range):
    from distributed import Client, LocalCluster

    from glue_spherex.catalog import extract_catalog
    from glue_spherex.irsa import SpherexClass

    with LocalCluster(n_workers=workers, threads_per_worker=8, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        t0 = time.perf_counter()
        result = extract_catalog(catalog, out, scheduler=cluster.scheduler_address,
                                 bandpass=bandpass, time_range=time_range,
                                 archive=SpherexClass(archive_url=url),
                                 progress=False)
        seconds = time.perf_counter() - t0
        rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result, seconds, max(rss.values())


def run_per_source(url, catalog, sample, bandpass, time_range, tmp):
    from astropy.coordinates import SkyCoord
    from astropy.table import Table

    from glue_spherex.analysis.spectrum import extract_spectrum
    from glue_spherex.download.fetcher import fetch_to_file
    from glue_spherex.irsa import SpherexClass

    cat = Table.read(catalog)
    archive = SpherexClass(archive_url=url)
    seconds = bytes_ = requests = points = 0
    for row in cat[:sample]:
        coord = SkyCoord(row["ra"], row["dec"], unit="deg")
        t0 = time.perf_counter()
        images = archive.query_region(coord, size="0.1deg", bandpass=bandpass,
                                      time=time_range)
        path = os.path.join(tmp, f"{row['id']}.fits")
        summary = fetch_to_file(images, path, target=coord, size="0.1deg", workers=10)
        table = extract_spectrum(path, coord)
        seconds += time.perf_counter() - t0
        bytes_ += summary.bytes
        requests += len(images) + 1
        points += int((table["status"] == "ok").sum())
        os.remove(path)
    return seconds, bytes_, requests, points


def run_notebook(url, catalog, bandpass, time_range, tmp, cap):
    """The tutorial's fetch for the first source (its photometry not counted)."""
    import multiprocessing as mp

    from astropy.coordinates import SkyCoord
    from astropy.table import Table

    from glue_spherex.irsa import SpherexClass

    row = Table.read(catalog)[0]
    images = SpherexClass(archive_url=url).query_region(
        SkyCoord(row["ra"], row["dec"], unit="deg"), size="0.1deg", bandpass=bandpass,
        time=time_range)
    plan = os.path.join(tmp, "nb_plan.ecsv")
    images.write(plan, format="ascii.ecsv", overwrite=True)
    proc = mp.get_context("spawn").Process(target=_notebook_child,
                                           args=(plan, os.path.join(tmp, "nb.fits")))
    t0 = time.perf_counter()
    proc.start()
    proc.join(cap)
    capped = proc.is_alive()
    if capped:
        proc.terminate()
        proc.join()
    return time.perf_counter() - t0, len(images), capped


def _notebook_child(plan, out):
    import logging

    import astropy  # noqa: F401  (before touching its logger)
    from bench_fetch import run_tutorial

    logging.getLogger("astropy").setLevel(logging.ERROR)  # the tutorial silences SIP notes

    run_tutorial(plan, out, 10)


def main(argv=None):
    from bench_fetch import start_archive

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sources", type=int, default=1000)
    ap.add_argument("--field", type=float, default=0.25, help="radius of the field (deg)")
    ap.add_argument("--latency", type=float, default=0.15)
    ap.add_argument("--bandwidth", type=float, default=2e6, help="bytes/s per response")
    ap.add_argument("--bandpass", default="D2")
    ap.add_argument("--time", nargs=2, type=float, metavar=("MJD1", "MJD2"),
                    help="only images overlapping this interval (fewer images, quicker)")
    ap.add_argument("--sample", type=int, default=3, help="sources fetched per source")
    ap.add_argument("--cap", type=float, default=120.0, help="seconds for the notebook")
    args = ap.parse_args(argv)
    time_range = tuple(args.time) if args.time else None

    tmp = tempfile.mkdtemp(prefix="bench-catalog-")
    proc, url = start_archive(args.latency, bandwidth=int(args.bandwidth))
    try:
        catalog = os.path.join(tmp, "catalog.ecsv")
        known = make_catalog(catalog, args.sources, args.field)
        print(f"{args.sources} sources ({known} of the synthetic universe) within "
              f"{args.field} deg of M101, {args.bandpass}; archive latency {args.latency} s, "
              f"{args.bandwidth / 1e6:g} MB/s per response"
              + (f", images in MJD {time_range[0]:g}-{time_range[1]:g}" if time_range else ""))
        ours = {}
        for workers in (1, 2):
            out = os.path.join(tmp, f"ours{workers}.parquet")
            ours[workers] = run_ours(url, catalog, out, workers, args.bandpass, time_range)
            shutil.rmtree(out)
        res, t1, rss1 = ours[1]
        _, t2, rss2 = ours[2]
        measurements = res.rows
        cs, cb, cr, _ = run_per_source(url, catalog, args.sample, args.bandpass, time_range, tmp)
        scale = args.sources / args.sample
        nb_t, nb_n, capped = run_notebook(url, catalog, args.bandpass, time_range, tmp, args.cap)
        nb_total = nb_t * args.sources
        print(f"{res.images} images, {measurements} source x image measurements")
        print(f"{'method':44s} {'wall (s)':>10s} {'MB moved':>10s} {'requests':>9s} "
              f"{'peak RSS/worker':>15s}")
        print(f"{'ours, image-major S3 ranges, 1 worker':44s} {t1:10.1f} "
              f"{res.bytes / 1e6:10.1f} {res.requests:9d} {rss1:12.0f} MB")
        print(f"{'ours, image-major S3 ranges, 2 workers':44s} {t2:10.1f} "
              f"{ours[2][0].bytes / 1e6:10.1f} {ours[2][0].requests:9d} {rss2:12.0f} MB")
        print(f"{'per-source cutouts, our fetcher (extrap.)':44s} {cs * scale:10.1f} "
              f"{cb * scale / 1e6:10.1f} {int(cr * scale):9d}    ({args.sample} sources "
              f"measured: {cs:.1f} s, {cb / 1e6:.0f} MB)")
        print(f"{'seed notebook per source (extrap.)':44s} {nb_total:10.1f} "
              f"{'':>10s} {nb_n * args.sources:9d}    (1 source: {nb_t:.1f} s"
              f"{', capped' if capped else ''}; fetch only)")
        best = min(t1, t2)
        print(f"throughput: {measurements / t1:.0f} measurements/s with 1 worker, "
              f"{measurements / t2:.0f} with 2 ({t1 / t2:.2f}x)")
        ratios = {"bytes: cutouts/ours": cb * scale / max(res.bytes, 1),
                  "time: cutouts/ours": cs * scale / best,
                  "peak RSS/worker (MB)": max(rss1, rss2)}
        for name, value in ratios.items():
            target = TARGETS[name]
            ok = value <= target if "RSS" in name else value >= target
            print(f"{name:28s} {value:10.1f}   target {'<=' if 'RSS' in name else '>='} "
                  f"{target:g}: {'met' if ok else 'NOT met'}")
        print(f"per image (ours, 2 workers): {t2 / max(res.images, 1):.2f} s wall, "
              f"{res.bytes / max(res.images, 1) / 1e6:.2f} MB, "
              f"{res.requests / max(res.images, 1):.1f} requests")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
