"""Compare across wavelengths: a grid of image viewers showing one sky region at several λ.

:func:`open_wavelength_grid` picks cutouts spread evenly in central wavelength (or takes the
ones given) and opens a tab of image viewers in a grid (2×2, 2×3 or 3×3), each titled with
its band and wavelength, sharing one reference dataset so their pixel axes are one sky grid
and their limits stay in sync (pan or zoom one, all follow). From the menus the panels are
built one per turn of the event loop, so the window never freezes. glue saves the viewers
but not the callbacks that keep them in step: :func:`reattach_wavelength_grids` links the
grids of a restored session again (the ``restored-grids`` patch, :mod:`glue_spherex.qt.patches`).
"""

from __future__ import annotations

import contextlib

import numpy as np
from echo import delay_callback

from ..errors import SpherexError
from ..plugin import is_spherex_data
from .session import central_wavelength

__all__ = ["choose_across_wavelength", "grid_shape", "open_wavelength_grid", "SharedView",
           "reattach_wavelength_grids", "view_record", "restore_view", "restore_view_when_shown",
           "saved_limits", "apply_limits",
           "MAX_PANELS", "TAB_NAME", "VIEW_KEY"]

MAX_PANELS = 9
TAB_NAME = "Compare λ"
DEFAULT_PANELS = 6
_LIMITS = ("x_min", "x_max", "y_min", "y_max")


def choose_across_wavelength(cutouts, count=DEFAULT_PANELS):
    """Up to ``count`` cutouts spread as evenly as possible over the wavelength range.

    The shortest and longest wavelengths come first; then, one at a time, the cutout farthest
    in wavelength from every one already chosen (so clusters of near-identical wavelengths
    give one panel, not several). The result is sorted by wavelength.
    """
    ordered = sorted(cutouts, key=central_wavelength)
    if len(ordered) <= count:
        return ordered
    lam = np.array([central_wavelength(d) for d in ordered])
    chosen = [0, len(ordered) - 1][:count]
    gap = np.minimum(np.abs(lam - lam[0]), np.abs(lam - lam[-1]))
    while len(chosen) < count:
        best = int(np.argmax(gap))  # first of equals: deterministic
        chosen.append(best)
        gap = np.minimum(gap, np.abs(lam - lam[best]))
    return [ordered[i] for i in sorted(chosen)]


def grid_shape(count):
    """(rows, columns) of the panel grid for ``count`` viewers."""
    if count <= 2:
        return 1, count
    if count <= 4:
        return 2, 2
    if count <= 6:
        return 2, 3
    return 3, 3


def open_wavelength_grid(app, datasets=None, count=DEFAULT_PANELS, block=True):
    """Open a tab of linked image viewers, one per cutout, across the wavelength range.

    Parameters
    ----------
    app : GlueApplication
    datasets : list of Data, optional
        Cutouts to show (sorted by wavelength; thinned evenly to :data:`MAX_PANELS`). By
        default ``count`` cutouts are chosen from all SPHEREx cutouts in the session.
    count : int
        Number of panels when choosing automatically (at most :data:`MAX_PANELS`).
    block : bool
        Build every panel before returning (scripts). Otherwise (the menu actions) one panel
        is built per turn of the event loop, so the window stays responsive, with progress in
        the status bar; the returned list fills as they appear.

    Returns
    -------
    list of ImageViewer
        In wavelength order.
    """
    pool = [d for d in (datasets if datasets is not None else app.data_collection)
            if is_spherex_data(d)]
    if len(pool) < 2:
        raise SpherexError("comparing across wavelengths needs at least 2 SPHEREx cutouts; "
                           "import some with File ▸ Import data ▸ SPHEREx cutouts…")
    limit = MAX_PANELS if datasets is not None else max(2, min(int(count), MAX_PANELS))
    chosen = choose_across_wavelength(pool, limit)
    viewers = []
    steps = _build_grid(app, chosen, viewers)
    if block:
        for _ in steps:
            pass
        return viewers
    app._spherex_grid_pending = True
    from qtpy import QtCore

    def step():
        try:
            next(steps)
        except StopIteration:
            app._spherex_grid_pending = False
            return
        except Exception as exc:  # noqa: BLE001 -- one line for the user, like the menu
            app._spherex_grid_pending = False
            from . import error_notice

            error_notice(app, exc)
            return
        QtCore.QTimer.singleShot(0, step)

    step()
    return viewers


