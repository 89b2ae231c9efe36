"""Right-click a subset in glue's data collection ▸ "SPHEREx: live spectrum of this region".

The action starts a :class:`glue_spherex.plugin.live_spectrum.LiveSpectrum` for the subset's group
(debounced with a 150 ms single-shot Qt timer, so dragging a region recomputes once it
pauses; measured on a worker thread, so the window never waits for it), adds the table
dataset "SPHEREx spectrum: <subset>" and opens, beside the other viewers of the tab, a
scatter viewer of flux density (µJy) against wavelength (µm) with error bars, coloured by
band with a legend; every update rescales it. Selecting points in that viewer creates the
companion subset "SPHEREx selection: <subset>", which lights up the aperture on exactly the
cutouts those points came from; the status bar lists them. Running the action again on the
same subset brings back the spectrum viewer instead of starting a second follower.

Importing the module registers the action (``glue_spherex.qt.setup`` does).
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np
from qtpy import QtCore

__all__ = ["LABEL", "register", "open_live_spectrum", "QtDebouncer", "QtBackground",
           "place_beside"]

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
    band_colormap()  # before any session that uses it is restored
    # photutils takes 1-2 s to import; do it now, off the GUI thread, not at the first spectrum
    threading.Thread(target=_preload, name="glue-spherex-preload", daemon=True).start()


def _preload():
    with contextlib.suppress(Exception):
        import photutils.aperture  # noqa: F401


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
    from . import error_notice
    from .session import find_application

    app = find_application(data_collection)
    group = layer if isinstance(layer, SubsetGroup) else getattr(layer, "group", None)
    try:
        if group is None:
            raise SpherexInputError("select a subset (a region drawn on a SPHEREx cutout)")
        return open_live_spectrum(app, group, block=False)
    except Exception as exc:  # noqa: BLE001 -- one line for the user, traceback in the log
        error_notice(app, exc)
        return None


def open_live_spectrum(app, subset_group, block=True, timeout=120.0):
    """Follow ``subset_group`` with a live spectrum and show it; returns the scatter viewer.

    The spectrum is measured on a worker thread. With ``block`` (scripts) this waits for
    the first spectrum, keeping the window's events running; without it (the menu action)
    it returns None at once and the viewer opens beside the other viewers when the spectrum
    is ready -- the status bar says what is going on meanwhile.
    """
    import time

    from qtpy import QtWidgets

    from ..plugin import cutouts_in
    from ..plugin.live_spectrum import LiveSpectrum, live_spectra

    dc = app.data_collection
    live = live_spectra(dc).get(subset_group)
    if live is None:
        n = len(cutouts_in(dc))
        _status(app, f"Measuring the spectrum of {subset_group.label!r} on {n} SPHEREx "
                     "cutouts…", 0)
        live = LiveSpectrum(dc, subset_group, schedule=QtDebouncer(app),
                            background=QtBackground(app))
        live.selection_callbacks.append(lambda cutouts: _show_selection(app, cutouts))
        live.spectrum_callbacks.append(lambda live: _spectrum_changed(app, live))
    if live.spectrum is None and block:
        t0 = time.perf_counter()
        while live.spectrum is None and live.error is None:
            if time.perf_counter() - t0 > timeout:
                break
            QtWidgets.QApplication.processEvents(QtCore.QEventLoop.AllEvents, 20)
            time.sleep(0.002)
    if live.spectrum is None:
        return None
    return _spectrum_viewer(app, live) or _new_viewer(app, live)


class QtBackground(QtCore.QObject):
    """``background(work, done, failed)`` for :class:`~glue_spherex.plugin.live_spectrum.LiveSpectrum`:
    ``work()`` on a worker thread, ``done``/``failed`` back on the GUI thread."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._tasks = set()

    def __call__(self, work, done, failed):
        from .fetch_worker import BackgroundTask

        task = BackgroundTask(lambda report, cancel: work(), self)
        self._tasks.add(task)
        task.succeeded.connect(done)
        task.failed.connect(failed)
        task.ended.connect(lambda: self._tasks.discard(task))
        task.start()


#: One colour per detector band (D1 blue ... D6 red), as the bands run in wavelength.
BAND_COLOURS = ("#3b4cc0", "#2c9fd9", "#2ca25f", "#d4a017", "#e6550d", "#b2182b")
BAND_RANGES = ("0.75–1.09", "1.10–1.62", "1.63–2.41", "2.42–3.82", "3.83–4.41", "4.42–5.00")
CMAP_NAME = "spherex_bands"
X_LABEL = "Wavelength (µm)"
Y_LABEL = "Flux density (µJy)"


def _spectrum_viewer(app, live):
    from glue_qt.viewers.scatter import ScatterViewer

    for tab in app.viewers:
        for viewer in tab:
            if isinstance(viewer, ScatterViewer) and any(
                    layer.layer is live.spectrum for layer in viewer.layers):
                return viewer
    return None


