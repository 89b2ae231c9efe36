"""Right-click a subset in glue's data collection ▸ "SPHEREx: live spectrum of this region".

The action starts a :class:`glue_spherex.live_spectrum.LiveSpectrum` for the subset's group
(debounced with a 150 ms single-shot Qt timer, so dragging a region recomputes once it
pauses), adds the table dataset "SPHEREx spectrum: <subset>" and opens a scatter viewer of
flux against wavelength with error bars. Selecting points in that viewer creates the
companion subset "SPHEREx selection: <subset>", which lights up the aperture on exactly the
cutouts those points came from; the status bar lists them. Running the action again on the
same subset brings back the spectrum viewer instead of starting a second follower.

Importing the module registers the action (``glue_spherex.qt.setup`` does).
"""

from __future__ import annotations

import contextlib

from qtpy import QtCore

__all__ = ["LABEL", "register", "open_live_spectrum", "QtDebouncer"]

LABEL = "SPHEREx: live spectrum of this region"
TOOLTIP = ("Spectrum (flux vs wavelength) inside this region from every SPHEREx cutout; "
           "follows the region as it moves")
DEBOUNCE_MS = 150

_registered = False


def register():
    """Add the data-collection menu entry (idempotent; called from ``qt.setup()``)."""
    global _registered
    if _registered:
        return
    from glue_qt.config import layer_action

    layer_action.add(layer_action.item(LABEL, TOOLTIP, _action, None, True, False, True, True))
    _registered = True


class QtDebouncer(QtCore.QObject):
    """``schedule(fn)``: run ``fn`` once, ``DEBOUNCE_MS`` after the last request."""

    def __init__(self, parent=None, interval=DEBOUNCE_MS):
        super().__init__(parent)
        self._timer = QtCore.QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(interval)
        self._timer.timeout.connect(self._fire)
        self._fn = None

    def __call__(self, fn):
        self._fn = fn
        self._timer.start()  # restarts a running timer

    def _fire(self):
        fn, self._fn = self._fn, None
        if fn is not None:
            fn()


def _action(layer, data_collection):
    from glue.core import SubsetGroup

    from ..errors import SpherexInputError
    from . import _notice
    from .session import find_application

    app = find_application(data_collection)
    group = layer if isinstance(layer, SubsetGroup) else getattr(layer, "group", None)
    try:
        if group is None:
            raise SpherexInputError("select a subset (a region drawn on a SPHEREx cutout)")
        return open_live_spectrum(app, group)
    except Exception as exc:  # noqa: BLE001 -- one line for the user, traceback in the log
        _notice(app, exc)
        return None


def open_live_spectrum(app, subset_group):
    """Follow ``subset_group`` with a live spectrum and show it; returns the scatter viewer."""
    from glue_qt.viewers.scatter import ScatterViewer

    from ..live_spectrum import LiveSpectrum, live_spectra

    dc = app.data_collection
    live = live_spectra(dc).get(subset_group)
    if live is None:
        live = LiveSpectrum(dc, subset_group, schedule=QtDebouncer(app))
        live.selection_callbacks.append(lambda cutouts: _show_selection(app, cutouts))
    spectrum = live.spectrum
    for tab in app.viewers:
        for viewer in tab:
            if isinstance(viewer, ScatterViewer) and any(
                    layer.layer is spectrum for layer in viewer.layers):
                return viewer
    viewer = app.new_data_viewer(ScatterViewer, data=spectrum)
    state = viewer.state
    state.x_att = spectrum.id["wavelength"]
    state.y_att = spectrum.id["flux"]
    for layer in state.layers:
        if layer.layer is spectrum:
            layer.yerr_att = spectrum.id["error"]
            layer.yerr_visible = True
    viewer.setWindowTitle(spectrum.label)
    return viewer


def _show_selection(app, cutouts):
    names = ", ".join(d.label for d in cutouts[:6])
    more = f" and {len(cutouts) - 6} more" if len(cutouts) > 6 else ""
    text = (f"SPHEREx selection: {len(cutouts)} cutout{'s' if len(cutouts) != 1 else ''}"
            + (f" — {names}{more}" if cutouts else ""))
    with contextlib.suppress(RuntimeError):  # window already deleted
        app.statusBar().showMessage(text, 15000)


register()
