"""Which images cover which sources of a catalog, in one TAP query per batch.

:func:`plan_catalog` uploads the checked sources (``TAP_UPLOAD.cat``: ``idx``, ``ra``,
``dec``) and joins them against the image footprints with the footprint test and filters of
:meth:`SpherexClass.query_region <glue_spherex.irsa.core.SpherexClass.query_region>`,
``batch_size`` sources per query (a batch whose answer the service cuts or refuses at its row,
size or time limit is asked again in halves), keeping the newest processing version of each exposure and
detector per source. The result is one row per source x image, image-major (sorted by image,
then source), with the file's URL and its key in the public S3 bucket.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pyvo
import requests
from astropy.table import Table

from ..download.http import make_session
from ..errors import SpherexInputError, SpherexServiceError
from .core import (
    Spherex,
    build_upload_adql,
    parse_bandpasses,
    parse_collection,
    parse_release,
    parse_time,
    select_versions,
    tap_columns,
)

__all__ = ["plan_catalog", "PLAN_COLUMNS", "S3_BUCKET", "MAX_BATCH"]

#: The public bucket mirroring IRSA's files; key = the path after ``/ibe/data/spherex/``.
S3_BUCKET = "nasa-irsa-spherex"
#: Largest batch: IRSA and the local archive accept uploads of up to 200,000 rows.
MAX_BATCH = 200_000
#: MAXREC of each query; a batch whose answer is cut (or refused as too large) is split.
MAX_PLAN_ROWS = 2_000_000
PLAN_COLUMNS = ("source_id", "ra", "dec", "obs_id", "detector", "bandpass", "access_url",
                "s3_key", "release", "version", "collection", "t_min", "t_max")
_IBE = "/ibe/data/spherex/"


def plan_catalog(sources, *, collection="wide", release="qr2", bandpass=None, time=None,
                 versions="newest", batch_size=50_000, archive=None):
    """The images covering each source: a Table of :data:`PLAN_COLUMNS`.

    Parameters
    ----------
    sources : SourceList, Table or path
        Checked sources (:func:`glue_spherex.analysis.sources.read_sources`), or anything it
        reads (its rejected rows are left out and counted in ``meta['rejected']``).
    collection, release, bandpass, time, versions
        As in :meth:`SpherexClass.query_region`.
    batch_size : int
        Sources uploaded per TAP query (1 to :data:`MAX_BATCH`).
    archive : SpherexClass, optional
        The archive to ask (default: the configured one).
    """
    from ..analysis import SourceList, read_sources

    checked = sources if isinstance(sources, SourceList) else read_sources(sources)
    table = checked.sources
    dets = parse_bandpasses(bandpass)
    rel = parse_release(release)
    collections = parse_collection(collection, rel)
    mjd = parse_time(time)
    keep = str(versions).strip().lower() if isinstance(versions, str) else None
    if keep not in ("newest", "all"):
        raise SpherexInputError(f"versions {str(versions)!r} is not accepted; give newest or all")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or not 1 <= batch_size <= MAX_BATCH:
        raise SpherexInputError(f"batch_size {batch_size!r} must be a whole number from 1 to "
                                f"{MAX_BATCH:,}")
    cfg = (archive if archive is not None else Spherex).settings
    ids = np.asarray(table["id"], dtype=str)
    ra = np.asarray(table["ra"].to_value("deg") if hasattr(table["ra"], "unit")
                    and table["ra"].unit else table["ra"], float)
    dec = np.asarray(table["dec"].to_value("deg") if hasattr(table["dec"], "unit")
                     and table["dec"].unit else table["dec"], float)
    adql = build_upload_adql(dets, collections, mjd, upload="cat")
    parts = []
    session = make_session(cfg.timeout)
    try:
        service = pyvo.dal.TAPService(cfg.tap_url, session=session)
        pending = [(start, min(start + batch_size, len(ids)))
                   for start in range(0, len(ids), batch_size)][::-1]
        while pending:
            start, stop = pending.pop()
            upload = Table({"idx": np.arange(start, stop, dtype=np.int64),
                            "ra": ra[start:stop], "dec": dec[start:stop]})
            try:
                parts.append(_run(service, cfg, adql, upload, rel, keep == "newest"))
            except _TooBig as e:
                if stop - start == 1:
                    raise SpherexServiceError(str(e)) from None
                mid = (start + stop) // 2          # the answer was cut: ask in two halves
                pending += [(mid, stop), (start, mid)]
    finally:
        session.close()
    out = _assemble(parts, ids, ra, dec)
    out.meta.update(release=rel, collection=str(collection).lower(), versions=keep,
                    bandpass=",".join(f"D{d}" for d in dets), sources=len(ids),
                    rejected=len(checked.rejected), batches=len(parts),
                    archive_url=cfg.archive_url, s3_bucket=S3_BUCKET)
    return out


class _TooBig(Exception):
    """The service cut or refused the answer of a batch for its size."""


#: What a TAP service says when an answer is over its size or time limit (the local
#: archive's 64 MB and 30 s; IRSA's sync limits) -- the batch is then split.
_TOO_BIG = re.compile(r"result is larger than|too large|row limit|exceeds the maximum"
                      r"|time limit|timed? ?out", re.IGNORECASE)


def _run(service, cfg, adql, upload, release, newest):
    what = f"TAP service {cfg.tap_url}"
    try:
        result = service.run_sync(adql, uploads={"cat": upload}, maxrec=MAX_PLAN_ROWS)
        if getattr(result, "query_status", None) == "OVERFLOW":
            raise _TooBig(f"{what} truncated the plan of {len(upload):,} sources at its row "
                          "limit")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = result.to_table()
    except (pyvo.dal.DALServiceError, pyvo.dal.DALQueryError, pyvo.dal.DALFormatError,
            requests.RequestException, ValueError, TypeError, KeyError) as exc:
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        if isinstance(exc, pyvo.dal.DALQueryError) and _TOO_BIG.search(text):
            raise _TooBig(f"TAP upload query to {cfg.tap_url} failed: {text}") from None
        raise SpherexServiceError(f"TAP upload query to {cfg.tap_url} failed: {text}") from None
    if "idx" not in data.colnames:
        raise SpherexServiceError(f"{what} returned no column idx")
    cols = tap_columns(data, cfg.archive_url, what)
    idx = np.asarray(data["idx"], dtype=np.int64)
    lo, hi = int(upload["idx"][0]), int(upload["idx"][-1])
    if len(idx) and (idx.min() < lo or idx.max() > hi):
        raise SpherexServiceError(f"{what} returned a source idx outside the uploaded rows")
    kept, rels, tags = select_versions(cols, release, newest, groups=idx.tolist())
    return {"idx": idx[kept],
            "access_url": [cols["access_url"][i] for i in kept],
            "obs_id": [cols["obs_id"][i] for i in kept],
            "detector": np.asarray(cols["detector"], int)[kept],
            "collection": [cols["collection"][i] for i in kept],
            "release": [rels[i] for i in kept], "version": [tags[i] for i in kept],
            "t_min": np.asarray(cols["t_min"], float)[kept],
            "t_max": np.asarray(cols["t_max"], float)[kept]}


def _assemble(parts, ids, ra, dec):
    def cat(name, dtype):
        chunks = [np.asarray(p[name], dtype=dtype) for p in parts if len(p["idx"])]
        return np.concatenate(chunks) if chunks else np.array([], dtype=dtype)

    idx = cat("idx", np.int64)
    access = cat("access_url", str)
    order = np.lexsort((idx, access)) if len(idx) else np.array([], dtype=int)
    idx, access = idx[order], access[order]
    det = cat("detector", int)[order]
    keys = np.array([a.split("?", 1)[0].split(_IBE, 1)[1] if _IBE in a else ""
                     for a in access.tolist()], dtype=str) if len(idx) else np.array([], str)
    out = Table({
        "source_id": ids[idx] if len(idx) else np.array([], dtype=str),
        "ra": ra[idx], "dec": dec[idx],
        "obs_id": cat("obs_id", str)[order],
        "detector": det,
        "bandpass": np.array([f"SPHEREx-D{d}" for d in det.tolist()], dtype=str)
        if len(idx) else np.array([], dtype=str),
        "access_url": access, "s3_key": keys,
        "release": cat("release", str)[order], "version": cat("version", str)[order],
        "collection": cat("collection", str)[order],
        "t_min": cat("t_min", float)[order], "t_max": cat("t_max", float)[order],
    }, names=PLAN_COLUMNS)
    for name, unit in (("ra", "deg"), ("dec", "deg"), ("t_min", "d"), ("t_max", "d")):
        out[name].unit = unit
    return out


