"""How long the GUI thread's event loop went without running: a watchdog for GUI tests and
``bench/bench_gui.py``.

:class:`EventLoopWatchdog` ticks a Qt timer every 20 ms and records the longest gap between
two ticks while it runs. Anything that holds the GUI thread (a long computation started by
a menu action, a blocking file copy) shows up as a gap of that length, whatever widget or
code path caused it. :func:`run_until` runs the event loop until a condition holds.
"""

from __future__ import annotations

import gc
import time

__all__ = ["EventLoopWatchdog", "run_until"]

TICK_MS = 20


class EventLoopWatchdog:
    """``with EventLoopWatchdog() as dog: ...`` then ``dog.max_gap`` (seconds).

    With ``settle_gc`` (the tests), the garbage of everything that ran before is collected
    and the surviving objects are frozen out of the collector while it watches: a full
    collection over a whole test session's heap can hold the GUI thread for half a second,
    which says nothing about the action under test. The benchmark leaves the collector as a
    user's process has it.
    """

    def __init__(self, tick_ms=TICK_MS, settle_gc=False):
        from qtpy import QtCore

        self.settle_gc = settle_gc
        self.tick_ms = tick_ms
        self.max_gap = 0.0
        self.ticks = 0
        self._last = None
        self._timer = QtCore.QTimer()
        self._timer.setInterval(tick_ms)
        self._timer.timeout.connect(self._tick)

    def _tick(self):
        now = time.perf_counter()
        if self._last is not None:
            self.max_gap = max(self.max_gap, now - self._last)
        self._last = now
        self.ticks += 1

    def start(self):
        if self.settle_gc:
            gc.collect()
            gc.freeze()
        self.max_gap, self.ticks = 0.0, 0
        self._last = time.perf_counter()
        self._timer.start()
        return self

    def stop(self):
        self._timer.stop()
        self._tick()  # a block that ran up to the end counts too
        if self.settle_gc:
            gc.unfreeze()
        return self.max_gap

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def run_until(condition, timeout=60.0, step_ms=10):
    """Run the Qt event loop until ``condition()`` is true; returns the seconds it took.
    Raises ``TimeoutError`` after ``timeout`` seconds."""
    from qtpy import QtCore, QtWidgets

    app = QtWidgets.QApplication.instance()
    t0 = time.perf_counter()
    while not condition():
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"not done after {timeout:.0f} s")
        app.processEvents(QtCore.QEventLoop.AllEvents, step_ms)
        time.sleep(0.002)
    return time.perf_counter() - t0
