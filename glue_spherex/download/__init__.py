"""Downloading cutouts: the threaded fetcher, its retry policy, pooled HTTP sessions, the cache.

Public names: :func:`fetch_cutouts`, :func:`fetch_to_file`, :class:`FetchResult`,
:class:`FetchSummary`, :class:`RetryPolicy`.
"""

from .fetcher import FetchResult, FetchSummary, RetryPolicy, fetch_cutouts, fetch_to_file

__all__ = ["fetch_cutouts", "fetch_to_file", "FetchResult", "FetchSummary", "RetryPolicy"]
