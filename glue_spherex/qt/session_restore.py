"""Restore the viewers of a saved SPHEREx session one per turn of the event loop.

glue restores a session in one call: the data collection, then every viewer (each drawn
as its layers come back), then the window is shown. With 274 cutouts and a wavelength grid
that held the GUI thread ~5 s. The ``restored-grids`` patch (:mod:`glue_spherex.qt.patches`)
takes the viewers out of the record of a session that holds SPHEREx cutouts and hands them
to :class:`ViewerRestore`, which makes each one from the same unserializer context (so it
refers to the same datasets, subsets and session) in its own event-loop turn, shows the
progress in the status bar, and at the end links the wavelength grids again and applies the
saved limits and active subsets. ``app._spherex_restore_pending`` is true meanwhile;
:func:`finish_restore` makes the remaining viewers at once (scripts that run no event loop).
"""

from __future__ import annotations

import contextlib

from qtpy import QtCore

__all__ = ["ViewerRestore", "finish_restore", "restore_pending"]


class ViewerRestore(QtCore.QObject):
    """Make the saved viewers ``pending`` (``[(tab index, viewer record), ...]``) of ``app``
    one per event-loop turn from the unserializer ``context``, each given to
    ``prepare(viewer, tab, index)`` before it is shown (e.g. its saved limits: a change
    after its first draw would draw it again); then ``done(app)``."""

    def __init__(self, app, pending, context, done=None, prepare=None):
        super().__init__(app)
        self.app = app
        self.pending = list(pending)
        self.total = len(self.pending)
        self.context = context
        self.done = done
        self.prepare = prepare  # prepare(viewer, tab, index in tab) before it is shown
        self._made = {}  # tab -> viewers made in it
        self._timer = QtCore.QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self.step)
        app._spherex_restore = self
        app._spherex_restore_pending = True
        if self.pending:
            self._status()
            self._timer.start()
        else:
            self._finish()

    def _status(self):
        made = self.total - len(self.pending)
        with contextlib.suppress(RuntimeError):
            self.app.statusBar().showMessage(
                f"Restoring the session: viewer {made + 1} of {self.total}…", 0)

    def step(self):
        """Make the next viewer (and schedule the one after)."""
        if not self.pending:
            return
        tab, record = self.pending.pop(0)
        try:
            viewer = self.context.object(record)
            index = self._made.get(tab, 0)
            self._made[tab] = index + 1
            if self.prepare is not None:
                self.prepare(viewer, tab, index)
            self.app.add_widget(viewer, tab=tab, hold_position=True)
        except RuntimeError:  # the window was closed meanwhile
            self.pending.clear()
            return
        if self.pending:
            self._status()
            self._timer.start()
        else:
            self._finish()

    def run_all(self):
        """Make every remaining viewer now."""
        self._timer.stop()
        while self.pending:
            self.step()
        self._timer.stop()

    def _finish(self):
        with contextlib.suppress(RuntimeError):
            if self.done is not None:
                self.done(self.app)
            self.app.statusBar().showMessage(
                f"Session restored: {self.total} viewer{'s' if self.total != 1 else ''}", 5000)
        self.app._spherex_restore_pending = False
        self.context = None  # what it holds is the session's now


def restore_pending(app):
    """True while viewers of a restored session are still being made."""
    return bool(getattr(app, "_spherex_restore_pending", False))


def finish_restore(app):
    """Make the viewers of a restored session that are still waiting, now; returns ``app``."""
    restore = getattr(app, "_spherex_restore", None)
    if restore is not None and restore.pending:
        restore.run_all()
    return app
