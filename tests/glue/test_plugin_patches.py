"""The list of changes to glue: complete, gated on versions, undoable, documented, and
without effect on sessions that hold no SPHEREx data."""

from pathlib import Path

import numpy as np
import pytest
from astropy.wcs import WCS
from glue.core import Data, DataCollection
from glue.core.autolinking import find_possible_links
from glue.core.link_helpers import LinkSame
from glue.core.roi import RectangularROI
from glue.core.state import GlueSerializer
from glue.core.subset import RoiSubsetState

from glue_spherex import plugin
from glue_spherex.plugin import patches
from glue_spherex.plugin.patches import registry

pytest.importorskip("glue_qt")
import glue_spherex.qt  # noqa: E402
from glue_spherex.qt import patches as qt_patches  # noqa: E402

DOCS = Path(__file__).resolve().parents[2] / "docs" / "glue_changes.rst"
ALL = {"indexed-link-manager", "component-lookup", "session-names", "wcs-autolinker",
       "link-added-cutouts",
       "batched-tree", "restored-grids", "saved-view"}


@pytest.fixture(autouse=True)
def set_up():
    plugin.setup()
    glue_spherex.qt.setup()
    yield
    plugin.setup()
    glue_spherex.qt.setup()


def test_every_patch_is_listed_gated_and_documented():
    listed = patches.registered()
    assert {p.name for p in listed} == ALL
    text = DOCS.read_text()
    for p in listed:
        assert p.package in ("glue-core", "glue-qt")
        assert all([p.changes, p.why, p.verified_by, p.drop_when, p.versions])
        assert patches.supported(p.name)  # the installed glue is one they are for
        assert f"``{p.name}``" in text and p.versions in text, p.name
    assert set(patches.applied()) == ALL


def test_teardowns_undo_every_patch_and_setups_reapply():
    from glue_qt.app import GlueApplication
    from glue_qt.core import data_collection_model as dcm

    patched = dcm.DataCollectionModel, GlueApplication.__dict__["__setgluestate__"]
    glue_spherex.qt.teardown()
    plugin.teardown()
    try:
        assert patches.applied() == []
        assert dcm.DataCollectionModel.__name__ == "DataCollectionModel"
        assert GlueApplication.__dict__["__setgluestate__"] is not patched[1]
    finally:
        plugin.setup()
        glue_spherex.qt.setup()
    assert dcm.DataCollectionModel is patched[0]
    assert set(patches.applied()) == ALL
    assert qt_patches.undo() == ["saved-view", "restored-grids", "batched-tree"]  # last first
    assert qt_patches.apply() == ["batched-tree", "restored-grids", "saved-view"]


def test_a_patch_for_other_versions_is_not_applied():
    class Target:
        value = "glue's"

    def apply():
        return registry.replace_attribute(Target, "value", "ours")

    for versions, expected in (("<1", "glue's"), (">=1,<99", "ours")):
        name = f"test-only {versions}"
        registry.register(patches.Patch(
            name=name, package="glue-core", versions=versions, changes="-", why="-",
            verified_by="-", drop_when="-", apply=apply))
        try:
            patches.apply(names={name})
            assert Target.value == expected
        finally:
            patches.undo(names={name})
            registry.unregister(name)
        assert Target.value == "glue's"


def test_undo_leaves_a_later_change_by_other_code_alone(caplog):
    class Target:
        value = "glue's"

    restore = registry.replace_attribute(Target, "value", "ours")
    Target.value = "another plugin's"
    restore()
    assert Target.value == "another plugin's"
    assert "replaced by other code" in caplog.text


def mask_or_none(subset):
    from glue.core.exceptions import IncompatibleAttribute

    try:
        return subset.to_mask().tolist()
    except IncompatibleAttribute:  # a table under an image selection
        return None


def other_session():
    """Images and tables of another survey, linked, with a subset, and a collection
    the WCS autolinker has work in."""
    def image(i):
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval = [150.0 + i * 5 / 3600, 2.0]
        w.wcs.crpix = [10.5, 10.5]
        w.wcs.cdelt = [-1 / 3600, 1 / 3600]
        return Data(flux=np.arange(400.0).reshape(20, 20) * (i + 1), label=f"img{i}", coords=w)

    images = [image(i) for i in range(3)]
    tables = [Data(a=np.arange(5.0), label="t1"), Data(b=np.arange(5.0), label="t2")]
    dc = DataCollection(images + tables)
    dc.add_link(LinkSame(tables[0].id["a"], tables[1].id["b"]))
    dc.add_link(LinkSame(images[0].pixel_component_ids[0], images[1].pixel_component_ids[0]))
    dc.add_link(LinkSame(images[0].pixel_component_ids[1], images[1].pixel_component_ids[1]))
    dc.new_subset_group("box", RoiSubsetState(
        images[0].pixel_component_ids[1], images[0].pixel_component_ids[0],
        RectangularROI(2.5, 12.5, 3.5, 9.5)))
    import glue.plugins.wcs_autolinking.wcs_autolinking  # noqa: F401 -- glue's own autolinker

    suggestions = {label: len(links) for label, links in find_possible_links(dc).items()}
    derivable = {d.label: sorted(c.label for c in d.externally_derivable_components)
                 for d in dc}
    lookups = {d.label: [str(d.find_component_id(n)) for n in ("flux", "a", "b", "nope")]
               for d in dc}
    aligned = {d.label: sorted(x.label for x in d.pixel_aligned_data) for d in dc}
    masks = [mask_or_none(s) for s in dc.subset_groups[0].subsets]
    return (type(dc._link_manager).__name__, suggestions, derivable, lookups, aligned,
            masks), dc


def test_no_patch_changes_a_session_without_spherex_data():
    ours, dc = other_session()
    text = GlueSerializer(dc).dumps()
    with patches.without():
        assert patches.applied() == []
        glue, _ = other_session()
        assert GlueSerializer(dc).dumps() == text
    assert ours[0] == "LinkManager"
    assert ours[1] == {"Astronomy WCS": 3}
    assert sum(m is not None and any(map(any, m)) for m in ours[5]) == 2  # img0, img1
    assert ours == glue
