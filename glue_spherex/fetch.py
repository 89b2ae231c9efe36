"""Concurrent, retrying, resumable download of SPHEREx cutouts.

:func:`fetch_cutouts` yields one :class:`FetchResult` per requested cutout *as each completes*;
:func:`fetch_to_file` streams them into a combined MEF (:class:`~glue_spherex.combined.
CombinedWriter`) so memory stays bounded however many cutouts there are.

How a batch runs (:class:`Fetcher`):

- A bounded pool of worker threads, each with its own keep-alive HTTP connection, takes tasks
  from a schedule ordered by the time each may next be tried. A task waiting out a back-off
  does not occupy a worker.
- Every body is checked before it is accepted: gzip is undone, then the bytes must be a
  complete FITS file with every Level-2 extension (:mod:`glue_spherex.fitsscan`). An HTML page
  served with status 200, a short body or a reset connection is a transient failure.
- Transient failures (timeouts, resets, truncated or invalid bodies, HTTP 408, 429 and 5xx)
  are retried with exponential back-off and full jitter, waiting at least as long as the
  server's ``Retry-After``. Other 4xx (400 "cutout does not overlap the image", 404) are final.
- 429 and 503 are push-back: an AIMD limiter halves the number of requests allowed in flight
  and recovers by one per window of successes.
- With a cache directory, each validated cutout is written atomically (``.part`` then
  :func:`os.replace`); a rerun takes complete files from the cache and fetches only the rest.
- Setting the ``cancel`` event (or closing the iterator, e.g. on Ctrl-C) marks queued cutouts
  ``'cancelled'`` and cuts the sockets of in-flight requests so they stop at once.
- Nothing is dropped: every cutout ends as ``'ok'``, ``'failed'`` (with the reason) or
  ``'cancelled'``, and a failure never stops the batch.
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
from email.utils import parsedate_to_datetime
from pathlib import Path

import requests
import urllib3

from .cache import CutoutCache
from .config import settings
from .errors import SpherexError, SpherexFormatError, SpherexInputError
from .fitsscan import scan_spectral_image, unwrap
from .http import ConnectionTracker, make_session

__all__ = ["FetchResult", "FetchSummary", "Fetcher", "RetryPolicy", "fetch_cutouts",
           "fetch_to_file", "parse_retry_after"]

OK, FAILED, CANCELLED = "ok", "failed", "cancelled"
PUSHBACK_STATUSES = frozenset({429, 503})
_POLL = 0.1


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before trying a cutout again.

    The n-th retry waits ``uniform(0, min(backoff_cap, backoff_base * 2**(n-1)))`` seconds
    ("full jitter"), but never less than the server's ``Retry-After`` (capped at
    ``retry_after_cap``).
    """

    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    retry_after_cap: float = 120.0

    def delay(self, retry_number, retry_after=None, rng=random):
        wait = rng.uniform(0.0, min(self.backoff_cap, self.backoff_base * 2 ** (retry_number - 1)))
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.retry_after_cap))
        return wait


def parse_retry_after(value, now=None):
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if value is None:
        return None
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


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
        Bytes received over the network (0 from the cache).
    seconds : float
        Wall time from the first attempt to the outcome.
    from_cache : bool
    data : bytes or None
        The validated, uncompressed FITS file (ok results only).
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
    _product: object = field(default=None, repr=False, compare=False)

    @property
    def ok(self):
        return self.status == OK

    @property
    def product(self):
        """The cutout as a :class:`~glue_spherex.products.SpectralImage` (None unless ok)."""
        if self.status != OK:
            return None
        if self._product is None:
            from .products import SpectralImage

            self._product = SpectralImage.open(self.data if self.data is not None else self.path)
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

    @property
    def complete(self):
        return self.ok == self.total


