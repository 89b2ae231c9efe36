"""The SPHEREx menu entries of a glue session: export to one MEF, compare across wavelengths.

The session holds real cutouts from the local archive, fetched and turned into glue datasets
by the project's own code, added through ``GlueApplication.add_data`` as glue's importers do.
"""

import numpy as np
import pytest
import qt_support
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from qt_support import TARGET, WINDOW, menu_action

from glue_spherex.download.fetcher import fetch_cutouts
from glue_spherex.irsa.core import SpherexClass

pytestmark = pytest.mark.timeout(300)
glue_app = qt_support.glue_app


@pytest.fixture(scope="module")
def products(archive):
    table = SpherexClass(archive_url=archive.url).query_region(
        TARGET, size="1arcmin", time=WINDOW, bandpass=[1, 2, 4, 6])
    results = list(fetch_cutouts(table, workers=4))
    assert len(results) >= 6 and all(r.ok for r in results)
    return [r.product for r in results]


@pytest.fixture
def session(glue_app, products):
    from glue_spherex.plugin import products_to_data

    datasets = products_to_data(products)
    glue_app.add_data(*datasets)
    return glue_app, datasets


def _open_grid(app, qtbot, action):
    """Trigger a compare action and wait for its panels (built one per event-loop turn)."""
    action.trigger()
    qtbot.waitUntil(lambda: not getattr(app, "_spherex_grid_pending", False), timeout=60_000)


def _select(app, layers):
    app._layer_widget.ui.layerTree.set_selected_layers(layers)


def _layer_action(app, label):
    return app._layer_widget._actions[label]


