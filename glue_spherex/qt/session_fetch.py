"""The Qt side of :func:`glue_spherex.plugin.fetch_into`: run its batches on the GUI thread.

A glue-qt session may only be changed on the Qt GUI thread; :func:`single_shot` schedules the
next batch there with a zero-parent single-shot timer, so the call returns at once and the
GUI stays responsive while cutouts download.
"""

from __future__ import annotations

from qtpy import QtCore

__all__ = ["single_shot"]


def single_shot(milliseconds, function):
    """Call ``function()`` on the GUI thread after ``milliseconds``."""
    QtCore.QTimer.singleShot(int(milliseconds), function)
