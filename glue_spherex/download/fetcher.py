"""Concurrent, retrying, resumable download of SPHEREx cutouts.

:func:`fetch_cutouts` yields one :class:`FetchResult` per requested cutout *as each completes*;
:func:`fetch_to_file` streams them into a combined MEF (:class:`~glue_spherex.products.combined.
CombinedWriter`) so memory stays bounded however many cutouts there are. :class:`Fetcher`
runs the batch: a pool of keep-alive workers, every body validated as a complete Level-2
FITS file, transient failures retried with jittered back-off, an AIMD limit on 429/503,
only trusted hosts and bounded bodies, an optional cache, prompt cancellation, and an early
stop: a pipeline-7 body is read only up to its EPSF header when the run already holds its EPSF
and WCS-WAVE tables, the rest filled in from them byte for byte (:mod:`.earlystop`); every cutout
ends ``'ok'``, ``'failed'`` (with the reason) or ``'cancelled'``. How a batch runs and which
hosts are followed: ``docs/python.rst`` ("Downloading the cutouts into one file").
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import math
import queue
import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import numpy as np
import requests
import urllib3

from ..errors import SpherexError, SpherexFormatError, SpherexInputError
from ..fitsbytes.scan import scan_spectral_image, unwrap
from ..irsa.config import IRSA_URL, settings
from .cache import CutoutCache
from .earlystop import BodyWatch, CalibrationStore
from .http import ConnectionTracker, make_session
from .retry import (
    PUSHBACK_STATUSES,
    RetryPolicy,
    body_error_decision,
    parse_retry_after,
    status_decision,
    transfer_error_decision,
)

__all__ = ["FetchResult", "FetchSummary", "Fetcher", "fetch_cutouts",
           "fetch_to_file", "plausible_size", "MAX_BODY_BYTES",
           "MAX_REDIRECTS", "MAX_URL_CHARS"]

OK, FAILED, CANCELLED = "ok", "failed", "cancelled"
_POLL = 0.1

#: The largest cutout body accepted, before and after gzip: a whole-detector cutout (2040 x
#: 2040 px, the largest the archive makes) is about 72 MB.
MAX_BODY_BYTES = 128 * 2**20
_BYTES_PER_PIXEL = 16           # IMAGE, FLAGS, VARIANCE, ZODI: 4 bytes each
_FIXED_BYTES = 8_000_000        # PSF cube (4.9 MB) or EPSF table (1.9 MB), headers, WCS-WAVE
MAX_REDIRECTS = 5
MAX_URL_CHARS = 8192
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_READ_CHUNK = 1 << 20


@dataclass
class FetchResult:
    """Outcome of one cutout.

    Attributes
    ----------
    cutout_index : int
        1-based index of the cutout in the query table (or position in the URL list).
    url : str
    status : {'ok', 'failed', 'cancelled'}
    path : Path or None
        Cache file holding the cutout, when a cache is used.
    reason : str
        Why it failed or was cancelled; for an ok result, empty unless the cache could not be
        written.
    attempts : int
        HTTP requests made (0 when it came from the cache).
    bytes : int
        Body bytes read off the network, as sent (compressed if they were), over every
        attempt, failed and cut-short ones included (0 from the cache).
    bytes_saved : int
        Bytes of the body not read off the network but filled in, byte for byte, from the
        EPSF and WCS-WAVE tables the run already held (early stop; 0 for a full download).
    seconds : float
        Wall time from the first attempt to the outcome.
    from_cache : bool
    data : bytes or None
        The validated, uncompressed FITS file of a downloaded cutout; None for a cache hit
        (read ``path``, or use :attr:`product`, which maps the file).
    """

    cutout_index: int
    url: str
    status: str
    path: Path | None = None
    reason: str = ""
    attempts: int = 0
    bytes: int = 0
    seconds: float = 0.0
    from_cache: bool = False
    data: bytes | None = field(default=None, repr=False)
    bytes_saved: int = 0
    _product: object = field(default=None, repr=False, compare=False)

    @property
    def ok(self):
        return self.status == OK

    @property
    def product(self):
        """The cutout as a :class:`~glue_spherex.products.spectral_image.SpectralImage` (None unless ok)."""
        if self.status != OK:
            return None
        if self._product is None:
            from ..products.spectral_image import SpectralImage, provenance

            product = SpectralImage.open(self.data if self.data is not None else self.path)
            # bytes and cache files carry no path: release and processing tag from the URL
            found = provenance(self.url)
            product.access_url = product.access_url or self.url
            product.release = product.release or found["release"]
            product.processing = product.processing or found["processing"]
            self._product = product
        return self._product


@dataclass
class FetchSummary:
    """What :func:`fetch_to_file` did."""

    path: Path
    total: int
    ok: int
    failed: int
    cancelled: int
    from_cache: int
    bytes: int
    seconds: float
    failures: list = field(default_factory=list)  # (cutout_index, reason)
    #: cutouts taken from an unfinished earlier file at ``path`` (a resumed run)
    resumed: int = 0
    #: downloaded cutouts that could not be written to the cache, and why (the first reason)
    uncached: int = 0
    cache_problem: str = ""
    #: what was kept of each PSF extension (``'full'`` or ``'none'``)
    psf: str = "full"
    #: bytes of PSF extensions not written to the file (``psf='none'``)
    psf_bytes_saved: int = 0
    #: bytes of cutouts not downloaded because the run already held their EPSF and WCS-WAVE
    #: tables (early stop); the file has them all the same
    bytes_saved: int = 0

    @property
    def complete(self):
        return self.ok == self.total

    @property
    def bytes_downloaded(self):
        """Body bytes read off the network (the same as :attr:`bytes`)."""
        return self.bytes


@dataclass(eq=False)
class _Task:
    position: int
    cutout_index: int
    url: str
    attempts: int = 0
    bytes: int = 0
    saved: int = 0
    started: float | None = None
    reason: str = ""


class _Schedule:
    """Tasks ordered by the time they may next run; tracks tasks not yet finished."""

    def __init__(self, tasks):
        self._cond = threading.Condition()
        self._heap = [(0.0, t.position, t) for t in tasks]
        heapq.heapify(self._heap)
        self._unfinished = len(tasks)
        self._stopped = False

    def next(self):
        """The next runnable task, or None when every task has finished."""
        with self._cond:
            while True:
                if self._heap and (self._stopped or self._heap[0][0] <= time.monotonic()):
                    return heapq.heappop(self._heap)[2]
                if self._unfinished == 0:
                    return None
                timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                self._cond.wait(timeout if timeout is None else max(timeout, 0.0))

    def retry_later(self, task, delay):
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay, task.position, task))
            self._cond.notify()

    def finished(self):
        with self._cond:
            self._unfinished -= 1
            self._cond.notify_all()

    def stop(self):
        """Make every queued task runnable now (workers then report them cancelled)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()