def _build_grid(app, chosen, viewers):
    """The grid, one step per ``next()``: the frame and tab, each panel, then the layout."""
    from glue_qt.viewers.image import ImageViewer

    def status(text):
        with contextlib.suppress(RuntimeError):
            app.statusBar().showMessage(text, 0)

    reference = chosen[len(chosen) // 2]
    app.new_tab()
    tab = app.current_tab
    app.tab_widget.setTabText(app.tab_widget.indexOf(tab), TAB_NAME)
    status(f"Comparing {len(chosen)} cutouts: opening the panels…")
    yield
    for i, data in enumerate(chosen):
        viewer = app.new_data_viewer(ImageViewer, data=reference)
        if data is not reference:
            viewer.add_data(data)
        for layer in viewer.state.layers:
            if layer.layer is data:
                _style(layer, data)
        if data is not reference:
            _hide_reference_layers(viewer.state, reference)
        viewer.state.title = data.label  # band, λ, date: 'D2 1.342 µm 2025-05-03 #17'
        _select_layer(viewer, data)
        viewers.append(viewer)
        _tile(tab, viewers, len(chosen))
        if len(viewers) == 1:
            viewer.state.reset_limits()
        else:  # drawn with the shared view from the start: no second draw at the end
            with delay_callback(viewer.state, *_LIMITS):
                for name in _LIMITS:
                    setattr(viewer.state, name, getattr(viewers[0].state, name))
        status(f"Comparing {len(chosen)} cutouts: panel {i + 1} of {len(chosen)}…")
        yield
    # Equal panel sizes give equal aspect corrections, so the shared limits are the same in
    # every panel.
    shared = SharedView([v.state for v in viewers])
    shared.push(viewers[0].state)
    for viewer in viewers:
        viewer._spherex_shared_view = shared  # the callbacks hold it only weakly
    with contextlib.suppress(RuntimeError):
        app.statusBar().showMessage(f"{len(chosen)} cutouts side by side, north up, east "
                                    "left; pan or zoom one panel and all follow", 6000)


def reattach_wavelength_grids(app):
    """Link again the panels of every wavelength grid of ``app`` (restored from a session):
    shared pan and zoom, and the reference cutout's future subsets hidden in the other
    panels. Returns the grids found, each a list of viewers."""
    from glue_qt.viewers.image import ImageViewer

    grids = []
    for name, viewers in zip(app.tab_names, app.viewers):
        panels = [v for v in viewers if isinstance(v, ImageViewer)]
        references = {id(v.state.reference_data): v.state.reference_data for v in panels}
        if name != TAB_NAME or len(panels) < 2 or len(references) != 1:
            continue
        reference = next(iter(references.values()))
        for viewer in panels:
            if not any(layer.visible and layer.layer is reference
                       for layer in viewer.state.layers):
                _hide_reference_layers(viewer.state, reference, now=False)
        shared = SharedView([v.state for v in panels])
        for viewer in panels:
            viewer._spherex_shared_view = shared
        grids.append(panels)
    return grids


#: Key of the record glue-spherex adds to a saved application: each viewer's limits and the
#: active subsets (glue restores neither: limits are reset as layers come back).
VIEW_KEY = "spherex_view"


def view_record(app):
    """What :data:`VIEW_KEY` saves of ``app``: every viewer's limits, the active subsets."""
    limits = [[[getattr(v.state, name, None) for name in _LIMITS] for v in tab]
              for tab in app.viewers]
    mode = getattr(app.session, "edit_subset_mode", None)
    active = [g.label for g in (getattr(mode, "edit_subset", None) or [])
              if hasattr(g, "label")]
    return {"limits": limits, "active_subsets": active}


def saved_limits(record, tab, index):
    """The limits :data:`VIEW_KEY` ``record`` saved for viewer ``index`` of tab ``tab``
    (None if it saved none)."""
    try:
        return record.get("limits", [])[tab][index]
    except (IndexError, TypeError):
        return None


def apply_limits(viewer, values):
    """Give ``viewer`` the limits ``values`` (x_min, x_max, y_min, y_max), if all numbers;
    values it has already cause no change (and no redraw)."""
    if not values or not all(isinstance(v, (int, float)) for v in values):
        return
    state = viewer.state
    if all(getattr(state, name, None) == value for name, value in zip(_LIMITS, values)):
        return
    with delay_callback(state, *_LIMITS):
        for name, value in zip(_LIMITS, values):
            setattr(state, name, value)


def restore_view(app, record):
    """Give the viewers of a restored ``app`` their saved limits and make the saved active
    subsets active again (``record`` as saved under :data:`VIEW_KEY`)."""
    for tab, saved in zip(app.viewers, record.get("limits", [])):
        for viewer, values in zip(tab, saved):
            apply_limits(viewer, values)
    labels = record.get("active_subsets") or []
    groups = [g for g in app.data_collection.subset_groups if g.label in labels]
    mode = getattr(app.session, "edit_subset_mode", None)
    if groups and mode is not None:
        # glue makes the subsets selected in the data-collection tree the active ones (at
        # every selection change and tree rebuild): select them there too
        tree = getattr(getattr(getattr(app, "_layer_widget", None), "ui", None), "layerTree",
                       None)
        if tree is not None:
            tree.set_selected_layers(groups)
        mode.edit_subset = groups


def _restore_later(app, record):
    with contextlib.suppress(RuntimeError):  # the window was closed meanwhile
        restore_view(app, record)


def restore_view_when_shown(app, record):
    """Apply the saved view once the restored window has been shown and laid out (polls:
    glue shows the window after restoring it, at a time we are not told)."""
    from qtpy import QtCore

    timer = QtCore.QTimer(app)
    timer.setInterval(50)
    state = {"shown_ticks": 0, "ticks": 0}

    def tick():
        state["ticks"] += 1
        with contextlib.suppress(RuntimeError):
            if app.isVisible():
                state["shown_ticks"] += 1
        if state["shown_ticks"] in (2, 8):  # laid out, then after the panels' resizes
            _restore_later(app, record)
        if state["shown_ticks"] >= 8 or state["ticks"] > 1200:  # at most a minute
            timer.stop()

    timer.timeout.connect(tick)
    timer.start()
    return timer


def _hide_reference_layers(state, reference, now=True):
    """Keep the shared reference cutout and its subsets (e.g. a wavelength stripe, which
    differs from cutout to cutout) out of sight in a panel that shows another cutout; layers
    added later, when subsets are created, are hidden once too, then left to the user.
    ``now=False`` leaves the layers already there as they are (a restored session)."""
    seen = set() if now else {id(layer) for layer in state.layers}

    def hide(*args):
        for layer in state.layers:
            owner = getattr(layer.layer, "data", layer.layer)
            if owner is reference and id(layer) not in seen:
                seen.add(id(layer))
                layer.visible = False

    hide()
    state.add_callback("layers", hide)
    state._spherex_hide_reference = hide  # echo keeps callbacks only weakly


class SharedView:
    """Keep the x/y limits of several image viewers equal: a pan or zoom in any one of them
    is applied, all four limits at once, to the others."""

    def __init__(self, states):
        self.states = list(states)
        self._busy = False
        self._followers = [_Follower(self, state) for state in self.states]

    def push(self, source):
        if self._busy:
            return  # changes made while propagating (aspect corrections) stay local
        self._busy = True
        try:
            limits = {name: getattr(source, name) for name in _LIMITS}
            for state in self.states:
                if state is not source:
                    with delay_callback(state, *_LIMITS):
                        for name, value in limits.items():
                            setattr(state, name, value)
        finally:
            self._busy = False


class _Follower:
    def __init__(self, shared, state):
        self.shared = shared
        self.state = state
        for name in _LIMITS:
            state.add_callback(name, self.changed)

    def changed(self, *args):
        self.shared.push(self.state)


def _select_layer(viewer, data):
    """Make the panel's own cutout (not the hidden reference) the layer glue's side panel
    shows. (glue's ``select_artist`` uses an enum spelling PySide6 lacks, hence by hand.)"""
    from qtpy.QtCore import QItemSelectionModel

    layer_list = viewer.layer_view().layer_list
    artist = next((a for a in viewer.layers if a.layer is data), None)
    if artist is not None:
        index = layer_list.model().index(layer_list.model().artist_row(artist))
        layer_list.selectionModel().select(index, QItemSelectionModel.ClearAndSelect)


def _style(layer, data):
    """flux, asinh stretch, limits from the 0.5 and 99.5 percentiles of the pixels without a
    defect flag (hot, cold, transient... pixels would otherwise set the scale)."""
    from ..products.flags import mask_from_names

    layer.attribute = data.id["flux"]
    layer.stretch = "arcsinh"
    flux = np.asarray(data["flux"], float)
    good = np.isfinite(flux) & ~mask_from_names(data["flags"])
    if good.sum() >= 2:
        lo, hi = np.percentile(flux[good], [0.5, 99.5])
        if hi > lo:
            layer.percentile = "Custom"
            layer.v_min, layer.v_max = float(lo), float(hi)


def _tile(tab, viewers, total=None):
    rows, cols = grid_shape(total or len(viewers))
    area = tab.viewport().size() if hasattr(tab, "viewport") else tab.size()
    width = max(area.width(), 900) // cols
    height = max(area.height(), 600) // rows
    for i, viewer in enumerate(viewers):
        row, col = divmod(i, cols)
        window = viewer._mdi_wrapper or viewer
        window.setGeometry(col * width, row * height, width, height)
