"""Run archive work (a query, a download) off the GUI thread and relay its reports to Qt.

:class:`BackgroundTask` runs ``function(report, cancel)`` on a plain Python thread. The
function calls ``report(item)`` for every partial result and checks the ``cancel``
:class:`threading.Event`; the task hands the items, the return value or a one-line error
message back through Qt signals emitted **on the GUI thread** (a short timer drains a queue).

A Python thread rather than a ``QThread`` keeps Qt objects out of the worker entirely, so a
dialog or application closed in the middle of a download cannot take a running ``QThread``
down with it: the worker only sees the cancel event and ends on its own.
"""

from __future__ import annotations

import queue
import re
import threading

from qtpy import QtCore

from ..errors import SpherexError
from .messages import plain_message

__all__ = ["BackgroundTask", "one_line"]

_POLL_MS = 50


def one_line(exc):
    """A readable single line for any exception: never a traceback, an exception class name
    or a temporary ``.part`` file name."""
    if isinstance(exc, SpherexError):
        text = str(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        name = exc.filename if isinstance(exc.filename, str) else ""
        text = f"{exc.strerror}: {name}" if name else exc.strerror
    else:
        text = str(exc) or "an unexpected error happened (details in View ▸ Console Log)"
    first = next((line.strip() for line in text.splitlines() if line.strip()), text)
    return re.sub(r"(\S+?)\.part\b", r"\1", first)


class BackgroundTask(QtCore.QObject):
    """``function(report, cancel)`` on a worker thread; results come back as Qt signals.

    Signals (all emitted on the thread that owns the task, i.e. the GUI thread):

    ``reported(object)``
        one per ``report(item)`` call, in order;
    ``succeeded(object)``
        the function's return value, after every ``reported``;
    ``failed(str)``
        a one-line message if the function raised;
    ``ended()``
        last of all, whatever the outcome (also after a cancel).
    """

    reported = QtCore.Signal(object)
    succeeded = QtCore.Signal(object)
    failed = QtCore.Signal(str)
    ended = QtCore.Signal()

    def __init__(self, function, parent=None):
        super().__init__(parent)
        self._function = function
        self._queue = queue.Queue()
        self.cancel_event = threading.Event()
        self._thread = None
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(_POLL_MS)
        self._timer.timeout.connect(self._drain)
        self._running = False

    @property
    def running(self):
        """True from :meth:`start` until ``ended`` has been emitted."""
        return self._running

    def start(self):
        self._running = True
        self._thread = threading.Thread(target=self._run, name="glue-spherex-task", daemon=True)
        self._thread.start()
        self._timer.start()

    def cancel(self):
        """Ask the function to stop; what it already reported has been or will be relayed."""
        self.cancel_event.set()

    def wait(self, timeout=None):
        """Block until the worker thread has ended (for shutdown; drains nothing)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self):
        def report(item):
            self._queue.put(("item", item))
        try:
            value = self._function(report, self.cancel_event)
        except BaseException as exc:  # noqa: BLE001 -- shown to the user as one line
            self._queue.put(("error", plain_message(exc)))
        else:
            self._queue.put(("done", value))

    def _drain(self):
        while True:
            try:
                kind, payload = self._queue.get_nowait()
            except queue.Empty:
                return
            if kind == "item":
                self.reported.emit(payload)
                continue
            self._timer.stop()
            self._running = False
            if kind == "done":
                self.succeeded.emit(payload)
            else:
                self.failed.emit(payload)
            self.ended.emit()
            return
