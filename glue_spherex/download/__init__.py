"""Downloading cutouts: the threaded fetcher, its retry policy, pooled HTTP sessions, the cache.

Public names: :func:`fetch_cutouts`, :func:`fetch_to_file`, :class:`FetchResult`,
:class:`FetchSummary`, :class:`RetryPolicy`.
"""

from .fetcher import FetchResult, FetchSummary, fetch_cutouts, fetch_to_file
from .retry import RetryPolicy

__all__ = ["fetch_cutouts", "fetch_to_file", "FetchResult", "FetchSummary", "RetryPolicy"]