class _AdaptiveLimit:
    """AIMD cap on requests in flight: halve on push-back, +1 per window of successes."""

    def __init__(self, maximum):
        self.maximum = maximum
        self.window = float(maximum)
        self.in_flight = 0
        self._last_cut = -math.inf
        self._cond = threading.Condition()

    @property
    def allowed(self):
        return max(1, int(self.window))

    def acquire(self, stopped):
        """Wait for a slot; returns the start time, or None if ``stopped()`` turned true."""
        with self._cond:
            while self.in_flight >= self.allowed:
                if stopped():
                    return None
                self._cond.wait(_POLL)
            self.in_flight += 1
            return time.monotonic()

    def release(self, started, pushed_back):
        with self._cond:
            self.in_flight -= 1
            if pushed_back:
                # one cut per round trip: requests already in flight when we cut don't cut again
                if started >= self._last_cut:
                    self.window = max(1.0, self.window / 2)
                    self._last_cut = time.monotonic()
            elif self.window < self.maximum:
                self.window = min(float(self.maximum), self.window + 1.0 / self.window)
            self._cond.notify_all()


@dataclass
class _Outcome:
    kind: str  # 'ok' | 'retry' | 'fail'
    reason: str = ""
    data: bytes | None = None
    status: int | None = None
    retry_after: float | None = None
    nbytes: int = 0
    saved: int = 0


