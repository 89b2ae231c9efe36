"""Retry decisions of the fetcher, in one place: which failures are tried again, and when.

A transfer that broke (timeouts, resets, truncated or corrupt bodies) and HTTP 408, 429 and
5xx are retried; other 4xx, refused redirects, invalid URLs and bodies too large are final.
The wait before the n-th retry is :class:`RetryPolicy` (full jitter, never shorter than the
server's ``Retry-After``).
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import requests
import urllib3

__all__ = ["RetryPolicy", "parse_retry_after", "PUSHBACK_STATUSES", "status_decision",
           "transfer_error_decision", "body_error_decision", "describe_error"]

#: Statuses by which a server asks for less load (the fetcher also lowers its concurrency).
PUSHBACK_STATUSES = frozenset({429, 503})
RETRY, FAIL = "retry", "fail"
_REASON_CHARS = 400


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


def status_decision(status):
    """``'retry'`` for HTTP 408, 429 and 5xx, ``'fail'`` for any other non-200 status."""
    return RETRY if status in (408, 429) or status >= 500 else FAIL


def transfer_error_decision(exc):
    """``(decision, reason)`` for an exception raised while requesting or reading a body."""
    text = describe_error(exc)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return RETRY, f"connect timeout ({text})"
    if isinstance(exc, (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError)):
        return RETRY, "read timeout (server stalled)"
    import http.client

    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, http.client.IncompleteRead,
                        urllib3.exceptions.ProtocolError)):
        return RETRY, f"truncated or broken transfer ({text})"
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                        requests.exceptions.MissingSchema, requests.exceptions.InvalidHeader,
                        urllib3.exceptions.LocationParseError)):
        return FAIL, f"invalid URL or header ({text})"
    if isinstance(exc, requests.exceptions.ConnectionError):
        if "Read timed out" in str(exc):
            return RETRY, "read timeout (server stalled)"
        return RETRY, f"connection failed ({text})"
    return RETRY, f"transfer error ({text})"


def body_error_decision(exc):
    """A body that arrived with HTTP 200 but does not decode: a gzip bomb is final, a corrupt
    body may be a transfer fault and is retried."""
    return FAIL if "inflates to more than" in str(exc) else RETRY


def describe_error(exc):
    """One line saying what went wrong, ending with the root cause (``[Errno 111] Connection
    refused``): the outermost of the chain of wrapped exceptions (requests' around urllib3's
    around the OSError) short enough to read, without object addresses."""
    chain, cause = [], exc
    while cause is not None and all(cause is not c for c in chain):
        chain.append(cause)
        inner = getattr(cause, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((a for a in cause.args if isinstance(a, BaseException)), None)
        cause = inner if inner is not None else (cause.__cause__ or cause.__context__)
    texts = [_clean(c) for c in chain]
    text = next((t for t in texts if len(t) <= _REASON_CHARS // 2), texts[-1])
    if len(text) > _REASON_CHARS:      # keep the head and the tail, where the cause is
        half = _REASON_CHARS // 2
        text = text[:half] + " ... " + text[-half:]
    return text


def _clean(exc):
    text = " ".join(str(exc).split()) or type(exc).__name__
    return re.sub(r"<[\w.]+ object at 0x[0-9a-fA-F]+>:? ?", "", text)
