"""One task of a catalog run: every source on one image, measured where the task runs.

:func:`measure_image` is what a Dask worker runs: ``via='s3'`` reads the image's headers and
the rows holding its sources by byte ranges of the S3 copy
(:class:`~glue_spherex.products.partial.PartialImage`); ``via='cutouts'`` asks the cutout
service for one cutout per cluster of nearby sources instead. Either way the sources are
measured by :mod:`glue_spherex.analysis.image_major` / the spectrum code, and a failure of the
image (after the fetcher's retries) becomes a row per source with status ``failed`` and its
reason -- recorded, never dropped. Each worker process keeps one pooled HTTP session and one
calibration store (WCS-WAVE tables and EPSFs read once per calibration).
"""

from __future__ import annotations

import contextlib
import threading
import time

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord

from ..analysis.image_major import WINDOW_MARGIN_PX, measure_sources
from ..analysis.spectrum import Frame, check_options, measure_point
from ..download.http import make_session
from ..download.ranges import RangeReader
from ..download.retry import RetryPolicy
from ..errors import SpherexError
from ..products.partial import HEADER_CHUNK, CalibrationStore, PartialImage
from ..products.spectral_image import SpectralImage

__all__ = ["measure_image", "ROW_FIELDS", "cluster_sources", "CUTOUT_CELL_DEG"]

#: The measurement's fields kept in each output row (with id, ra, dec and the image's).
ROW_FIELDS = ("wavelength", "wavelength_mean", "bandwidth", "flux", "flux_err", "mjd",
              "unmasked_fraction", "n_pixels", "n_masked", "x", "y", "background", "pipeline",
              "status")
#: Sources within a cell this wide share one cutout (``via='cutouts'``).
CUTOUT_CELL_DEG = 0.1
_state = {}
_state_lock = threading.Lock()


def _worker_state(timeout, threads):
    """The session and calibration store of this process (made on first use)."""
    with _state_lock:
        state = _state.get(tuple(timeout))
        if state is None:
            state = _state[tuple(timeout)] = (make_session(timeout, pool_size=max(threads, 4)),
                                              CalibrationStore())
        return state


def measure_image(task, options, limit=None):
    """Measure the sources of one image; returns ``(rows, stats)``.

    ``task``: ``key``, ``url`` (S3), ``access_url`` (the file's IBE URL), ``release``,
    ``version``, and the sources' ``ids``, ``ra``, ``dec`` (degrees). ``options``: ``via``,
    ``radius`` (arcsec), ``annulus`` (arcsec pair or None), ``aperture_correction``,
    ``min_unmasked_fraction``, ``timeout``, ``max_retries``, ``threads``. ``limit``: a
    context manager (or None) held during each request, e.g. a Dask ``Semaphore``.
    """
    session, store = _worker_state(options["timeout"], options.get("threads", 4))
    policy = RetryPolicy(max_retries=options["max_retries"])
    holder = (lambda: limit) if limit is not None else contextlib.nullcontext
    stats = dict(bytes=0, requests=0, retries=0, calibrations_reused=0, seconds=0.0)
    started = time.perf_counter()
    try:
        if options["via"] == "s3":
            rows = _via_s3(task, options, session, policy, holder, store, stats)
        else:
            rows = _via_cutouts(task, options, session, policy, holder, stats)
    except SpherexError as exc:
        rows = [dict(_failed(), id=i, ra=float(r), dec=float(d), reason=str(exc)[:500])
                for i, r, d in zip(task["ids"], task["ra"], task["dec"])]
    stats["seconds"] = time.perf_counter() - started
    for row in rows:
        row.update(obs_id=row.get("obs_id") or task.get("obs_id", ""),
                   detector=int(row.get("detector") or task.get("detector", 0)),
                   release=task["release"], version=task["version"], s3_key=task["key"])
        row.setdefault("reason", "")
    return [{k: row[k] for k in _OUT if k in row} for row in rows], stats


_OUT = ("id", "ra", "dec", "obs_id", "detector", "release", "version", "s3_key",
        *ROW_FIELDS, "reason")