def test_export_selected_in_time_order(session, qtbot, tmp_path):
    from glue.core.data_factories import load_data

    from glue_spherex.plugin import is_spherex_data
    from glue_spherex.qt import EXPORT_SELECTED_LABEL

    app, datasets = session
    n = len(datasets)
    chosen = [datasets[n // 2], datasets[0], datasets[-1]]
    _select(app, chosen)
    action = _layer_action(app, EXPORT_SELECTED_LABEL)
    assert action.isEnabled()
    action.trigger()
    dialog = app._spherex_export_dialog
    assert dialog.datasets == chosen
    path = tmp_path / "three.fits"
    dialog.path_edit.setText(str(path))
    dialog.order_time.setChecked(True)
    qtbot.mouseClick(dialog.export_button, qt_left())
    qtbot.waitUntil(lambda: dialog.written is not None or "rror" in dialog.status_label.text(),
                    timeout=60_000)
    assert dialog.written == str(path), dialog.status_label.text()
    assert dialog.status_label.text().startswith("Wrote 3 cutouts")
    assert not list(tmp_path.glob("*.part"))

    # glue reads it back: one dataset per cutout
    loaded = load_data(str(path))
    loaded = loaded if isinstance(loaded, list) else [loaded]
    assert len(loaded) == 3 and all(is_spherex_data(d) for d in loaded)

    # ... and so does the tutorial's astropy code
    info = Table.read(path, hdu=1)
    assert list(info["cutout_index"]) == [1, 2, 3]
    assert np.all(np.diff(info["observation_date"]) > 0)  # time order
    by_time = sorted(chosen, key=lambda d: d.meta["mjd_beg"])
    with fits.open(path) as hdul:
        for n, data in enumerate(by_time, start=1):
            np.testing.assert_array_equal(hdul[f"IMAGE{n}"].data, data["flux"])
            wave = WCS(hdul[f"IMAGE{n}"].header, fobj=hdul, key="W")
            wave.sip = None
            y, x = 3, 4
            lam, _ = wave.pixel_to_world_values(x, y)
            assert lam == pytest.approx(data["wavelength"][y, x], rel=1e-6)
            assert hdul[f"PSF{n}"].data.shape == (121, 101, 101)


def test_export_all_from_plugins_menu_in_wavelength_order(session, qtbot, tmp_path):
    from glue_spherex.qt import EXPORT_LABEL

    app, datasets = session
    menu_action(app._actions["plugins"], EXPORT_LABEL).trigger()
    dialog = app._spherex_export_dialog
    assert len(dialog.datasets) == len(datasets)
    assert dialog.order == "wavelength"
    dialog.path_edit.setText(str(tmp_path / "all"))  # the extension is added
    qtbot.mouseClick(dialog.export_button, qt_left())
    qtbot.waitUntil(lambda: dialog.written is not None, timeout=60_000)
    assert dialog.written == str(tmp_path / "all.fits")
    info = Table.read(dialog.written, hdu=1)
    assert len(info) == len(datasets)
    lam = np.asarray(info["central_wavelength"])
    assert np.all(np.diff(lam) >= 0)
    assert lam[0] == pytest.approx(min(d.meta["central_wavelength"] for d in datasets), abs=1e-3)


def _slow_writer(monkeypatch, seconds):
    """Each cutout takes ``seconds`` longer to write (the real writer still writes it)."""
    import time

    from glue_spherex.products.combined import CombinedWriter

    add = CombinedWriter.add

    def slow(self, *args, **kwargs):
        time.sleep(seconds)
        return add(self, *args, **kwargs)

    monkeypatch.setattr(CombinedWriter, "add", slow)


@pytest.mark.slow
def test_export_runs_off_the_gui_thread_with_progress_and_cancel(session, qtbot, tmp_path,
                                                                  monkeypatch):
    from qt_watchdog import EventLoopWatchdog

    from glue_spherex.qt import EXPORT_LABEL

    app, datasets = session
    menu_action(app._actions["plugins"], EXPORT_LABEL).trigger()
    dialog = app._spherex_export_dialog
    qtbot.waitExposed(dialog)
    cancel_at = dialog.cancel_button.mapTo(dialog, dialog.cancel_button.rect().topLeft())
    _slow_writer(monkeypatch, 0.15)
    path = tmp_path / "slow.fits"
    dialog.path_edit.setText(str(path))
    seen = []
    dialog.progress.valueChanged.connect(seen.append)
    with EventLoopWatchdog(settle_gc=True) as dog:
        qtbot.mouseClick(dialog.export_button, qt_left())
        assert dialog.cancel_button.isEnabled() and not dialog.export_button.isEnabled()
        qtbot.waitUntil(lambda: dialog.written is not None, timeout=60_000)
    assert dog.max_gap < 0.3  # 0.15 s a cutout, and the window never waited for one
    assert seen[-1] == len(datasets) and len(seen) >= len(datasets) // 2
    assert path.exists()

    # Cancel part-way: nothing at the file name, no hidden leftovers, the button stayed put
    again = tmp_path / "cancelled.fits"
    dialog.path_edit.setText(str(again))
    qtbot.mouseClick(dialog.export_button, qt_left())
    qtbot.waitUntil(lambda: dialog.progress.value() >= 2, timeout=30_000)
    assert dialog.cancel_button.mapTo(dialog, dialog.cancel_button.rect().topLeft()) == cancel_at
    qtbot.mouseClick(dialog.cancel_button, qt_left())
    qtbot.waitUntil(lambda: dialog.export_button.isEnabled(), timeout=30_000)
    assert dialog.status_label.text() == "Cancelled; nothing was written."
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slow.fits"]


@pytest.mark.parametrize("where, expected", [
    ("missing/out.fits", "The folder {tmp}/missing does not exist; choose another file name."),
    ("folder.fits", "{tmp}/folder.fits is a folder; choose a file name."),
])
def test_export_problems_are_one_plain_sentence(session, qtbot, tmp_path, where, expected):
    from glue_spherex.qt import EXPORT_LABEL

    (tmp_path / "folder.fits").mkdir()
    app, _ = session
    menu_action(app._actions["plugins"], EXPORT_LABEL).trigger()
    dialog = app._spherex_export_dialog
    dialog.path_edit.setText(str(tmp_path / where))
    qtbot.mouseClick(dialog.export_button, qt_left())
    assert dialog.status_label.text() == expected.format(tmp=tmp_path)
    assert dialog.export_button.isEnabled() and dialog.written is None


@pytest.mark.slow
def test_compare_selected_cutouts(session, qtbot):
    from glue_spherex.qt import COMPARE_SELECTED_LABEL

    app, datasets = session
    n = len(datasets)
    chosen = [datasets[i] for i in (0, n // 3, 2 * n // 3, n - 1)]
    _select(app, chosen)
    tabs = app.tab_widget.count()
    _open_grid(app, qtbot, _layer_action(app, COMPARE_SELECTED_LABEL))
    assert app.tab_widget.count() == tabs + 1
    viewers = [w.widget() for w in app.current_tab.subWindowList()]
    assert len(viewers) == 4
    shown = [next(la.layer for la in v.layers if la.visible) for v in viewers]
    assert {id(d) for d in shown} == {id(d) for d in chosen}
    lams = [d.meta["central_wavelength"] for d in shown]
    assert lams == sorted(lams)
    # a 2 x 2 grid: two distinct columns and two distinct rows of equal-sized panels
    geoms = [v._mdi_wrapper.geometry() for v in viewers]
    assert len({g.x() for g in geoms}) == 2 and len({g.y() for g in geoms}) == 2
    assert len({(g.width(), g.height()) for g in geoms}) == 1


@pytest.mark.slow
def test_compare_panels_show_only_their_own_cutouts_subsets(session, qtbot):
    """Every panel shares one reference cutout; its subsets (a wavelength stripe differs from
    cutout to cutout) must not be drawn over the other panels' cutouts."""
    from glue_spherex.plugin import wavelength_subset
    from glue_spherex.qt import COMPARE_SELECTED_LABEL

    app, datasets = session
    chosen = datasets[:4]
    _select(app, chosen)
    _open_grid(app, qtbot, _layer_action(app, COMPARE_SELECTED_LABEL))
    viewers = [w.widget() for w in app.current_tab.subWindowList()]
    lo = min(d.meta["central_wavelength"] for d in chosen)
    wavelength_subset(app.data_collection, lo - 0.5, lo + 5.0)   # created after the grid
    qtbot.wait(50)
    for viewer in viewers:
        own = next(la.layer for la in viewer.layers if la.visible and la.layer in chosen)
        shown = [la.layer for la in viewer.layers if la.visible]
        subsets = [layer for layer in shown if layer is not own]
        assert subsets, viewer.state.title                  # the new subset is drawn ...
        assert all(layer.data is own for layer in subsets)  # ... on this panel's cutout only


@pytest.mark.slow
def test_compare_grid_never_freezes_the_window(session, qtbot):
    """The panels appear one per turn of the event loop: the window keeps running (a 20 ms
    timer keeps ticking) instead of waiting for the whole grid."""
    import time

    from qt_watchdog import EventLoopWatchdog

    from glue_spherex.qt import COMPARE_LABEL
    from glue_spherex.qt.compare import TAB_NAME

    app, datasets = session
    t0 = time.perf_counter()
    with EventLoopWatchdog(settle_gc=True) as dog:
        _open_grid(app, qtbot, menu_action(app._actions["plugins"], COMPARE_LABEL))
    took = time.perf_counter() - t0
    panels = app.viewers[app.tab_names.index(TAB_NAME)]
    assert len(panels) == min(6, len(datasets))
    assert dog.max_gap < 0.6 * took, (dog.max_gap, took)
    assert dog.ticks >= len(panels)
    assert "side by side" in app.statusBar().currentMessage()


def test_compare_needs_cutouts_and_says_so(glue_app, qtbot):
    from glue_spherex.qt import COMPARE_LABEL

    tabs = glue_app.tab_widget.count()
    menu_action(glue_app._actions["plugins"], COMPARE_LABEL).trigger()
    box = glue_app._spherex_notice
    assert box.isVisible()
    assert "at least 2 SPHEREx cutouts" in box.text() and "\n" not in box.text()
    assert glue_app.tab_widget.count() == tabs
    box.close()


def qt_left():
    from qtpy.QtCore import Qt

    return Qt.LeftButton


@pytest.mark.slow
def test_compare_grid_restored_from_a_session_still_moves_together(session, qtbot, tmp_path):
    """glue saves the grid's tab, viewers and limits but not the callbacks that keep the
    panels in step; the plugin links them again when the session is restored."""
    from glue_qt.app import GlueApplication

    from glue_spherex.plugin import wavelength_subset
    from glue_spherex.qt import COMPARE_SELECTED_LABEL
    from glue_spherex.qt.compare import TAB_NAME

    app, datasets = session
    chosen = datasets[:4]
    _select(app, chosen)
    _open_grid(app, qtbot, _layer_action(app, COMPARE_SELECTED_LABEL))
    grid = app.viewers[app.tab_names.index(TAB_NAME)]
    grid[1].state.y_min, grid[1].state.y_max = 3.0, 13.0  # a zoom, shared by every panel
    saved_y = (grid[0].state.y_min, grid[0].state.y_max)
    active = wavelength_subset(app.data_collection, 0.5, 1.5, label="blue end")
    app.session.edit_subset_mode.edit_subset = [active]
    path = str(tmp_path / "grid.glu")
    app.save_session(path, include_data=True)

    restored = GlueApplication.restore_session(path, show=False)
    qtbot.addWidget(restored)
    restored.resize(1400, 900)
    restored.show()
    qtbot.waitExposed(restored)
    from glue_spherex.qt import restore_pending

    assert restore_pending(restored)  # the viewers are made one per event-loop turn
    qtbot.waitUntil(lambda: not restore_pending(restored), timeout=60_000)
    tab = restored.tab_names.index(TAB_NAME)
    panels = restored.viewers[tab]
    assert len(panels) == 4

    def limits(viewer):
        return tuple(getattr(viewer.state, k) for k in ("x_min", "x_max", "y_min", "y_max"))

    assert len({limits(v) for v in panels}) == 1  # one sky view in every panel
    qtbot.wait(600)  # the saved view is applied again once the window is laid out
    # the same place in view (glue then fits the span to the panel's aspect)
    assert panels[0].state.y_min + panels[0].state.y_max == pytest.approx(sum(saved_y), abs=1)
    assert [g.label for g in restored.session.edit_subset_mode.edit_subset] == ["blue end"]
    # pan the third panel: every panel follows, as in the grid before saving
    panels[2].state.x_min, panels[2].state.x_max = 5.0, 15.0
    assert all(limits(v)[:2] == (5.0, 15.0) for v in panels)
    assert len({limits(v) for v in panels}) == 1
    # a subset made after the restore is drawn on each panel's own cutout only
    own = {id(v): next(la.layer for la in v.state.layers if la.visible) for v in panels}
    lo = min(d.meta["central_wavelength"] for d in chosen)
    wavelength_subset(restored.data_collection, lo - 0.5, lo + 5.0)
    qtbot.wait(50)
    for viewer in panels:
        shown = [la.layer for la in viewer.state.layers if la.visible]
        subsets = [layer for layer in shown if layer is not own[id(viewer)]]
        assert subsets and all(layer.data is own[id(viewer)] for layer in subsets)
    restored.tab_widget.setCurrentIndex(tab)
    qtbot.wait(50)
    qt_support.save_screenshot(restored.grab(), "compare_grid_restored.png")
