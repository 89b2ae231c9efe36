"""glue's data-collection tree with hundreds of SPHEREx cutouts: one refresh per batch.

A real GlueApplication (both halves of the plugin set up first, as `glue` does); the tree a
person sees is checked through the view: rows, expansion, selection, and a screenshot.
"""

import os

import pytest
import qt_support
from cutouts import survey
from glue.core import Data
from glue.core.roi import RectangularROI
from glue.core.subset import RoiSubsetState

from glue_spherex.plugin import link_cutouts, product_to_data
from glue_spherex.products.spectral_image import SpectralImage
from glue_spherex.qt.collection_model import BatchedDataCollectionModel

pytestmark = pytest.mark.timeout(300)
glue_app = qt_support.glue_app
N = 300


@pytest.fixture(scope="module")
def products():
    return [SpectralImage.open(h) for h in survey(30)]


def _tree(app):
    view = app._layer_widget.ui.layerTree
    return view, view.model()


def _labels(model, parent):
    return [model.data(model.index(row, 0, parent), 0) for row in range(model.rowCount(parent))]


@pytest.mark.slow
def test_hundreds_of_cutouts_refresh_the_tree_once(glue_app, products, qtbot):
    view, model = _tree(glue_app)
    assert isinstance(model, BatchedDataCollectionModel)
    refreshes = []
    model.layoutChanged.connect(lambda *args: refreshes.append(1))
    datasets = [product_to_data(products[i % len(products)]) for i in range(N)]

    glue_app.add_data(*datasets)
    assert model.pending and refreshes == []  # nothing drawn yet: the rebuild waits for Qt
    qtbot.waitUntil(lambda: not model.pending)
    assert len(refreshes) == 1  # glue's own model: one per dataset
    data_root = model.data_index()
    assert view.isExpanded(data_root)
    assert _labels(model, data_root) == [d.label for d in datasets]
    assert view.selected_layers() == [datasets[-1]]  # as glue selects the last one added

    # one selection over all of them: N subsets, one refresh
    link_cutouts(glue_app.data_collection)
    ref = datasets[0]
    state = RoiSubsetState(ref.pixel_component_ids[1], ref.pixel_component_ids[0],
                           RectangularROI(5.5, 15.5, 5.5, 15.5))
    group = glue_app.data_collection.new_subset_group("box", state)
    assert len(group.subsets) == N
    qtbot.waitUntil(lambda: not model.pending)
    assert len(refreshes) == 2
    assert _labels(model, model.subsets_index()) == ["box"]
    assert view.selected_layers() == [group]
    assert all(s.to_mask().any() for s in group.subsets[:: N // 10])

    glue_app.resize(1400, 900)
    qtbot.wait(50)
    shot = glue_app._layer_widget.grab()
    os.makedirs(qt_support.SHOTS, exist_ok=True)
    assert shot.save(os.path.join(qt_support.SHOTS, "tree_300_cutouts.png"))
    # the panel shows the tree: the first cutout's row is on screen with its label
    first = view.visualRect(model.data_index(0))
    assert first.height() > 0 and view.viewport().rect().intersects(first)


def test_selection_from_code_wins_over_the_pending_refresh(glue_app, products, qtbot):
    view, model = _tree(glue_app)
    datasets = [product_to_data(p) for p in products[:12]]
    glue_app.add_data(*datasets)
    assert model.pending
    view.set_selected_layers([datasets[3]])  # completes the refresh first
    assert not model.pending
    qtbot.wait(50)
    assert view.selected_layers() == [datasets[3]]


def test_other_data_refresh_at_once_as_in_glue(glue_app, qtbot):
    import numpy as np

    view, model = _tree(glue_app)
    refreshes = []
    model.layoutChanged.connect(lambda *args: refreshes.append(1))
    plain = Data(x=np.arange(12.0).reshape(3, 4), label="plain image")
    glue_app.add_data(plain)
    assert not model.pending and len(refreshes) == 1
    assert view.selected_layers() == [plain]


def test_icons_are_made_once_per_style_and_follow_a_colour_change(glue_app, products, qtbot,
                                                                   monkeypatch):
    from glue_qt.core import data_collection_model as glue_model

    view, model = _tree(glue_app)
    made = []
    glue_layer_icon = glue_model.layer_icon
    monkeypatch.setattr(glue_model, "layer_icon",
                        lambda layer: made.append(layer) or glue_layer_icon(layer))
    datasets = [product_to_data(products[i % len(products)]) for i in range(40)]
    for d in datasets:
        d.style.color = "#123456"
    glue_app.add_data(*datasets)
    qtbot.waitUntil(lambda: not model.pending)
    icons = [model.data(model.data_index(i), glue_model.Qt.DecorationRole) for i in range(40)]
    assert len(made) == 1  # glue's model: one per row at every rebuild and repaint
    assert all(icon is icons[0] for icon in icons) and not icons[0].isNull()
    datasets[5].style.color = "#ff0000"  # a new colour: its own icon
    other = model.data(model.data_index(5), glue_model.Qt.DecorationRole)
    assert len(made) == 2 and other is not icons[0]
    colour = other.pixmap(16, 16).toImage().pixelColor(8, 8)
    assert (colour.red(), colour.green()) == (255, 0)


def test_the_spectrum_table_joins_the_batched_refresh(glue_app, qtbot):
    import numpy as np

    view, model = _tree(glue_app)
    table = Data(x=np.arange(4.0), label="SPHEREx spectrum: s")
    table.meta["spherex_spectrum"] = True
    glue_app.data_collection.append(table)
    assert model.pending  # drawn in the next turn of the event loop, with its subsets
    qtbot.waitUntil(lambda: not model.pending)
    assert _labels(model, model.data_index()) == [table.label]
    assert view.selected_layers() == [table]