class Fetcher:
    """Downloads cutouts concurrently; see the module docstring for the behaviour.

    Parameters
    ----------
    workers : int, optional
        Concurrent requests (default ``conf.workers``).
    cache_dir : str or Path, optional
        Cache directory (default ``conf.cache_dir``; empty means no cache).
    timeout : float or (float, float), optional
        Connect and read timeouts per request (default ``conf.timeout``). The read timeout is
        also how long a stalled transfer may go without a byte before it is retried.
    max_retries : int, optional
        Retries per cutout after transient failures (default ``conf.max_retries``).
    retry : RetryPolicy, optional
        Back-off parameters; its ``max_retries`` is replaced by ``max_retries`` when given.
    archive_url : str, optional
        The archive whose host rows of a query table may point at, when the table does not
        say (``table.meta['archive_url']``); default the configured archive.
    early_stop : bool
        Read a pipeline-7 body only up to its EPSF header when this run already holds its
        EPSF and WCS-WAVE tables (same calibration UUIDs, detector and table layout), and fill
        in the rest from them; the result is byte for byte the full body (default True).
        False: every body is downloaded in full.
    """

    def __init__(self, *, workers=None, cache_dir=None, timeout=None, max_retries=None,
                 retry=None, archive_url=None, early_stop=True):
        cfg = settings(workers=workers, cache_dir=cache_dir, timeout=timeout,
                       max_retries=max_retries, archive_url=archive_url)
        self.archive_url = cfg.archive_url
        self.workers = cfg.workers
        self.timeout = cfg.timeout
        # an unwritable cache directory is an error now, before any download
        self.cache = CutoutCache(cfg.cache_dir).prepare() if cfg.cache_dir is not None else None
        policy = retry or RetryPolicy()
        if retry is None or max_retries is not None:
            policy = RetryPolicy(cfg.max_retries, policy.backoff_base, policy.backoff_cap,
                                 policy.retry_after_cap)
        self.retry = policy
        self.early_stop = bool(early_stop)

    def fetch(self, items, *, progress=None, tqdm=False, cancel=None):
        """Yield a :class:`FetchResult` for every item of ``items`` as it completes.

        Parameters
        ----------
        items : Table or sequence of str
            A :meth:`~glue_spherex.irsa.core.SpherexClass.query_region` table (its
            ``cutout_url`` and ``cutout_index`` columns are used) or URLs (indexed from 1).
        progress : callable, optional
            Called as ``progress(done, total, result)`` after each result.
        tqdm : bool
            Show a tqdm progress bar (on stderr).
        cancel : threading.Event, optional
            Set it to stop: queued cutouts come back ``'cancelled'``, in-flight requests are
            cut. Closing the iterator early has the same effect.
        """
        tasks, origins = _tasks(items)
        run = _Run(self, tasks, origins | {_origin(self.archive_url), _origin(IRSA_URL)})
        bar = None
        if tqdm:
            from tqdm import tqdm as _tqdm

            bar = _tqdm(total=len(tasks), unit="cutout", desc="fetch", leave=True)
        failed = 0
        try:
            run.start()
            for done in range(1, len(tasks) + 1):
                result = run.next_result(cancel)
                if bar is not None:
                    failed += result.status != OK
                    bar.update(1)
                    if failed:
                        bar.set_postfix(failed=failed, refresh=False)
                if progress is not None:
                    progress(done, len(tasks), result)
                yield result
        finally:
            run.close()
            if bar is not None:
                bar.close()


def fetch_cutouts(table_or_urls, *, workers=None, cache_dir=None, timeout=None,
                  max_retries=None, progress=None, tqdm=False, cancel=None, retry=None,
                  archive_url=None, early_stop=True):
    """Download cutouts concurrently; yields :class:`FetchResult` as each completes.

    See :class:`Fetcher` for the parameters and :meth:`Fetcher.fetch` for ``table_or_urls``,
    ``progress``, ``tqdm`` and ``cancel``.
    """
    fetcher = Fetcher(workers=workers, cache_dir=cache_dir, timeout=timeout,
                      max_retries=max_retries, retry=retry, archive_url=archive_url,
                      early_stop=early_stop)
    return fetcher.fetch(table_or_urls, progress=progress, tqdm=tqdm, cancel=cancel)


