"""HTTP sessions for the archive client: keep-alive pools, default timeouts, prompt abort.

:func:`make_session` returns a :class:`requests.Session` whose every request has a
``(connect, read)`` timeout unless the caller gives one (pyvo's requests have none), whose
connection pool holds ``pool_size`` keep-alive connections, and which never retries by itself
(retry policy lives in :mod:`glue_spherex.download.fetcher`). With a :class:`ConnectionTracker`, another
thread can abort every connection of the session at once -- including one still waiting for
response headers -- which is how cancelling a download stops in-flight requests promptly.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import weakref

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["make_session", "ConnectionTracker", "USER_AGENT"]


def _user_agent():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"glue-spherex/{version('glue-spherex')} (+requests/{requests.__version__})"
    except PackageNotFoundError:
        return f"glue-spherex/dev (+requests/{requests.__version__})"


USER_AGENT = _user_agent()


class ConnectionTracker:
    """Remembers the live connections of sessions so that :meth:`abort_all` can cut them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._connections = weakref.WeakSet()
        self.aborted = False

    def add(self, connection):
        with self._lock:
            self._connections.add(connection)
            aborted = self.aborted
        if aborted:
            _shutdown(connection)

    def abort_all(self):
        """Shut down every tracked socket; blocked reads in other threads return at once."""
        with self._lock:
            self.aborted = True
            connections = list(self._connections)
        for connection in connections:
            _shutdown(connection)


def _shutdown(connection):
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)


class _TimeoutSession(requests.Session):
    def __init__(self, timeout):
        super().__init__()
        self.default_timeout = timeout

    def request(self, method, url, **kwargs):
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().request(method, url, **kwargs)


def _tracked_pools(tracker):
    """Connection-pool classes whose connections register with ``tracker`` on connect."""

    def connection_class(base):
        def connect(self):
            base.connect(self)
            tracker.add(self)

        return type(f"Tracked{base.__name__}", (base,), {"connect": connect})

    http_pool = type("TrackedHTTPConnectionPool", (HTTPConnectionPool,),
                     {"ConnectionCls": connection_class(HTTPConnection)})
    https_pool = type("TrackedHTTPSConnectionPool", (HTTPSConnectionPool,),
                      {"ConnectionCls": connection_class(HTTPSConnection)})
    return {"http": http_pool, "https": https_pool}


def make_session(timeout, *, pool_size=1, tracker=None):
    """A session with default ``timeout``, ``pool_size`` keep-alive connections per host.

    Parameters
    ----------
    timeout : (float, float)
        Connect and read timeouts (s), used when a request gives none.
    pool_size : int
        Connections kept alive per host (size it to the threads sharing the session).
    tracker : ConnectionTracker, optional
        Register every connection, so that ``tracker.abort_all()`` can stop them.
    """
    session = _TimeoutSession(tuple(timeout))
    session.headers["User-Agent"] = USER_AGENT
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0,
                          pool_block=False)
    if tracker is not None:
        adapter.poolmanager.pool_classes_by_scheme = _tracked_pools(tracker)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