@dataclass(eq=False)
class _Task:
    position: int
    cutout_index: int
    url: str
    attempts: int = 0
    bytes: int = 0
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
    """

    def __init__(self, *, workers=None, cache_dir=None, timeout=None, max_retries=None,
                 retry=None):
        cfg = settings(workers=workers, cache_dir=cache_dir, timeout=timeout,
                       max_retries=max_retries)
        self.workers = cfg.workers
        self.timeout = cfg.timeout
        self.cache = CutoutCache(cfg.cache_dir) if cfg.cache_dir is not None else None
        policy = retry or RetryPolicy()
        if retry is None or max_retries is not None:
            policy = RetryPolicy(cfg.max_retries, policy.backoff_base, policy.backoff_cap,
                                 policy.retry_after_cap)
        self.retry = policy

    def fetch(self, items, *, progress=None, tqdm=False, cancel=None):
        """Yield a :class:`FetchResult` for every item of ``items`` as it completes.

        Parameters
        ----------
        items : Table or sequence of str
            A :meth:`~glue_spherex.query.SpherexArchive.query_region` table (its
            ``cutout_url`` and ``cutout_index`` columns are used) or URLs (indexed from 1).
        progress : callable, optional
            Called as ``progress(done, total, result)`` after each result.
        tqdm : bool
            Show a tqdm progress bar (on stderr).
        cancel : threading.Event, optional
            Set it to stop: queued cutouts come back ``'cancelled'``, in-flight requests are
            cut. Closing the iterator early has the same effect.
        """
        tasks = _tasks(items)
        run = _Run(self, tasks)
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
                  max_retries=None, progress=None, tqdm=False, cancel=None, retry=None):
    """Download cutouts concurrently; yields :class:`FetchResult` as each completes.

    See :class:`Fetcher` for the parameters and :meth:`Fetcher.fetch` for ``table_or_urls``,
    ``progress``, ``tqdm`` and ``cancel``.
    """
    fetcher = Fetcher(workers=workers, cache_dir=cache_dir, timeout=timeout,
                      max_retries=max_retries, retry=retry)
    return fetcher.fetch(table_or_urls, progress=progress, tqdm=tqdm, cancel=cancel)


def fetch_to_file(table, out_path, *, target=None, size=None, overwrite=False, **fetch_kwargs):
    """Fetch the cutouts of a query table straight into a combined MEF at ``out_path``.

    Cutouts are appended as they arrive and failures are recorded in the file's
    ``CUTOUT_INFO`` table, so memory use does not grow with the number of cutouts. The file
    appears at ``out_path`` only when complete; if the run is interrupted (exception, Ctrl-C)
    it is finished with what arrived and the exception propagates.

    Parameters
    ----------
    table : Table
        From :meth:`~glue_spherex.query.SpherexArchive.query_region`.
    target : SkyCoord, optional
        Where the central wavelength of each cutout is evaluated; default the query position
        (``table.meta['target_ra'/'target_dec']``).
    size : Quantity or str, optional
        Cutout size recorded in the file; default ``table.meta['size']``.
    overwrite : bool
        Replace an existing ``out_path`` when finished.
    **fetch_kwargs
        Passed to :func:`fetch_cutouts`.

    Returns
    -------
    FetchSummary
    """
    from astropy.coordinates import SkyCoord

    from .combined import CombinedWriter

    if target is None and "target_ra" in table.meta:
        target = SkyCoord(table.meta["target_ra"], table.meta["target_dec"], unit="deg")
    if size is None:
        size = table.meta.get("size")
    if size is not None:
        from .query import parse_size

        size = parse_size(size).quantity
    planned = [dict(cutout_index=int(row["cutout_index"]), access_url=str(row["cutout_url"]),
                    obs_id=str(row["obs_id"]), detector=int(row["detector"]),
                    bandpass=str(row["bandpass"]), observation_date=float(row["t_min"]),
                    mjd_end=float(row["t_max"]),
                    **{c: str(row[c]) for c in ("release", "version") if c in table.colnames})
               for row in table]
    out_path = Path(out_path)
    summary = FetchSummary(out_path, len(planned), 0, 0, 0, 0, 0, 0.0)
    t0 = time.monotonic()
    with CombinedWriter(out_path, planned, target=target, size=size,
                        overwrite=overwrite) as writer:
        # Each cutout is parsed here, not in its download thread: a download thread that
        # parses is late for its next request, and this thread is otherwise mostly waiting.
        results = fetch_cutouts(table, **fetch_kwargs)
        try:
            for result in results:
                if result.ok:
                    try:
                        writer.add(result.cutout_index, result.data)
                    except SpherexFormatError as exc:
                        result.status, result.reason = FAILED, f"unreadable product: {exc}"
                        writer.add_failure(result.cutout_index, result.reason)
                else:
                    writer.add_failure(result.cutout_index, result.reason or result.status)
                _tally(summary, result)
                result.data = None  # the writer has it: bound the memory
        finally:
            results.close()  # on an exception: stop the downloads before the file is finished
    summary.seconds = time.monotonic() - t0
    return summary


def _tally(summary, result):
    if result.status == OK:
        summary.ok += 1
        summary.from_cache += result.from_cache
    elif result.status == FAILED:
        summary.failed += 1
        summary.failures.append((result.cutout_index, result.reason))
    else:
        summary.cancelled += 1
    summary.bytes += result.bytes


def _tasks(items):
    from astropy.table import Table

    if isinstance(items, Table):
        column = "cutout_url" if "cutout_url" in items.colnames else "access_url"
        if column not in items.colnames:
            raise SpherexInputError("the table has no cutout_url or access_url column")
        urls = [str(u) for u in items[column]]
        indices = ([int(i) for i in items["cutout_index"]] if "cutout_index" in items.colnames
                   else list(range(1, len(urls) + 1)))
    elif isinstance(items, (str, bytes)):
        raise SpherexInputError("give a query table or a list of URLs, not a single string")
    else:
        urls = [str(u) for u in items]
        indices = list(range(1, len(urls) + 1))
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise SpherexInputError(f"{url[:80]!r} is not an http(s) URL")
    return [_Task(pos, idx, url) for pos, (idx, url) in enumerate(zip(indices, urls))]


class _Run:
    """The threads and shared state of one :meth:`Fetcher.fetch` call."""

    def __init__(self, fetcher, tasks):
        self.fetcher = fetcher
        self.tasks = tasks
        self.schedule = _Schedule(tasks)
        self.limit = _AdaptiveLimit(fetcher.workers)
        self.tracker = ConnectionTracker()
        self.results = queue.Queue(maxsize=2 * fetcher.workers)
        self.stopping = threading.Event()  # cancel requested: finish everything as cancelled
        self.closed = threading.Event()    # the consumer is gone: emit nothing more
        self.rng = random.Random()
        self.threads = []

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
                           attempts=task.attempts, bytes=task.bytes, seconds=seconds, **kw)

    def _step(self, task, session):
        """One attempt at ``task``: a FetchResult when it is decided, None if re-queued."""
        if self.stopping.is_set():
            return self._result(task, CANCELLED, "cancelled before it was fetched"
                                if task.attempts == 0 else f"cancelled ({task.reason})")
        cache = self.fetcher.cache
        if task.started is None:
            task.started = time.monotonic()
            if cache is not None:
                data = cache.load(task.url)
                if data is not None:
                    return self._result(task, OK, data=data, path=cache.path_for(task.url),
                                        from_cache=True)
        started = self.limit.acquire(self.stopping.is_set)
        if started is None:
            return self._result(task, CANCELLED, "cancelled before it was fetched")
        task.attempts += 1
        outcome = self._attempt(session, task.url)
        self.limit.release(started, outcome.status in PUSHBACK_STATUSES)
        task.bytes += outcome.nbytes
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

    def _attempt(self, session, url):
        try:
            with session.get(url, stream=True) as resp:
                status = resp.status_code
                if status != 200:
                    return _http_error(resp)
                body = self._read(resp)
        except requests.exceptions.ConnectTimeout:
            return _Outcome("retry", "connect timeout")
        except (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError):
            return _Outcome("retry", "read timeout (server stalled)")
        except (requests.exceptions.ChunkedEncodingError, http.client.IncompleteRead,
                urllib3.exceptions.ProtocolError) as exc:
            return _Outcome("retry", f"truncated or broken transfer ({_brief(exc)})")
        except requests.exceptions.ConnectionError as exc:
            if "Read timed out" in str(exc):
                return _Outcome("retry", "read timeout (server stalled)")
            return _Outcome("retry", f"connection failed ({_brief(exc)})")
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            return _Outcome("retry", f"transfer error ({_brief(exc)})")
        nbytes = len(body)
        length = resp.headers.get("Content-Length")
        if (length is not None and length.isdigit() and "Content-Encoding" not in resp.headers
                and int(length) != nbytes):
            return _Outcome("retry", f"truncated body: {nbytes} of {length} bytes",
                            nbytes=nbytes)
        try:
            data = unwrap(body, label="response")
            scan_spectral_image(data, label="response")
        except SpherexFormatError as exc:
            return _Outcome("retry", f"invalid body with HTTP 200: {exc}", nbytes=nbytes)
        return _Outcome("ok", data=data, status=200, nbytes=nbytes)

    @staticmethod
    def _read(resp):
        # One read into one buffer: no chunk list, no join. Cancellation does not need
        # chunking -- ConnectionTracker.abort_all() shuts the socket and this read returns.
        return resp.raw.read(decode_content=True)


def _http_error(resp):
    status = resp.status_code
    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    try:
        text = resp.raw.read(4096, decode_content=True) or b""
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
        text = b""
    message = _error_text(text) or resp.reason or ""
    reason = f"HTTP {status}: {message}" if message else f"HTTP {status}"
    kind = "retry" if status in (408, 429) or status >= 500 else "fail"
    return _Outcome(kind, reason, status=status, retry_after=retry_after)


def _error_text(raw):
    text = raw.decode("utf-8", "replace")
    text = re.sub(r"(?is)<(script|style|title|head)\b.*?</\1>", " ", text)
    text = re.sub(r"<[^>]+>", " ", text)
    text = " ".join(text.split())
    return text[:200]


def _brief(exc):
    text = " ".join(str(exc).split())
    return text[:160] if text else type(exc).__name__