def _spectrum_changed(app, live):
    """A new spectrum (or a failure): open the viewer the first time, then rescale it."""
    with contextlib.suppress(RuntimeError):  # window already deleted
        if live.error is not None:
            _status(app, f"The spectrum could not be measured: {live.error}", 15000)
            return
        viewer = _spectrum_viewer(app, live)
        if viewer is None:
            # in the next turn of the event loop: adding the table and making the viewer
            # are two GUI-thread blocks of ~0.2 s each instead of one of 0.4 s
            QtCore.QTimer.singleShot(0, lambda: _open_viewer(app, live))
        else:
            viewer.state.reset_limits()  # autoscale: the new points are all in view
        measured = int(np.isfinite(np.asarray(live.spectrum["flux"], float)).sum())
        text = (f"SPHEREx spectrum of {live.label!r}: {measured} of {live.spectrum.size} "
                "cutouts measured")
        for warning in live.spectrum.meta.get("warnings", []):  # e.g. mixed pipelines
            text += f". Warning: {warning}"
        _status(app, text, 30000 if live.spectrum.meta.get("warnings") else 8000)


def _open_viewer(app, live):
    with contextlib.suppress(RuntimeError):  # window already deleted
        if live.spectrum is not None and _spectrum_viewer(app, live) is None:
            _new_viewer(app, live)


def _new_viewer(app, live):
    from glue_qt.viewers.scatter import ScatterViewer

    spectrum = live.spectrum
    viewer = app.new_data_viewer(ScatterViewer, data=spectrum)
    state = viewer.state
    state.x_att = spectrum.id["wavelength"]
    state.y_att = spectrum.id["flux"]
    state.x_axislabel, state.y_axislabel = X_LABEL, Y_LABEL
    for layer in state.layers:
        if layer.layer is spectrum:
            layer.yerr_att = spectrum.id["error"]
            layer.yerr_visible = True
            layer.cmap_att = spectrum.id["detector"]
            layer.cmap = band_colormap()
            layer.cmap_vmin, layer.cmap_vmax = 0.5, 6.5
            layer.cmap_mode = "Linear"
            layer.size = 6
    viewer.get_handles_legend = _band_legend  # glue draws these handles as the legend
    state.legend.title = "Band"
    state.legend.visible = True
    viewer.setWindowTitle(spectrum.label)
    state.title = spectrum.label
    place_beside(app, viewer)
    return viewer


def band_colormap():
    """The band colours as a matplotlib colormap, registered by name so that glue sessions
    that use it open again."""
    import matplotlib
    from glue.config import colormaps
    from matplotlib.colors import ListedColormap

    if CMAP_NAME not in matplotlib.colormaps:
        matplotlib.colormaps.register(ListedColormap(BAND_COLOURS, name=CMAP_NAME))
    cmap = matplotlib.colormaps[CMAP_NAME]
    if not any(member[0] == "SPHEREx bands" for member in colormaps.members):
        colormaps.add("SPHEREx bands", cmap)  # glue's colormap menus list it then
    return next(member[1] for member in colormaps.members if member[0] == "SPHEREx bands")


def _band_legend():
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="", color=colour, markersize=6)
               for colour in BAND_COLOURS]
    labels = [f"D{i + 1}  {r} µm" for i, r in enumerate(BAND_RANGES)]
    return handles, labels, {}


def place_beside(app, viewer, min_width=420):
    """Put ``viewer`` to the right of the other viewers of its tab, narrowing them if the
    tab has no room left, so that it covers none of them."""
    tab = app.current_tab
    others = [v for v in app.viewers[app.tab_widget.indexOf(tab)] if v is not viewer]
    size = tab.viewport().size() if hasattr(tab, "viewport") else tab.size()
    width, height = max(size.width(), 900), max(size.height(), 500)
    windows = [(v._mdi_wrapper or v) for v in others]
    right = max((w.geometry().right() + 1 for w in windows), default=0)
    room = width - right
    if room < min_width and right > 0:
        scale = (width - min_width) / right
        for w in windows:
            g = w.geometry()
            w.setGeometry(int(g.x() * scale), g.y(), max(int(g.width() * scale), 120),
                          g.height())
        right = width - min_width
    window = viewer._mdi_wrapper or viewer
    window.setGeometry(right, 0, width - right, min(height, max(420, height // 2 + 120)))


def _status(app, text, timeout):
    with contextlib.suppress(RuntimeError):
        app.statusBar().showMessage(text, timeout)


def _show_selection(app, cutouts):
    names = ", ".join(d.label for d in cutouts[:6])
    more = f" and {len(cutouts) - 6} more" if len(cutouts) > 6 else ""
    text = (f"SPHEREx selection: {len(cutouts)} cutout{'s' if len(cutouts) != 1 else ''}"
            + (f" — {names}{more}" if cutouts else ""))
    with contextlib.suppress(RuntimeError):  # window already deleted
        app.statusBar().showMessage(text, 15000)


register()