def fetch_to_file(table, out_path, *, target=None, size=None, overwrite=False, psf="full",
                  **fetch_kwargs):
    """Fetch the cutouts of a query table straight into a combined MEF at ``out_path``.

    Cutouts are appended as they arrive and failures are recorded in the file's
    ``CUTOUT_INFO`` table, so memory use does not grow with the number of cutouts. The file
    appears at ``out_path`` only when complete; if the run is interrupted (exception, Ctrl-C)
    it is finished with what arrived and the exception propagates.

    Before anything is downloaded, the output (and the cache directory) must be writable and
    have room for the estimated size, else :class:`~glue_spherex.errors.SpherexOutputError`.
    If ``out_path`` already holds an unfinished file of the same query (an interrupted earlier
    run: cutouts failed or missing) and ``overwrite`` is false, the run resumes: the cutouts
    in it are kept and only the others are fetched. A full disk while writing stops the run
    with a :class:`~glue_spherex.errors.SpherexOutputError` saying what became of the cutouts
    that had arrived; nothing half-written is left.

    Parameters
    ----------
    table : Table
        From :meth:`~glue_spherex.irsa.core.SpherexClass.query_region`.
    target : SkyCoord, optional
        Where the central wavelength of each cutout is evaluated; default the query position
        (``table.meta['target_ra'/'target_dec']``).
    size : Quantity or str, optional
        Cutout size recorded in the file; default ``table.meta['size']``.
    overwrite : bool
        Replace an existing ``out_path`` (rather than resume it) when finished.
    psf : {'full', 'none'}
        ``'full'`` (default): each cutout as IRSA sends it, the tutorial's layout. ``'none'``:
        the PSF extensions (PSFn, or EPSFn) are left out of the file (they are still
        downloaded: IRSA always sends them); :attr:`FetchSummary.psf_bytes_saved` says how
        many bytes that kept off the disk, and aperture corrections use the header's
        ``PSF_FWHM``. A file of one choice is never resumed with the other.
    **fetch_kwargs
        Passed to :func:`fetch_cutouts`.

    Returns
    -------
    FetchSummary
    """
    from astropy.coordinates import SkyCoord

    from ..fitsbytes.atomic import check_output, output_lock
    from ..products.combined import PSF_CHOICES, CombinedWriter

    if psf not in PSF_CHOICES:
        raise SpherexInputError(f"psf must be one of {', '.join(PSF_CHOICES)}, not {psf!r}")

    if target is None and "target_ra" in table.meta:
        target = SkyCoord(table.meta["target_ra"], table.meta["target_dec"], unit="deg")
    if size is None:
        size = table.meta.get("size")
    if size is not None:
        from ..irsa.core import parse_size

        size = parse_size(size).quantity
    planned = [dict(cutout_index=int(row["cutout_index"]), access_url=str(row["cutout_url"]),
                    obs_id=str(row["obs_id"]), detector=int(row["detector"]),
                    bandpass=str(row["bandpass"]), observation_date=float(row["t_min"]),
                    mjd_end=float(row["t_max"]),
                    **{c: str(row[c]) for c in ("release", "version") if c in table.colnames})
               for row in table]
    out_path = Path(out_path)
    options = {k: fetch_kwargs.pop(k) for k in ("progress", "tqdm", "cancel")
               if k in fetch_kwargs}
    fetcher = Fetcher(**fetch_kwargs)  # an unwritable cache directory fails here
    check_output(out_path, what="output")
    summary = FetchSummary(out_path, len(planned), 0, 0, 0, 0, 0, 0.0, psf=psf)
    t0 = time.monotonic()
    kept = {}
    with output_lock(out_path):  # from here on no other run touches out_path or its parts
        try:
            if not overwrite:
                kept = _previous(out_path, planned, psf)
            if kept and len(kept) == len(planned):  # an earlier run already finished it
                summary.ok = summary.resumed = len(planned)
                return summary
            _check_space(out_path, planned, size, fetcher.cache, kept, psf)
            index = {p["access_url"]: p["cutout_index"] for p in planned}
            todo = table[np.array([str(u) not in kept for u in table["cutout_url"]], bool)]
            writer = CombinedWriter(out_path, planned, target=target, size=size,
                                    overwrite=True, psf=psf)
            try:
                _fill(writer, summary, kept, index, fetcher, todo, options)
            finally:
                summary.psf_bytes_saved = writer.psf_bytes_saved
        finally:
            for product in kept.values():
                product.close()
    summary.seconds = time.monotonic() - t0
    return summary


def _previous(out_path, planned, psf):
    """The cutouts an earlier run of this query left: in an unfinished file at ``out_path``,
    or, if a killed run left no file, in its temporary file."""
    from ..products.combined import recover_partial

    if out_path.exists():
        return _resumable(out_path, planned, psf)
    partial = recover_partial(out_path)
    if partial is None:
        return {}
    try:
        return _resumable(partial, planned, psf)
    except SpherexInputError:  # another query's leftovers: the new writer deletes them
        return {}


def _fill(writer, summary, kept, index, fetcher, todo, options):
    """Copy the kept cutouts, then fetch the others, into ``writer``; close it."""
    results = None
    try:
        for url, product in kept.items():
            writer.add(index[url], product)
            summary.ok += 1
            summary.resumed += 1
        # Each cutout is parsed here, not in its download thread: a download thread that
        # parses is late for its next request, and this thread is otherwise mostly waiting.
        results = fetcher.fetch(todo, **options) if len(todo) else ()
        for result in results:
            if result.ok:
                try:
                    writer.add(result.cutout_index, result.data if result.data is not None
                               else result.path.read_bytes())
                except SpherexFormatError as exc:  # whatever was wrong with this one product
                    result.status, result.reason = FAILED, f"unreadable product: {exc}"
                    writer.add_failure(result.cutout_index, result.reason)
            elif result.status != CANCELLED:  # a cancelled cutout stays 'missing': rerun
                writer.add_failure(result.cutout_index, result.reason or result.status)
            _tally(summary, result)
            result.data = None  # the writer has it: bound the memory
        writer.close()
    except OSError as exc:  # writing the output failed (a full disk): keep what can be kept
        if results:
            results.close()
        raise _write_failure(exc, writer, summary, fetcher.cache) from None
    except BaseException:
        if results:
            results.close()  # stop the downloads before the file is finished
        writer.close()  # with what arrived; the caller's exception goes on
        raise


