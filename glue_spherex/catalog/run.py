"""Spectra of every source of a catalog, image-major, on Dask distributed, resumable.

:func:`extract_catalog` checks the catalog (:func:`~glue_spherex.analysis.read_sources`),
plans which images cover which source in one TAP upload query per batch
(:func:`~glue_spherex.irsa.catalog_plan.plan_catalog`), and runs one task per image
(:func:`~glue_spherex.catalog.tasks.measure_image`) on a Dask distributed cluster -- a
``LocalCluster`` by default, any cluster by scheduler address. A distributed ``Semaphore``
caps the requests in flight to the archive across the whole cluster. Results come back to
this process, which writes them as Parquet parts (:mod:`glue_spherex.catalog.output`), so a
task re-run by Dask after a worker died adds nothing twice, and a rerun after a crash or
Ctrl-C measures only the images not yet written.
"""

from __future__ import annotations

import logging
import math
import sys
import time
import uuid
from dataclasses import dataclass, field

import astropy.units as u
import numpy as np

from ..analysis.sources import SourceList, read_sources
from ..download.ranges import S3_ENDPOINT, s3_url
from ..errors import SpherexInputError
from ..fitsbytes.atomic import output_lock
from ..irsa.catalog_plan import S3_BUCKET, plan_catalog
from ..irsa.config import IRSA_URL
from ..irsa.core import Spherex
from .output import CatalogOutput
from .tasks import measure_image

__all__ = ["extract_catalog", "CatalogResult", "VIA", "DEFAULT_MAX_REQUESTS"]

#: Where pixels come from: byte ranges of the S3 copy, or the cutout service.
VIA = ("s3", "cutouts")
#: Requests in flight to the archive across the whole cluster (be kind to IRSA).
DEFAULT_MAX_REQUESTS = 16
#: Rows are written as a part every this many images or seconds (what a kill can lose).
_PART_IMAGES = 100
_PART_SECONDS = 5.0


@dataclass
class CatalogResult:
    """What a catalog run did. ``summary`` is one row per source (also ``_summary.ecsv``)."""

    path: object
    sources: int
    rejected: int
    images: int
    images_done_before: int
    rows: int
    failed_images: int
    bytes: int
    requests: int
    retries: int
    seconds: float
    dashboard: str | None
    summary: object = field(repr=False, default=None)


def extract_catalog(sources, output, *, via="s3", scheduler=None, workers=None,
                    threads_per_worker=8, radius=6 * u.arcsec, annulus=None,
                    aperture_correction="psf", min_unmasked_fraction=0.5, collection="wide",
                    release="qr2", bandpass=None, time_range=None, max_requests=None,
                    s3_endpoint=None, archive=None, progress=True, batch_size=50_000):
    """Measure every source of ``sources`` on every image covering it; write ``output``.

    Parameters
    ----------
    sources : path or Table
        ECSV, CSV, FITS or VOTable file, or a Table: id, RA, Dec (degrees), optionally a
        per-source aperture radius (see :func:`~glue_spherex.analysis.read_sources`).
    output : path
        The Parquet dataset directory (``OUT.parquet``); an existing one of a run with the
        same options is resumed.
    via : {'s3', 'cutouts'}
        Byte ranges of the S3 copy (default), or one cutout per cluster of sources.
    scheduler : str, optional
        Address of a Dask scheduler (``tcp://host:8786``); default a LocalCluster.
    workers, threads_per_worker : int
        The LocalCluster's worker processes (default 2) and threads in each.
    radius, annulus, aperture_correction, min_unmasked_fraction
        As in :func:`~glue_spherex.analysis.extract_spectrum`.
    collection, release, bandpass, time_range
        Which images, as in :meth:`SpherexClass.query_region`.
    max_requests : int
        Requests in flight across the cluster (default :data:`DEFAULT_MAX_REQUESTS`).
    s3_endpoint : str, optional
        Where the bucket answers; default AWS for IRSA, the archive itself otherwise (the
        local archive emulates the bucket).
    """
    if via not in VIA:
        raise SpherexInputError(f"via {via!r} is not accepted; give one of {', '.join(VIA)}")
    dask_client = _dask()
    max_requests = _positive(DEFAULT_MAX_REQUESTS if max_requests is None else max_requests,
                             "max_requests", 1000)
    threads_per_worker = _positive(threads_per_worker, "threads_per_worker", 256)
    if workers is not None:
        workers = _positive(workers, "workers", 256)
    radius_q = _arcsec(radius, "radius")
    annulus_q = None if annulus is None else tuple(_arcsec(a, "annulus") for a in annulus)
    client_archive = archive if archive is not None else Spherex
    cfg = client_archive.settings
    endpoint = (s3_endpoint or (S3_ENDPOINT if cfg.archive_url == IRSA_URL
                                else cfg.archive_url)).rstrip("/")
    checked = sources if isinstance(sources, SourceList) else read_sources(sources)
    options = dict(via=via, radius=radius_q, annulus=annulus_q,
                   aperture_correction=aperture_correction,
                   min_unmasked_fraction=float(min_unmasked_fraction),
                   collection=str(collection), release=str(release),
                   bandpass=None if bandpass is None else str(bandpass),
                   time_range=None if time_range is None else str(time_range),
                   archive=cfg.archive_url, s3_endpoint=endpoint,
                   sources=len(checked.sources))
    started = time.perf_counter()
    with output_lock(CatalogOutput.manifest_of(output)):
        out = CatalogOutput(output, options)
        plan = out.load_plan()
        if plan is None:
            plan = plan_catalog(checked, collection=collection, release=release,
                                bandpass=bandpass, time=time_range, batch_size=batch_size,
                                archive=client_archive)
            out.save_plan(plan)
            out.save_rejected(checked.rejected)
        tasks = _tasks(plan, endpoint, checked.sources)
        done = out.done_keys()
        todo = [t for t in tasks if t["key"] not in done]
        task_options = dict(via=via, radius=radius_q, annulus=annulus_q,
                            aperture_correction=aperture_correction,
                            min_unmasked_fraction=float(min_unmasked_fraction),
                            timeout=cfg.timeout, max_retries=cfg.max_retries,
                            threads=threads_per_worker)
        totals = dict(bytes=0, requests=0, retries=0, rows=0, failed=0)
        failures = []
        dashboard = None
        if todo:
            dashboard = _run(dask_client, todo, task_options, out, totals, failures,
                             scheduler=scheduler,
                             workers=workers, threads=threads_per_worker,
                             max_requests=max_requests, progress=progress)
        out.write_failed(failures)
        summary = out.write_summary(checked.sources, failures)
    return CatalogResult(path=out.path, sources=len(checked.sources),
                         rejected=len(checked.rejected), images=len(tasks),
                         images_done_before=len(tasks) - len(todo), rows=totals["rows"],
                         failed_images=totals["failed"], bytes=totals["bytes"],
                         requests=totals["requests"], retries=totals["retries"],
                         seconds=time.perf_counter() - started, dashboard=dashboard,
                         summary=summary)


