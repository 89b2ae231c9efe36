"""fetch_into() on a running glue-qt session: the call returns at once, the cutouts are added
on the GUI thread in batches while Qt keeps processing events, linked, and shown in the data
collection panel."""

import threading

import pytest
import qt_support
from qt_support import TARGET, WINDOW

from glue_spherex.plugin import fetch_into
from glue_spherex.plugin.links import CutoutLink

glue_app = qt_support.glue_app
window_size = qt_support.window_size


@pytest.mark.slow
def test_fetch_into_a_glue_qt_session(glue_app, qtbot, archive, window_size):
    from glue.core.hub import HubListener
    from glue.core.message import DataCollectionAddMessage

    dc = glue_app.data_collection
    threads = []

    class Listener(HubListener):
        pass

    listener = Listener()
    dc.hub.subscribe(listener, DataCollectionAddMessage,
                     handler=lambda msg: threads.append(threading.current_thread()))

    run = fetch_into(glue_app, TARGET, size="1 arcmin", time_range=WINDOW,
                     archive_url=archive.url, workers=2, batch_seconds=0.2)
    assert not run.done and len(dc) == 0  # nothing was added inside the call
    qtbot.waitUntil(lambda: run.done, timeout=120_000)

    assert not run.failures and run.error is None
    assert len(dc) == len(run.table) == window_size
    assert set(threads) == {threading.main_thread()}  # the GUI thread, every time
    assert sum(isinstance(link, CutoutLink) for link in dc.external_links) == len(dc) - 1
    # what a person sees: every cutout listed in the data collection panel
    model = glue_app._layer_widget.ui.layerTree.model()
    qtbot.waitUntil(lambda: not getattr(model, "pending", False))
    root = model.data_index()
    shown = [model.data(model.index(row, 0, root), 0) for row in range(model.rowCount(root))]
    assert shown == [d.label for d in dc]


def test_fetch_into_blocking_from_the_gui_thread(glue_app, archive):
    dc = glue_app.data_collection
    run = fetch_into(glue_app, TARGET, size="30 arcsec", bandpass="D3", time_range=WINDOW,
                     archive_url=archive.url, block=True)
    assert run.done and len(dc) == len(run.table) > 0


def test_data_panel_lists_cutouts_by_wavelength_with_their_identity_as_tooltip(glue_app, qtbot,
                                                                                 archive):
    from qtpy.QtCore import Qt

    dc = glue_app.data_collection
    run = fetch_into(glue_app, TARGET, size="30 arcsec", bandpass=["D5", "D1", "D3"],
                     time_range=WINDOW, archive_url=archive.url, block=True)
    assert run.done and len(dc) == len(run.table) > 3
    model = glue_app._layer_widget.ui.layerTree.model()
    qtbot.waitUntil(lambda: not getattr(model, "pending", False))
    root = model.data_index()
    rows = [model.index(row, 0, root) for row in range(model.rowCount(root))]
    shown = [model.data(index, Qt.DisplayRole) for index in rows]
    lams = [d.meta["central_wavelength"] for d in dc]
    assert shown == [d.label for d in dc] and lams == sorted(lams)
    assert shown[0].startswith("D1 ") and shown[-1].startswith("D5 ")
    for index, data in zip(rows, dc):
        tip = model.data(index, Qt.ToolTipRole)
        label, ident = tip.split("\n")
        assert label == data.label and len(label) <= 32
        assert ident.startswith(f"{data.meta['obs_id']} D{data.meta['detector']}")
        assert data.meta["version"] in ident
