"""IndexedLinkManager derives exactly what glue's LinkManager derives, at the same depth.

Each test builds the same mixed session twice -- once with glue's own LinkManager, once
with the plugin's -- and compares, for every dataset, the derivable components, the depth
of the link chain glue would use for each, and the pixel-aligned datasets.
"""

import numpy as np
import pytest
from cutouts import survey
from glue.core import Data, DataCollection
from glue.core.component_id import ComponentID
from glue.core.component_link import ComponentLink
from glue.core.hub import HubListener
from glue.core.link_helpers import LinkSame
from glue.core.link_manager import LinkManager
from glue.core.message import ExternallyDerivableComponentsChangedMessage
from glue.plugins.wcs_autolinking.wcs_autolinking import WCSLink

from glue_spherex import plugin
from glue_spherex.plugin import patches, product_to_data
from glue_spherex.plugin.linkmanager import IndexedLinkManager, LazyDerivableComponents
from glue_spherex.plugin.links import CutoutLink
from glue_spherex.products.spectral_image import SpectralImage


@pytest.fixture(scope="module", autouse=True)
def registered():
    plugin.setup()


@pytest.fixture(scope="module")
def products():
    return [SpectralImage.open(h) for h in survey(6, seed=3)]


def session(products, glue_manager, monkeypatch):
    """Tables joined by one-way, identity and two-input links; images pixel-aligned by identity
    links; two WCS-linked images; SPHEREx cutouts linked in a star."""
    dc = DataCollection()
    if glue_manager:  # glue's own LinkManager, kept as cutouts arrive
        with patches.without("indexed-link-manager"):
            return _fill(dc, products)
    return _fill(dc, products)


def _fill(dc, products):
    t1 = Data(a=np.arange(5.0), b=np.arange(5.0) * 3, label="t1")
    t2 = Data(c=np.arange(5.0), label="t2")
    t3 = Data(e=np.arange(5.0), label="t3")
    t1.add_component_link(ComponentLink([t1.id["a"]], ComponentID("a2", t1), using=np.square,
                                        input_names=["a"]))  # numpy < 2: no ufunc signature
    t3.add_component(np.arange(5.0) * 7, t1.id["b"])  # a component ID shared by t1 and t3
    i1, i2, i3 = (Data(v=np.ones((4, 6)) * k, label=f"i{k}") for k in (1, 2, 3))
    w1, w2 = (Data(flux=np.zeros((20, 20)), label=f"w{k + 1}",
                   coords=products[k].wcs) for k in (0, 1))
    cutouts = [product_to_data(p) for p in products]
    dc.extend([t1, t2, t3, i1, i2, i3, w1, w2] + cutouts)
    virtual = ComponentID("sum", None)
    with dc.delay_link_manager_update():
        dc.add_link(ComponentLink([t1.id["a"]], t2.id["c"], using=lambda x: 2 * x))
        dc.add_link(LinkSame(t2.id["c"], t3.id["e"]))
        dc.add_link(ComponentLink([t1.id["a"], t1.id["b"]], virtual, using=np.add,
                                  input_names=["a", "b"]))
        dc.add_link(ComponentLink([t1.id["b"]], ComponentID("minus b", None),
                                  using=np.negative, input_names=["b"]))
        dc.add_link([LinkSame(i1.pixel_component_ids[0], i2.pixel_component_ids[0]),
                     LinkSame(i1.pixel_component_ids[1], i2.pixel_component_ids[1]),
                     LinkSame(i2.pixel_component_ids[0], i3.pixel_component_ids[0])])
        dc.add_link(WCSLink(w1, w2))
        # what link_cutouts adds (which would also switch the collection to our manager)
        dc.add_link([CutoutLink(cutouts[0], c) for c in cutouts[1:]])
    return dc


def name(cid):
    return (cid.parent.label if cid.parent is not None else None, cid.label)


def derivations(dc):
    """{dataset: {component: depth}} and {dataset: {pixel-aligned dataset: order}}."""
    derivable, aligned = {}, {}
    for data in dc:
        mapping = data._externally_derivable_components
        own = set(data.main_components + data.coordinate_components)

        def depth(cid, mapping=mapping, own=own):
            if cid in own:
                return 0
            return 1 + max((depth(f) for f in mapping[cid].link.get_from_ids()), default=0)

        derivable[data.label] = {name(cid): depth(cid) for cid in mapping}
        aligned[data.label] = {d.label: order for d, order in data.pixel_aligned_data.items()}
    return derivable, aligned


