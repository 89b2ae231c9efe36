"""Byte ranges of one remote file over HTTP: what the catalog run reads the S3 copy with.

:class:`RangeReader` asks for ``Range: bytes=a-b`` of one URL (IRSA's public bucket answers
anonymous ranged GETs, as the local archive's emulation of it does), checks that the answer is
the span asked for (206 with a matching ``Content-Range``, or a 200 of the whole file, then
cut), and retries with the fetcher's policy (:mod:`glue_spherex.download.retry`). An optional
``limit`` -- a context manager entered around every request, such as a Dask distributed
``Semaphore`` -- caps the requests in flight across a whole cluster.
"""

from __future__ import annotations

import contextlib
import re
import time

import requests

from ..errors import SpherexServiceError
from .retry import FAIL, RetryPolicy, parse_retry_after, status_decision, transfer_error_decision

__all__ = ["RangeReader", "s3_url", "S3_ENDPOINT"]

#: Where IRSA's public bucket answers path-style requests.
S3_ENDPOINT = "https://s3.us-east-1.amazonaws.com"
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def s3_url(endpoint, bucket, key):
    """The path-style URL of ``key`` in ``bucket`` at ``endpoint``."""
    return f"{endpoint.rstrip('/')}/{bucket}/{key.lstrip('/')}"


class RangeReader:
    """Read spans of the file at ``url``: ``read(start, stop)``, ``size``; counts what it moved.

    Parameters
    ----------
    url : str
    session : requests.Session
        Pooled session (:func:`glue_spherex.download.http.make_session`).
    policy : RetryPolicy, optional
    limit : callable, optional
        ``limit()`` returns a context manager held during each request.
    """

    def __init__(self, url, session, policy=None, limit=None):
        self.url = url
        self.session = session
        self.policy = policy or RetryPolicy()
        self.limit = limit or contextlib.nullcontext
        self.size = None
        self.bytes_read = 0
        self.requests = 0
        self.retries = 0

    def read(self, start, stop):
        """Bytes ``start`` to ``stop - 1`` (fewer only at the end of the file)."""
        if self.size is not None:
            stop = min(stop, self.size)
        if stop <= start:
            return b""
        return self._retried(lambda: self._span(start, stop), f"bytes {start}-{stop - 1}")

    def get(self, params):
        """The whole body of the URL with query ``params`` (e.g. a cutout), with retries."""
        return self._retried(lambda: self._whole(params), "the body")

    def _retried(self, once, what):
        attempt = 0
        while True:
            attempt += 1
            try:
                return once()
            except _Retry as exc:
                if attempt > self.policy.max_retries:
                    raise SpherexServiceError(
                        f"{self.url}: {what} failed {attempt} times, last: {exc.reason}") \
                        from None
                self.retries += 1
                time.sleep(self.policy.delay(attempt, exc.retry_after))

    def _get(self, what, **kwargs):
        with self.limit():
            self.requests += 1
            try:
                r = self.session.get(self.url, **kwargs)
            except requests.RequestException as exc:
                decision, reason = transfer_error_decision(exc)
                if decision == FAIL:
                    raise SpherexServiceError(f"{self.url}: {reason}") from None
                raise _Retry(reason) from None
        if r.status_code not in (200, 206):
            reason = f"HTTP {r.status_code}"
            if status_decision(r.status_code) == FAIL:
                raise SpherexServiceError(f"{self.url}: {reason} for {what}")
            raise _Retry(reason, parse_retry_after(r.headers.get("Retry-After")))
        self.bytes_read += len(r.content)
        return r

    def _whole(self, params):
        r = self._get("the body", params=params)
        expected = r.headers.get("Content-Length")
        if r.status_code != 200 or (expected is not None and expected.isdigit()
                                    and int(expected) != len(r.content)):
            raise _Retry(f"HTTP {r.status_code} with {len(r.content)} of {expected} bytes")
        return r.content

    def _span(self, start, stop):
        r = self._get(f"bytes {start}-{stop - 1}",
                      headers={"Range": f"bytes={start}-{stop - 1}"})
        body = r.content
        if r.status_code == 200:  # the server sent the whole file -- or an error page
            if r.headers.get("Content-Type", "").startswith("text/") or \
                    (self.size is not None and len(body) != self.size):
                raise _Retry(f"HTTP 200 with a {len(body)}-byte "
                             f"{r.headers.get('Content-Type') or 'untyped'} body, not the "
                             "byte range")
            self.size = len(body)
            return body[start:stop]
        m = _CONTENT_RANGE.fullmatch(r.headers.get("Content-Range", "").strip())
        if not m:
            raise _Retry("206 without a valid Content-Range")
        first, last = int(m.group(1)), int(m.group(2))
        if m.group(3) != "*":
            self.size = int(m.group(3))
        want = min(stop, self.size) if self.size is not None else stop
        if first != start or last != want - 1 or len(body) != want - start:
            raise _Retry(f"asked for bytes {start}-{want - 1}, got {first}-{last} "
                         f"({len(body)} bytes)")
        return body


class _Retry(Exception):
    def __init__(self, reason, retry_after=None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