def _resumable(out_path, planned, psf="full"):
    """``{url: SpectralImage}`` of the cutouts an unfinished earlier file at ``out_path`` holds.

    Raises SpherexInputError if the file is not a combined file of this same query (and of
    the same ``psf`` choice).
    """
    from ..products.combined import read_combined

    refuse = (f"{out_path} exists and is not an unfinished file of this query; give "
              "--overwrite (overwrite=True) to replace it, or another output file")
    try:
        info, products = read_combined(out_path)
    except (SpherexFormatError, OSError):
        raise SpherexInputError(refuse) from None
    wanted = {p["access_url"] for p in planned}
    kept = {}
    for product in products:
        url = product.access_url or ""
        if url in wanted and url not in kept:
            kept[url] = product
        else:
            product.close()
    listed = {str(u).strip() for u in info["access_url"]}
    if any(p.has_psf != (psf == "full") for p in kept.values()):
        for product in kept.values():
            product.close()
        other = "full" if psf == "none" else "none"
        raise SpherexInputError(f"{out_path} exists and was written with psf='{other}'; give "
                                "--overwrite (overwrite=True) to replace it, or another "
                                "output file")
    if not listed <= wanted or len(kept) < sum(str(s).strip() == OK for s in info["status"]):
        for product in kept.values():
            product.close()
        raise SpherexInputError(refuse)
    return kept


def _check_space(out_path, planned, size, cache, kept, psf="full"):
    """Raise SpherexOutputError if the output (and cache) lack room for the estimated size."""
    import os

    from ..fitsbytes.atomic import check_output
    from ..products.combined import estimated_cutout_bytes

    if size is None:
        return
    each = estimated_cutout_bytes(size)
    needed = estimated_cutout_bytes(size, psf) * len(planned)
    if cache is not None:
        new = sum(p["access_url"] not in kept and not cache.contains(p["access_url"])
                  for p in planned)
        try:
            same = os.stat(cache.directory).st_dev == os.stat(out_path.parent).st_dev
        except OSError:
            same = False
        if same:  # on another file system a full cache costs no cutout: it is reported
            needed += each * new
    check_output(out_path, needed_bytes=needed, what="output")


def _write_failure(exc, writer, summary, cache):
    """The SpherexOutputError for a failed write: what is where now, and what to do."""
    from ..errors import SpherexOutputError

    why = exc.strerror or str(exc)
    arrived = summary.ok + summary.failed  # cutouts that had been downloaded or kept
    with contextlib.suppress(Exception):
        writer.close()  # truncated to the last whole cutout; needs little new space
    saved = writer.counts["ok"] if writer.finished else None
    total = summary.total
    if saved is not None:
        text = (f"could not write all of {writer.path}: {why}; it holds {saved} of {total} "
                "cutouts (CUTOUT_INFO lists the rest as missing)")
    else:
        text = f"could not write {writer.path}: {why}; nothing was written there"
    if cache is not None:
        in_cache = sum(cache.contains(u) for u in writer.urls)
        text += (f"; {in_cache} of {total} cutouts were downloaded and are in the cache "
                 f"{cache.directory}")
    elif saved is None:
        text += f"; the {arrived} cutouts that had arrived were not kept (no cache directory)"
    return SpherexOutputError(text + "; free some space and rerun the same command to resume")


def _tally(summary, result):
    if result.status == OK:
        summary.ok += 1
        summary.from_cache += result.from_cache
        if result.reason.startswith("not cached"):
            summary.uncached += 1
            summary.cache_problem = summary.cache_problem or result.reason
    elif result.status == FAILED:
        summary.failed += 1
        summary.failures.append((result.cutout_index, result.reason))
    else:
        summary.cancelled += 1
    summary.bytes += result.bytes
    summary.bytes_saved += result.bytes_saved