def _failed():
    row = {k: np.nan for k in ROW_FIELDS}
    row.update(n_pixels=0, n_masked=0, pipeline=0, status="failed")
    return row


def _measure_options(options):
    annulus = options.get("annulus")
    return dict(radius=options["radius"] * u.arcsec,
                annulus=None if annulus is None else tuple(a * u.arcsec for a in annulus),
                aperture_correction=options["aperture_correction"],
                min_unmasked_fraction=options["min_unmasked_fraction"])


def _via_s3(task, options, session, policy, holder, store, stats):
    reader = RangeReader(task["url"], session, policy, holder)
    try:
        head = reader.read(0, HEADER_CHUNK)
        partial = PartialImage(reader.read, reader.size, task["url"], head=head,
                               calibrations=store, access_url=task["access_url"],
                               release=task["release"], processing=task["version"])
        rows = measure_sources(partial, task["ids"], task["ra"], task["dec"],
                               radii=task.get("radii"), **_measure_options(options))
        stats["calibrations_reused"] += partial.calibrations_reused
    finally:
        stats["bytes"] += reader.bytes_read
        stats["requests"] += reader.requests
        stats["retries"] += reader.retries
    for row in rows:
        row.update(obs_id=partial.product.obsid, detector=partial.product.detector)
    return rows


def cluster_sources(ra, dec, cell_deg=CUTOUT_CELL_DEG):
    """Groups of source indices that share a cutout: one per ``cell_deg`` cell of the sky."""
    ra, dec = np.asarray(ra, float), np.asarray(dec, float)
    if not len(ra):
        return []
    row = np.floor((dec + 90.0) / cell_deg).astype(int)
    scale = np.maximum(np.cos(np.radians((row + 0.5) * cell_deg - 90.0)), 1e-3)
    col = np.floor((ra % 360.0) * scale / cell_deg).astype(int)
    groups = {}
    for i, key in enumerate(zip(row.tolist(), col.tolist())):
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def _via_cutouts(task, options, session, policy, holder, stats):
    opts = _measure_options(options)
    radii = [r for r in (task.get("radii") or []) if np.isfinite(r)]
    reach = max([opts["radius"], *(r * u.arcsec for r in radii),
                 *(opts["annulus"][1:] if opts["annulus"] else [])])
    margin = reach.to_value(u.deg) + WINDOW_MARGIN_PX * 6.2 / 3600.0
    ra, dec = np.asarray(task["ra"], float), np.asarray(task["dec"], float)
    rows = [None] * len(ra)
    for group in cluster_sources(ra, dec):
        r, d = ra[group], dec[group]
        centre = SkyCoord(r, d, unit="deg").cartesian.mean()
        c = SkyCoord(centre, representation_type="cartesian").spherical
        lon, lat = float(c.lon.deg), float(c.lat.deg)
        far = SkyCoord(r, d, unit="deg").separation(SkyCoord(lon, lat, unit="deg")).deg.max()
        size = 2.0 * (far + margin)
        reader = RangeReader(task["access_url"], session, policy, holder)
        try:
            body = reader.get({"center": f"{lon:.8f},{lat:.8f}", "size": f"{size:.6f}"})
        finally:
            stats["bytes"] += reader.bytes_read
            stats["requests"] += reader.requests
            stats["retries"] += reader.retries
        with SpectralImage.open(body) as cutout:
            frame = Frame.from_product(cutout)
            x0, y0 = cutout.parent_origin
            for i in group:
                r = task["radii"][i] if task.get("radii") else float("nan")
                radius = r * u.arcsec if np.isfinite(r) else opts["radius"]
                _, radius, annulus, correction, fraction = check_options(
                    SkyCoord(ra[i], dec[i], unit="deg"), radius, opts["annulus"],
                    opts["aperture_correction"], opts["min_unmasked_fraction"])
                row = measure_point(0, frame, float(ra[i]), float(dec[i]), radius, annulus,
                                    correction, fraction)
                row.update(id=task["ids"][i], ra=float(ra[i]), dec=float(dec[i]),
                           x=row["x"] + x0, y=row["y"] + y0, obs_id=cutout.obsid,
                           detector=cutout.detector)
                rows[i] = row
    return rows