def test_same_derivations_as_glue(products, monkeypatch):
    glue_dc = session(products, True, monkeypatch)
    ours = session(products, False, monkeypatch)
    assert type(glue_dc._link_manager) is LinkManager
    assert isinstance(ours._link_manager, IndexedLinkManager)
    assert all(isinstance(d._externally_derivable_components, LazyDerivableComponents)
               for d in ours)
    expected, expected_aligned = derivations(glue_dc)
    found, found_aligned = derivations(ours)
    assert found == expected
    assert found_aligned == expected_aligned
    assert expected_aligned["i1"] == {"i2": [0, 1]} and expected_aligned["i3"] == {}
    assert expected["t1"][("t3", "e")] == 2 and ("t1", "a") not in expected["t3"]  # one way
    assert expected["t1"][(None, "sum")] == 1
    assert expected["t3"][(None, "minus b")] == 1  # t3 owns t1's "b" too
    # the same values come out of both
    for label in ("t3", "i1", "w2", ours[10].label):
        a, b = glue_dc[label], ours[label]
        for cid_a, cid_b in zip(sorted(a._externally_derivable_components, key=lambda c: str(name(c))),
                                sorted(b._externally_derivable_components, key=lambda c: str(name(c)))):
            assert name(cid_a) == name(cid_b)
            np.testing.assert_allclose(a[cid_a], b[cid_b])


def test_lookups_resolve_only_what_is_asked(products, monkeypatch):
    dc = session(products, False, monkeypatch)
    cutouts = [d for d in dc if d.meta.get("spherex")]
    target = cutouts[4]
    mapping = target._externally_derivable_components
    assert target[cutouts[2].pixel_component_ids[1]].shape == target.shape
    assert not mapping._complete and 1 <= len(mapping._links) <= 8  # of ~50
    assert target.id["flux"] is target.main_components[0]  # no closure for an own label
    assert not mapping._complete
    assert dc["t1"].id["a"] not in mapping  # other part of the graph: answered at once
    assert not mapping._complete
    assert len(mapping) == len(list(mapping)) > 5 * 4  # iterating computes the closure
    assert mapping._complete


def test_removing_and_changing_links_matches_glue(products, monkeypatch):
    results = []
    for glue_manager in (True, False):
        dc = session(products, glue_manager, monkeypatch)
        dc.remove(dc["i2"])
        dc.remove(dc["t2"])
        cutouts = [d for d in dc if d.meta.get("spherex")]
        dc.remove(cutouts[3])
        dc.remove_link([link for link in dc.external_links if isinstance(link, WCSLink)])
        results.append(derivations(dc))
    assert results[0] == results[1]
    derivable, aligned = results[1]
    assert aligned["i1"] == {} and derivable["w1"] == {}
    assert derivable["t3"] == {(None, "minus b"): 1}  # t2 gone: only what t3 owns itself


def test_change_messages_reach_the_linked_datasets_only(products, monkeypatch):
    dc = session(products, False, monkeypatch)
    seen = []

    class Listener(HubListener):
        pass

    listener = Listener()
    dc.hub.subscribe(listener, ExternallyDerivableComponentsChangedMessage,
                     handler=lambda msg: seen.append(msg.data.label))
    dc.add_link(LinkSame(dc["t3"].id["e"], dc["i3"].id["v"]))  # a new link t* <-> i3 (i2, i1)
    assert set(seen) == {"t1", "t2", "t3", "i1", "i2", "i3"}
    seen.clear()
    dc.add_link(LinkSame(dc["w1"].id["flux"], dc["w2"].id["flux"]))
    assert set(seen) == {"w1", "w2"}
    seen.clear()
    dc._link_manager.update_externally_derivable_components()  # nothing changed
    assert seen == []


def test_adding_unlinked_skips_the_update_and_derives_the_same(products, monkeypatch):
    from glue_spherex.plugin.linkmanager import adding_unlinked

    skipped, full = session(products, False, monkeypatch), session(products, False, monkeypatch)
    calls = []
    manager = skipped._link_manager
    monkeypatch.setattr(manager, "_update_pixel_alignment",
                        lambda *args: calls.append(args))  # runs only in a full update
    table = Data(x=np.arange(3.0), label="table")
    with adding_unlinked(skipped, table):
        skipped.append(table)
    assert calls == [] and table in skipped
    full.append(Data(x=np.arange(3.0), label="table"))
    assert derivations(skipped) == derivations(full)
    assert derivations(skipped)[0]["table"] == {}

    # a link made inside the block (or one using the new dataset) gets the full update
    other = Data(y=np.arange(3.0), label="other")
    with adding_unlinked(skipped, other):
        skipped.append(other)
        skipped.add_link(LinkSame(other.id["y"], table.id["x"]))
    assert calls  # updated
    assert ("table", "x") in {name(c) for c in other._externally_derivable_components}