def _tasks(items):
    """The tasks, and the origins their URLs may use besides the archive's and IRSA's."""
    from astropy.table import Table

    origins = set()
    if isinstance(items, Table):
        column = "cutout_url" if "cutout_url" in items.colnames else "access_url"
        if column not in items.colnames:
            raise SpherexInputError("the table has no cutout_url or access_url column")
        urls = [str(u) for u in items[column]]
        indices = ([int(i) for i in items["cutout_index"]] if "cutout_index" in items.colnames
                   else list(range(1, len(urls) + 1)))
        source = items.meta.get("archive_url")
        if source is not None:     # rows a server sent: only that archive's (or IRSA's) host
            origins.add(_origin(str(source)))
        else:                      # a table the caller made: its URLs as given
            origins.update(_origin(u) for u in urls)
    elif isinstance(items, (str, bytes)):
        raise SpherexInputError("give a query table or a list of URLs, not a single string")
    else:
        urls = [str(u) for u in items]
        indices = list(range(1, len(urls) + 1))
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise SpherexInputError(f"{url[:80]!r} is not an http(s) URL")
        origins.update(_origin(u) for u in urls)
    tasks = [_Task(pos, idx, url) for pos, (idx, url) in enumerate(zip(indices, urls))]
    return tasks, origins


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def _origin(url):
    """``(scheme, host, port)`` of a URL (None for a malformed one)."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
        host = (parts.hostname or "").lower()
    except ValueError:
        return None
    if host in _LOOPBACK:          # one machine by any of its names (archive URL vs SIA rows)
        host = "127.0.0.1"
    return (scheme, host, port) if scheme in ("http", "https") and host else None


def _shown(url, n=120):
    url = re.sub(r"[\x00-\x1f\x7f]", "?", url)
    return url if len(url) <= n else url[:n] + "..."


class _Run:
    """The threads and shared state of one :meth:`Fetcher.fetch` call."""

    def __init__(self, fetcher, tasks, origins):
        self.fetcher = fetcher
        self.tasks = tasks
        self.origins = frozenset(o for o in origins if o is not None)
        self.schedule = _Schedule(tasks)
        self.limit = _AdaptiveLimit(fetcher.workers)
        self.tracker = ConnectionTracker()
        self.results = queue.Queue(maxsize=2 * fetcher.workers)
        self.stopping = threading.Event()  # cancel requested: finish everything as cancelled
        self.closed = threading.Event()    # the consumer is gone: emit nothing more
        self.rng = random.Random()
        self.threads = []
        # the EPSF and WCS-WAVE tables of this run's full downloads, for early stops
        # (kept in the cache too, once per calibration, when there is a cache)
        cache = fetcher.cache
        self.calibrations = (CalibrationStore(None if cache is None else
                                              cache.directory / "calibrations")
                             if fetcher.early_stop else None)

    def start(self):
        for i in range(min(self.fetcher.workers, len(self.tasks))):
            thread = threading.Thread(target=self._work, name=f"spherex-fetch-{i}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def next_result(self, cancel):
        while True:
            if cancel is not None and cancel.is_set() and not self.stopping.is_set():
                self.cancel()
            try:
                return self.results.get(timeout=_POLL)
            except queue.Empty:
                if not any(thread.is_alive() for thread in self.threads):
                    raise SpherexError("internal error: the download threads stopped "
                                       "before every cutout was accounted for") from None

    def cancel(self):
        self.stopping.set()
        self.schedule.stop()
        self.tracker.abort_all()

    def close(self):
        self.closed.set()
        self.cancel()
        with contextlib.suppress(queue.Empty):
            while True:
                self.results.get_nowait()
        for thread in self.threads:
            thread.join(timeout=5)

    # -- worker side --

    def _emit(self, result):
        while not self.closed.is_set():
            try:
                self.results.put(result, timeout=_POLL)
                return
            except queue.Full:
                continue

    def _work(self):
        session = make_session(self.fetcher.timeout, pool_size=1, tracker=self.tracker)
        try:
            while (task := self.schedule.next()) is not None:
                try:
                    result = self._step(task, session)
                except Exception as exc:  # a bug must not hang the batch: record it
                    result = self._result(task, FAILED, f"internal error: {exc!r}")
                if result is not None:
                    self._emit(result)
                    self.schedule.finished()
        finally:
            session.close()

    def _result(self, task, status, reason="", **kw):
        seconds = time.monotonic() - task.started if task.started is not None else 0.0
        return FetchResult(task.cutout_index, task.url, status, reason=reason,
                           attempts=task.attempts, bytes=task.bytes, seconds=seconds,
                           bytes_saved=task.saved if status == OK and not kw.get("from_cache")
                           else 0, **kw)

    def _step(self, task, session):
        """One attempt at ``task``: a FetchResult when it is decided, None if re-queued."""
        if self.stopping.is_set():
            return self._result(task, CANCELLED, "cancelled before it was fetched"
                                if task.attempts == 0 else f"cancelled ({task.reason})")
        cache = self.fetcher.cache
        if task.started is None:
            task.started = time.monotonic()
            if cache is not None:
                path = cache.check(task.url)
                if path is not None:  # the bytes stay on disk: products map the file
                    return self._result(task, OK, path=path, from_cache=True)
        refusal = self._refusal(task.url)
        if refusal is not None:
            return self._result(task, FAILED, f"refused: {refusal}")
        started = self.limit.acquire(self.stopping.is_set)
        if started is None:
            return self._result(task, CANCELLED, "cancelled before it was fetched")
        task.attempts += 1
        outcome = self._attempt(session, task.url)
        self.limit.release(started, outcome.status in PUSHBACK_STATUSES)
        task.bytes += outcome.nbytes
        task.saved = outcome.saved
        if outcome.kind == "ok":
            path, note = None, ""
            if cache is not None:
                try:
                    path = cache.store(task.url, outcome.data)
                except OSError as exc:  # the cutout itself is fine: keep it, say why uncached
                    note = f"not cached: {exc}"
            return self._result(task, OK, note, data=outcome.data, path=path)
        task.reason = outcome.reason
        if self.stopping.is_set():
            return self._result(task, CANCELLED, "cancelled while downloading")
        if outcome.kind == "fail":
            return self._result(task, FAILED, outcome.reason)
        if task.attempts > self.fetcher.retry.max_retries:
            return self._result(task, FAILED,
                                f"gave up after {task.attempts} attempts: {outcome.reason}")
        delay = self.fetcher.retry.delay(task.attempts, outcome.retry_after, self.rng)
        self.schedule.retry_later(task, delay)
        return None

    def _refusal(self, url):
        """Why the host policy refuses ``url`` (None if it may be fetched)."""
        if len(url) > MAX_URL_CHARS:
            return f"the URL is {len(url):,} characters long (at most {MAX_URL_CHARS:,})"
        if re.search(r"[\x00-\x20\x7f]", url):
            return f"the URL {_shown(url)!r} has spaces or control characters"
        origin = _origin(url)
        if origin is None:
            return f"{_shown(url)!r} is not an http(s) URL"
        if origin not in self.origins:
            allowed = ", ".join(sorted(f"{s}://{h}:{p}" for s, h, p in self.origins))
            return (f"{_shown(url)!r} is not on the archive's host; the fetcher follows only "
                    f"{allowed}")
        return None

    def _attempt(self, session, url):
        """One request (and its redirects). ``nbytes`` of the outcome is what came off the
        network: the body bytes of every response as sent (before any Content-Encoding is
        undone), failed and cut-short transfers included; HTTP headers are not counted."""
        responses, watches = [], []
        try:
            outcome = self._transfer(session, url, responses, watches)
        finally:
            for watch in watches:  # after learning: bodies waiting for this one go on
                watch.finish()
        outcome.nbytes = max(outcome.nbytes if not responses else 0,
                             sum(_wire_bytes(r) for r in responses))
        return outcome

    def _transfer(self, session, url, responses, watches):
        try:
            for _ in range(MAX_REDIRECTS + 1):
                with session.get(url, stream=True, allow_redirects=False) as resp:
                    responses.append(resp)
                    status = resp.status_code
                    location = resp.headers.get("Location")
                    if status in _REDIRECTS and location:
                        target = urljoin(url, location.strip())
                        refusal = self._refusal(target)
                        if refusal is not None:
                            return _Outcome("fail", f"HTTP {status} redirect refused: "
                                                    f"{refusal}", status=status)
                        url = target
                        continue
                    if status != 200:
                        return _http_error(resp)
                    limit = plausible_size(url)
                    watch = self._watch(resp)
                    if watch is not None:
                        watches.append(watch)
                    body, tail = self._read(resp, limit, watch)
                    if tail:  # stopped early: this connection must not be reused half-read
                        _drop_connection(resp)
                    break
            else:
                return _Outcome("fail", f"more than {MAX_REDIRECTS} redirects")
        except _TooLarge as exc:
            return _Outcome("fail", str(exc), nbytes=exc.nbytes)
        except (requests.RequestException, urllib3.exceptions.HTTPError,
                http.client.HTTPException, OSError) as exc:
            kind, reason = transfer_error_decision(exc)
            return _Outcome(kind, reason)
        nbytes = len(body)
        if tail:
            body += tail   # the bytes a full download gives; the checks below apply as ever
        length = resp.headers.get("Content-Length")
        if (length is not None and length.isdigit() and "Content-Encoding" not in resp.headers
                and int(length) != len(body)):
            return _Outcome("retry", f"truncated body: {len(body)} of {length} bytes",
                            nbytes=nbytes)
        try:
            data = unwrap(body, label="response", max_size=limit)
        except SpherexFormatError as exc:
            return _Outcome(body_error_decision(exc), f"invalid body with HTTP 200: {exc}", nbytes=nbytes)
        del body
        try:
            spans = scan_spectral_image(data, label="response")
        except SpherexFormatError as exc:
            return _Outcome("retry", f"invalid body with HTTP 200: {exc}", nbytes=nbytes)
        if self.calibrations is not None and not tail:
            self.calibrations.learn(data, spans)
        return _Outcome("ok", data=data, status=200, nbytes=nbytes, saved=len(tail))

    def _watch(self, resp):
        """A :class:`~.earlystop.BodyWatch` for ``resp``, or None when no early stop may be
        tried: early stop off, no Content-Length, or a Content-Encoding."""
        length = resp.headers.get("Content-Length", "").strip()
        if (self.calibrations is None or not length.isdigit()
                or resp.headers.get("Content-Encoding", "identity").strip().lower()
                != "identity"):
            return None
        read_timeout = self.fetcher.timeout[1] if isinstance(self.fetcher.timeout,
                                                             (tuple, list)) else self.fetcher.timeout
        return BodyWatch(self.calibrations, int(length), max_wait=float(read_timeout or 60.0),
                         stopped=self.stopping.is_set)

    @staticmethod
    def _read(resp, limit, watch=None):
        """``(body, tail)``: the body read in chunks into one buffer, refused past ``limit``
        bytes (announced or found), and the bytes ``watch`` filled in if it stopped the read
        early (else b""). Cancellation does not need the chunks:
        ConnectionTracker.abort_all() shuts the socket and the read returns."""
        length = resp.headers.get("Content-Length", "").strip()
        if length.isdigit() and int(length) > limit:
            raise _TooLarge(f"the server announced a body of {int(length):,} bytes, more than "
                            f"this cutout can be ({limit:,})", 0)
        buf = bytearray()
        while True:
            size = watch.next_read(len(buf), _READ_CHUNK) if watch is not None else _READ_CHUNK
            chunk = resp.raw.read(size, decode_content=True)
            if not chunk:
                break
            buf += chunk
            if len(buf) > limit:
                raise _TooLarge(f"the body is larger than this cutout can be ({limit:,} "
                                "bytes); the rest was not read", len(buf))
            if watch is not None:
                tail = watch.update(buf)
                if tail is not None:
                    return bytes(buf), tail
                if not watch.active:
                    watch = None
        return bytes(buf), b""


def plausible_size(url):
    """The most bytes the cutout at ``url`` can plausibly have: twice an estimate from its
    ``size`` (16 bytes per pixel plus 8 MB for the PSF and headers) plus 8 MB, at most
    :data:`MAX_BODY_BYTES`; :data:`MAX_BODY_BYTES` when the URL has no readable size."""
    from urllib.parse import parse_qs

    from ..irsa.cutout_params import parse_cutout

    try:
        params = {k.lower(): v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        cut = parse_cutout(params.get("center"), params.get("size"))
    except (SpherexInputError, ValueError):
        return MAX_BODY_BYTES
    estimate = _BYTES_PER_PIXEL * cut.width_px * cut.height_px + _FIXED_BYTES
    return min(MAX_BODY_BYTES, 2 * estimate + _FIXED_BYTES)


def _drop_connection(resp):
    """Close the connection of a response read only in part (it is not reused)."""
    raw = getattr(resp, "raw", None)
    connection = getattr(raw, "connection", None)
    with contextlib.suppress(Exception):
        raw.close()
    if connection is not None:
        with contextlib.suppress(Exception):
            connection.close()


def _wire_bytes(resp):
    """Body bytes read off the connection of ``resp`` so far, as sent (undecoded)."""
    tell = getattr(getattr(resp, "raw", None), "tell", None)
    try:
        return int(tell()) if tell is not None else 0
    except (TypeError, ValueError, OSError):
        return 0


class _TooLarge(Exception):
    def __init__(self, message, nbytes):
        super().__init__(message)
        self.nbytes = nbytes


def _http_error(resp):
    status = resp.status_code
    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    try:
        text = resp.raw.read(4096, decode_content=True) or b""
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
        text = b""
    message = _error_text(text) or resp.reason or ""
    reason = f"HTTP {status}: {message}" if message else f"HTTP {status}"
    return _Outcome(status_decision(status), reason, status=status, retry_after=retry_after)


def _error_text(raw):
    text = raw.decode("utf-8", "replace")
    status = re.search(r'(?is)<INFO[^>]*name="QUERY_STATUS"[^>]*>(.*?)</INFO>', text)
    if status is not None:       # IRSA's error document: the message is this INFO's text
        text = status.group(1)
    text = re.sub(r"(?is)<(script|style|title|head)\b.*?</\1>", " ", text)
    text = re.sub(r"<[^>]+>", " ", text)
    text = " ".join(text.split())
    return text[:200]
