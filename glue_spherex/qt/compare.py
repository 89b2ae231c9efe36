"""Compare across wavelengths: a grid of image viewers showing one sky region at several λ.

:func:`open_wavelength_grid` picks cutouts spread evenly in central wavelength (or takes the
ones given), opens a new tab with one image viewer per cutout laid out in a grid (2×2, 2×3 or
3×3), and makes them share the sky view: every viewer uses the same reference dataset (shown
only in its own panel), so their pixel axes are the same sky grid, and their x/y limits are
kept in sync — pan or zoom one and all follow. Each panel is titled with its band and
central wavelength.
"""

from __future__ import annotations

import numpy as np
from echo import keep_in_sync

from ..errors import SpherexError
from .session import central_wavelength, is_cutout

__all__ = ["choose_across_wavelength", "grid_shape", "open_wavelength_grid", "MAX_PANELS"]

MAX_PANELS = 9
DEFAULT_PANELS = 6
_LIMITS = ("x_min", "x_max", "y_min", "y_max")


def choose_across_wavelength(cutouts, count=DEFAULT_PANELS):
    """Up to ``count`` cutouts whose central wavelengths are spread evenly over the range.

    For each of ``count`` wavelengths evenly spaced from the shortest to the longest, the
    nearest cutout not yet chosen is taken; the result is sorted by wavelength.
    """
    ordered = sorted(cutouts, key=central_wavelength)
    if len(ordered) <= count:
        return ordered
    lam = np.array([central_wavelength(d) for d in ordered])
    chosen = []
    for target in np.linspace(lam[0], lam[-1], count):
        for i in np.argsort(np.abs(lam - target), kind="stable"):
            if i not in chosen:
                chosen.append(int(i))
                break
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


def panel_title(data):
    meta = data.meta
    band = str(meta.get("bandpass", "")).replace("SPHEREx-", "")
    obs = meta.get("obs_id", "")
    parts = [p for p in (band, f"λ {central_wavelength(data):.3f} µm", obs) if p]
    return "   ".join(parts)


def open_wavelength_grid(app, datasets=None, count=DEFAULT_PANELS):
    """Open a tab of linked image viewers, one per cutout, across the wavelength range.

    Parameters
    ----------
    app : GlueApplication
    datasets : list of Data, optional
        Cutouts to show (sorted by wavelength; thinned evenly to :data:`MAX_PANELS`). By
        default ``count`` cutouts are chosen from all SPHEREx cutouts in the session.
    count : int
        Number of panels when choosing automatically (at most :data:`MAX_PANELS`).

    Returns
    -------
    list of ImageViewer
        In wavelength order.
    """
    from glue_qt.viewers.image import ImageViewer

    pool = [d for d in (datasets if datasets is not None else app.data_collection)
            if is_cutout(d)]
    if len(pool) < 2:
        raise SpherexError("comparing across wavelengths needs at least 2 SPHEREx cutouts; "
                           "import some with File ▸ Import data ▸ SPHEREx cutouts…")
    limit = MAX_PANELS if datasets is not None else max(2, min(int(count), MAX_PANELS))
    chosen = choose_across_wavelength(pool, limit)
    reference = chosen[len(chosen) // 2]

    app.new_tab()
    tab = app.current_tab
    app.tab_widget.setTabText(app.tab_widget.indexOf(tab), "Compare λ")

    viewers = []
    for data in chosen:
        viewer = app.new_data_viewer(ImageViewer, data=reference)
        if data is not reference:
            viewer.add_data(data)
        for layer in viewer.state.layers:
            if layer.layer is reference and data is not reference:
                layer.visible = False
            elif layer.layer is data and "flux" in [c.label for c in data.components]:
                layer.attribute = data.id["flux"]
        viewer.state.title = panel_title(data)
        viewers.append(viewer)

    lead = viewers[0].state
    syncs = [keep_in_sync(lead, name, v.state, name) for v in viewers[1:] for name in _LIMITS]
    for viewer in viewers:
        viewer._spherex_limit_sync = syncs  # keep the (weakly referenced) syncs alive

    _tile(tab, viewers)
    return viewers


def _tile(tab, viewers):
    rows, cols = grid_shape(len(viewers))
    area = tab.viewport().size() if hasattr(tab, "viewport") else tab.size()
    width = max(area.width(), 900) // cols
    height = max(area.height(), 600) // rows
    for i, viewer in enumerate(viewers):
        row, col = divmod(i, cols)
        window = viewer._mdi_wrapper or viewer
        window.setGeometry(col * width, row * height, width, height)