def _tasks(plan, endpoint, sources):
    """One task per image of the plan (the plan is image-major: sorted by image)."""
    own = dict(zip(np.asarray(sources["id"], dtype=str).tolist(),
                   np.asarray(sources["radius"].to_value(u.arcsec), float).tolist()))
    keys = np.asarray(plan["s3_key"], dtype=str)
    if not len(keys):
        return []
    bounds = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True])
    ids = np.asarray(plan["source_id"], dtype=str)
    ra = np.asarray(plan["ra"], float)
    dec = np.asarray(plan["dec"], float)
    tasks = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        tasks.append(dict(key=str(keys[a]), url=s3_url(endpoint, S3_BUCKET, str(keys[a])),
                          access_url=str(plan["access_url"][a]).split("?", 1)[0],
                          release=str(plan["release"][a]), version=str(plan["version"][a]),
                          obs_id=str(plan["obs_id"][a]), detector=int(plan["detector"][a]),
                          ids=ids[a:b].tolist(), ra=ra[a:b].tolist(), dec=dec[a:b].tolist(),
                          radii=[own.get(i, math.nan) for i in ids[a:b].tolist()]))
    return tasks


def _run(dask, todo, task_options, out, totals, failures, *, scheduler, workers, threads,
         max_requests, progress):
    """Submit the tasks, write parts as results arrive; returns the dashboard address."""
    from distributed import Client, LocalCluster, Semaphore, as_completed
    from tqdm import tqdm

    cluster = None
    if scheduler:
        client = Client(scheduler, timeout="20s")
    else:
        cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=threads,
                               processes=True, dashboard_address=":0",
                               silence_logs=logging.ERROR)
        client = Client(cluster)
    try:
        dashboard = client.dashboard_link
        if progress:
            print(f"Dask dashboard: {dashboard}", file=sys.stderr)
        limit = Semaphore(max_leases=max_requests, name=f"glue-spherex-{uuid.uuid4().hex}")
        futures = [client.submit(measure_image, t, task_options, limit, key=f"image-{i}-"
                                 f"{uuid.uuid4().hex[:8]}", pure=False)
                   for i, t in enumerate(todo)]
        pending, images, last = [], 0, time.monotonic()
        bar = tqdm(total=len(futures), unit="image", disable=not progress, file=sys.stderr,
                   desc="images")
        try:
            for future in as_completed(futures):
                rows, stats = future.result()
                future.release()
                for k in ("bytes", "requests", "retries"):
                    totals[k] += stats[k]
                if rows and rows[0]["status"] == "failed":  # kept aside: tried again next run
                    totals["failed"] += 1
                    failures.extend(rows)
                else:
                    pending.extend(rows)
                    images += 1
                bar.update(1)
                bar.set_postfix_str(f"{totals['bytes'] / 1e6:.0f} MB", refresh=False)
                if len(pending) >= _PART_IMAGES * 50 or time.monotonic() - last > _PART_SECONDS:
                    totals["rows"] += len(pending)
                    out.write_part(pending)
                    pending, images, last = [], 0, time.monotonic()
        finally:
            bar.close()
            totals["rows"] += len(pending)
            out.write_part(pending)  # what arrived is kept, also on Ctrl-C
            for f in futures:
                if not f.done():
                    f.cancel()
        return dashboard
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _dask():
    try:
        import distributed  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise SpherexInputError(
            f"catalog runs need Dask distributed and pyarrow ({exc.name} is not installed); "
            "pip install 'glue-spherex[catalog]'") from None
    return True


def _positive(value, what, high):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or \
            not 1 <= value <= high:
        raise SpherexInputError(f"{what} must be a whole number from 1 to {high}, got {value!r}")
    return int(value)


def _arcsec(value, what):
    try:
        q = u.Quantity(value, u.arcsec) if not isinstance(value, u.Quantity) else value.to(u.arcsec)
    except (TypeError, ValueError, u.UnitsError):
        raise SpherexInputError(f"{what} must be an angle such as 6 arcsec, got {value!r}") \
            from None
    if not (q.isscalar and math.isfinite(q.value) and q.value > 0):
        raise SpherexInputError(f"{what} must be a positive angle, got {value!r}")
    return float(q.value)

