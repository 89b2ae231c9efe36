"""The fetcher's retry decisions (glue_spherex.download.retry), one failure kind at a time."""

import http.client
import random

import requests
import urllib3

from glue_spherex.download.retry import (
    RetryPolicy,
    body_error_decision,
    status_decision,
    transfer_error_decision,
)


def test_statuses_that_are_retried_and_those_that_are_final():
    assert [status_decision(s) for s in (408, 429, 500, 502, 503, 504)] == ["retry"] * 6
    assert [status_decision(s) for s in (400, 401, 403, 404, 410)] == ["fail"] * 5


def test_transfer_errors():
    cases = {
        requests.exceptions.ConnectTimeout("x"): ("retry", "connect timeout"),
        requests.exceptions.ReadTimeout("x"): ("retry", "read timeout"),
        http.client.IncompleteRead(b"abc", 10): ("retry", "truncated or broken transfer"),
        requests.exceptions.ChunkedEncodingError("x"): ("retry", "truncated or broken"),
        requests.exceptions.InvalidURL("bad url"): ("fail", "invalid URL or header"),
        urllib3.exceptions.LocationParseError("h:x"): ("fail", "invalid URL or header"),
        requests.exceptions.ConnectionError("Read timed out."): ("retry", "read timeout"),
        requests.exceptions.ConnectionError("[Errno 111] refused"): ("retry", "connection failed"),
        OSError(28, "No space"): ("retry", "transfer error"),
    }
    for exc, (kind, start) in cases.items():
        got_kind, reason = transfer_error_decision(exc)
        assert (got_kind, reason.startswith(start)) == (kind, True), (exc, reason)


def test_a_gzip_bomb_is_final_a_corrupt_body_is_retried():
    assert body_error_decision(ValueError("response inflates to more than 1 bytes")) == "fail"
    assert body_error_decision(ValueError("response: not a gzip stream")) == "retry"


def test_backoff_is_full_jitter_but_honours_retry_after():
    policy = RetryPolicy(max_retries=5, backoff_base=0.5, backoff_cap=4.0, retry_after_cap=10)
    rng = random.Random(1)
    waits = [policy.delay(n, rng=rng) for n in range(1, 9) for _ in range(50)]
    assert min(waits) >= 0 and max(waits) <= 4.0
    assert policy.delay(1, retry_after=7.0, rng=rng) >= 7.0
    assert policy.delay(1, retry_after=600.0, rng=rng) == 10  # capped
