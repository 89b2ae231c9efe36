"""glue plugin: linking cutouts, subset propagation, reprojection and sessions (N up to 300).

Expected selections are computed independently of glue's links, with astropy WCSs parsed
from each cutout's IMAGE header.
"""

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from cutouts import DEC0, RA0, survey
from glue.core import Data, DataCollection
from glue.core.autolinking import find_possible_links
from glue.core.exceptions import IncompatibleAttribute
from glue.core.fixed_resolution_buffer import compute_fixed_resolution_buffer
from glue.core.roi import RectangularROI
from glue.core.state import GlueSerializer, GlueUnSerializer
from glue.core.subset import RangeSubsetState, RoiSubsetState
from glue.plugins.wcs_autolinking.wcs_autolinking import WCSLink
from glue.viewers.image.state import ImageLayerState, ImageViewerState

from glue_spherex import plugin
from glue_spherex.errors import SpherexInputError
from glue_spherex.plugin import (
    SkyCircleSubsetState,
    WavelengthRangeSubsetState,
    link_cutouts,
    patches,
    product_to_data,
    reference_cutout,
    sky_subset,
    wavelength_subset,
)
from glue_spherex.plugin.linkmanager import IndexedLinkManager
from glue_spherex.plugin.links import LINKED_COMPONENTS, CutoutLink, sky_component_ids
from glue_spherex.products.spectral_image import SpectralImage

N_LARGE = 300


@pytest.fixture(scope="module", autouse=True)
def registered():
    plugin.setup()


@pytest.fixture(scope="module")
def products():
    """30 distinct cutouts (6 detectors, random rolls and pointings around M101)."""
    return [SpectralImage.open(h) for h in survey(30)]


def cutouts(products, n):
    """``n`` fresh datasets, cycling through the 30 products."""
    return [product_to_data(products[i % len(products)]) for i in range(n)]


def linked(products, n):
    datasets = cutouts(products, n)
    dc = DataCollection(datasets)
    link_cutouts(dc)
    return dc, datasets


def sky_of_pixels(data):
    """(ra, dec) of every pixel centre of ``data``, from astropy, not through glue."""
    yy, xx = np.mgrid[:data.shape[0], :data.shape[1]]
    return data._spherex_product.wcs.all_pix2world(xx, yy, 0)


def nearest_flux(data, target):
    """``data``'s flux at its pixel nearest to each pixel centre of ``target`` (NaN off
    ``data``), from astropy WCSs, not through glue; and where that choice is within 1e-6 px
    of a rounding edge (either neighbour is then right)."""
    x, y = data._spherex_product.wcs.all_world2pix(*sky_of_pixels(target), 0)
    ix, iy = np.round(x).astype(int), np.round(y).astype(int)
    ny, nx = data.shape
    inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    flux = np.asarray(data["flux"])
    values = np.where(inside, flux[np.clip(iy, 0, ny - 1), np.clip(ix, 0, nx - 1)], np.nan)
    edge = (np.abs(np.abs(x - np.floor(x)) - 0.5) < 1e-6) | \
        (np.abs(np.abs(y - np.floor(y)) - 0.5) < 1e-6)
    return values, edge


def test_star_of_identity_links(products):
    dc, datasets = linked(products, 10)
    reference = datasets[0]
    assert reference_cutout(dc) is reference
    assert isinstance(dc._link_manager, IndexedLinkManager)
    assert len(dc.external_links) == 9
    assert all(type(link) is CutoutLink and link.data1 is reference
               for link in dc.external_links)
    assert {link.data2 for link in dc.external_links} == set(datasets[1:])
    link = dc.external_links[0]
    assert [c.label for c in link.cids1] == [c.label for c in link.cids2] == \
        ["Right Ascension", "Declination", *LINKED_COMPONENTS]
    assert len(link) == 12 and sum(sub.identity for sub in link) == 8  # + 4 pixel links
    assert link_cutouts(dc) == []  # idempotent
    assert len(dc.external_links) == 9
    # every cutout can derive every other cutout's pixel and sky components
    for a in (datasets[3], datasets[7]):
        for b in datasets:
            for cid in b.pixel_component_ids + b.world_component_ids:
                assert a[cid].shape == a.shape


def test_new_cutouts_join_the_same_reference(products):
    dc, datasets = linked(products, 4)
    more = cutouts(products, 3)
    dc.extend(more)
    added = link_cutouts(dc, more)
    assert len(added) == 3 and {link.data1 for link in added} == {datasets[0]}


def test_link_cutouts_rejects_other_data(products):
    dc, _ = linked(products, 2)
    other = Data(x=np.zeros((3, 3)), label="other")
    dc.append(other)
    with pytest.raises(SpherexInputError, match="not a SPHEREx cutout"):
        link_cutouts(dc, [other])
    outside = product_to_data(products[0])
    with pytest.raises(SpherexInputError, match="not in the data collection"):
        link_cutouts(dc, [outside])


@pytest.mark.slow
def test_pixel_roi_selects_the_same_sky_in_all_cutouts(products):
    dc, datasets = linked(products, N_LARGE)
    reference = datasets[0]
    roi = RectangularROI(xmin=6.3, xmax=17.7, ymin=5.2, ymax=16.9)
    group = dc.new_subset_group("box", RoiSubsetState(reference.pixel_component_ids[1],
                                                      reference.pixel_component_ids[0], roi))
    ref_wcs = reference._spherex_product.wcs
    for data, subset in zip(datasets, group.subsets):
        assert subset.data is data
        mask = subset.to_mask()
        # where does each pixel of this cutout fall on the reference cutout?
        x, y = ref_wcs.all_world2pix(*sky_of_pixels(data), 0)
        expected = (x > roi.xmin) & (x < roi.xmax) & (y > roi.ymin) & (y < roi.ymax)
        edge = np.minimum.reduce([abs(x - roi.xmin), abs(x - roi.xmax),
                                  abs(y - roi.ymin), abs(y - roi.ymax)]) < 1e-6
        assert mask.any(), data.label
        assert np.array_equal(mask[~edge], expected[~edge]), data.label


def test_roi_on_a_non_reference_cutout_and_on_sky_coordinates(products):
    dc, datasets = linked(products, 40)
    source = datasets[17]  # not the reference: goes through the star
    roi = RectangularROI(xmin=2.5, xmax=12.5, ymin=8.5, ymax=20.5)
    pixel = dc.new_subset_group("pixel", RoiSubsetState(source.pixel_component_ids[1],
                                                        source.pixel_component_ids[0], roi))
    ra_id, dec_id = sky_component_ids(source)
    box = RectangularROI(xmin=RA0 - 0.004, xmax=RA0 + 0.006, ymin=DEC0 - 0.005,
                         ymax=DEC0 + 0.003)
    sky = dc.new_subset_group("sky box", RoiSubsetState(ra_id, dec_id, box))
    src_wcs = source._spherex_product.wcs
    for i, data in enumerate(datasets):
        ra, dec = sky_of_pixels(data)
        x, y = src_wcs.all_world2pix(ra, dec, 0)
        expected = (x > roi.xmin) & (x < roi.xmax) & (y > roi.ymin) & (y < roi.ymax)
        assert np.array_equal(pixel.subsets[i].to_mask(), expected)
        expected = (ra > box.xmin) & (ra < box.xmax) & (dec > box.ymin) & (dec < box.ymax)
        assert np.array_equal(sky.subsets[i].to_mask(), expected)
        assert expected.any()


def test_wavelength_range_on_one_cutout_selects_in_all(products):
    dc, datasets = linked(products, 60)
    chosen = datasets[13]  # a D2 cutout
    assert chosen.meta["detector"] == 2
    lo, hi = 1.30, 1.35
    group = dc.new_subset_group("1.30-1.35", RangeSubsetState(lo, hi, chosen.id["wavelength"]))
    selected = 0
    for data, subset in zip(datasets, group.subsets):
        own = data._spherex_product.wavelength()
        expected = (own >= lo) & (own <= hi)
        assert np.array_equal(subset.to_mask(), expected)
        selected += expected.any()
        if data.meta["detector"] != 2:
            assert not expected.any()
    assert selected >= 5  # the D2 cutouts with pixels in range


def test_wavelength_subset_is_half_open(products):
    dc, datasets = linked(products, 12)
    d2 = datasets[1]
    values = np.sort(d2["wavelength"].ravel())
    lo, hi = float(values[100]), float(values[400])
    group = wavelength_subset(dc, lo, hi)
    assert isinstance(group.subset_state, WavelengthRangeSubsetState)
    for data, subset in zip(datasets, group.subsets):
        own = data._spherex_product.wavelength()
        assert np.array_equal(subset.to_mask(), (own >= lo) & (own < hi))
    mask = group.subsets[1].to_mask()
    assert mask[d2["wavelength"] == lo].all() and not mask[d2["wavelength"] == hi].any()
    with pytest.raises(SpherexInputError, match="lo < hi"):
        wavelength_subset(dc, 1.4, 1.3)


def test_sky_subset_matches_angular_separation(products):
    dc = DataCollection(cutouts(products, 20))  # no links needed
    centre = SkyCoord(RA0 + 0.002, DEC0 - 0.001, unit="deg")
    radius = 30 / 3600
    group = sky_subset(dc, centre.ra.deg, centre.dec.deg, radius)
    for data, subset in zip(dc, group.subsets):
        ra, dec = sky_of_pixels(data)
        sep = centre.separation(SkyCoord(ra, dec, unit="deg")).deg
        mask = subset.to_mask()
        near = abs(sep - radius) < 1e-9
        assert np.array_equal(mask[~near], (sep <= radius)[~near])
        assert mask.any()
    plain = Data(x=np.zeros((4, 4)), label="no wcs")
    dc.append(plain)
    with pytest.raises(IncompatibleAttribute):  # glue's viewers show it as empty
        dc.subset_groups[0].subsets[-1].to_mask()


def test_sky_circle_from_pixel_circle(products):
    data = cutouts(products, 1)[0]
    state = SkyCircleSubsetState.from_pixel_circle(data, 10.0, 12.0, 4.0)
    ra, dec = data._spherex_product.wcs.all_pix2world(10.0, 12.0, 0)
    assert (state.ra, state.dec) == pytest.approx((float(ra), float(dec)))
    assert state.radius == pytest.approx(4 * 6.15 / 3600, rel=0.02)
    mask = state.to_mask(data)
    yy, xx = np.mgrid[:data.shape[0], :data.shape[1]]
    r = np.hypot(xx - 10, yy - 12)
    assert mask[r < 3.95].all() and not mask[r > 4.2].any()  # 4.12 px: on the edge
    for bad in (dict(ra="x", dec=0, radius=1), dict(ra=0, dec=91, radius=1),
                dict(ra=0, dec=0, radius=-1)):
        with pytest.raises(SpherexInputError):
            SkyCircleSubsetState(**bad)


@pytest.mark.slow
def test_reprojection_between_any_two_cutouts(products):
    dc, datasets = linked(products, N_LARGE)
    ny, nx = datasets[0].shape
    bounds = [(0, ny - 1, ny), (0, nx - 1, nx)]
    pairs = [(datasets[0], datasets[k]) for k in range(1, N_LARGE)]  # every cutout on the ref
    pairs += [(datasets[5], datasets[211]), (datasets[250], datasets[1]), (datasets[99],
                                                                          datasets[0])]
    for target, data in pairs:
        values = compute_fixed_resolution_buffer(data, bounds, target_data=target,
                                                 target_cid=data.id["flux"])
        assert np.isfinite(values).mean() > 0.2, (target.label, data.label)
        # nearest-pixel resampling: each target pixel shows the data pixel under its centre
        expected, edge = nearest_flux(data, target)
        assert np.array_equal(values[~edge], expected[~edge], equal_nan=True), \
            (target.label, data.label)


@pytest.mark.slow
def test_image_viewer_state_shows_a_linked_cutout(products):
    dc, datasets = linked(products, N_LARGE)
    viewer = ImageViewerState()
    viewer.layers.append(ImageLayerState(layer=datasets[0], viewer_state=viewer))
    layer = ImageLayerState(layer=datasets[-1], viewer_state=viewer)
    viewer.layers.append(layer)
    viewer.reference_data = datasets[0]
    image = layer.get_sliced_data()
    assert image.shape == datasets[0].shape and np.isfinite(image).mean() > 0.2
    unlinked = DataCollection([product_to_data(products[3]), product_to_data(products[4])])
    viewer = ImageViewerState()
    viewer.layers.append(ImageLayerState(layer=unlinked[0], viewer_state=viewer))
    layer = ImageLayerState(layer=unlinked[1], viewer_state=viewer)
    viewer.layers.append(layer)
    viewer.reference_data = unlinked[0]
    with pytest.raises(Exception, match="IncompatibleAttribute|Pixel Axis|cid"):
        layer.get_sliced_data()


@pytest.mark.slow
def test_session_round_trip(products):
    dc, datasets = linked(products, N_LARGE)
    reference = datasets[0]
    dc.new_subset_group("box", RoiSubsetState(
        reference.pixel_component_ids[1], reference.pixel_component_ids[0],
        RectangularROI(4.5, 15.5, 6.5, 18.5)))
    sky_subset(dc, RA0, DEC0, 20 / 3600, label="sky")
    wavelength_subset(dc, 1.3, 1.35, label="wl")
    masks = [[s.to_mask() for s in group.subsets] for group in dc.subset_groups]

    assert patches.is_applied("session-names")  # the linear-time naming of saved objects...
    text = GlueSerializer(dc).dumps()
    with patches.without("session-names"):  # ...writes exactly what glue's own naming writes
        assert not patches.is_applied("session-names")
        assert GlueSerializer(dc).dumps() == text
    restored = GlueUnSerializer.loads(text).object("__main__")

    assert isinstance(restored._link_manager, IndexedLinkManager)
    assert len(restored) == N_LARGE and len(restored.external_links) == len(dc.external_links)
    assert [g.label for g in restored.subset_groups] == ["box", "sky", "wl"]
    assert isinstance(restored.subset_groups[1].subset_state, SkyCircleSubsetState)
    assert isinstance(restored.subset_groups[2].subset_state, WavelengthRangeSubsetState)
    for group, expected in zip(restored.subset_groups, masks):
        for subset, mask in zip(group.subsets, expected):
            assert np.array_equal(subset.to_mask(), mask), (group.label, subset.data.label)
    assert any(m.any() for m in masks[0]) and any(m.any() for m in masks[2])
    # the celestial WCS comes back with its SIP terms, and the SPHEREx metadata with it
    new = restored[7]
    assert new.coords.sip is not None and dict(new.meta) == dict(datasets[7].meta)
    yy, xx = np.mgrid[:24, :24]
    np.testing.assert_allclose(new.coords.all_pix2world(xx, yy, 0),
                               datasets[7].coords.all_pix2world(xx, yy, 0), rtol=0, atol=1e-11)
    assert reference_cutout(restored) is restored[0]
    assert link_cutouts(restored) == []


def test_removing_the_reference_relinks_the_others(products):
    dc, datasets = linked(products, 6)
    dc.remove(datasets[0])
    new_reference = reference_cutout(dc)
    assert new_reference is datasets[1]
    assert len(dc.external_links) == 4
    group = dc.new_subset_group("box", RoiSubsetState(
        new_reference.pixel_component_ids[1], new_reference.pixel_component_ids[0],
        RectangularROI(4.5, 15.5, 6.5, 18.5)))
    assert all(s.to_mask().any() for s in group.subsets)


def test_autolinkers_link_cutouts_without_pairwise_suggestions(products):
    datasets = cutouts(products, 40)
    other = Data(flux=np.ones((20, 20)), label="another survey",
                 coords=datasets[5]._spherex_product.wcs)  # a non-SPHEREx WCS image
    dc = DataCollection(datasets + [other])
    suggestions = find_possible_links(dc)  # what GlueApplication.add_data runs
    # 'SPHEREx sky' linked the cutouts itself and suggests nothing (no dialog) ...
    assert "SPHEREx sky" not in suggestions
    assert len(dc.external_links) == 39
    # ... and 'Astronomy WCS' only offers to link the other image to the reference cutout
    wcs = suggestions["Astronomy WCS"]
    assert len(wcs) == 1 and isinstance(wcs[0], WCSLink)
    assert {wcs[0].data1, wcs[0].data2} == {datasets[0], other}
    dc.add_link(wcs)
    assert other[datasets[30].pixel_component_ids[0]].shape == other.shape
    # with only cutouts there is nothing to suggest at all
    assert find_possible_links(DataCollection(cutouts(products, 30))) == {}


def test_autolinker_can_be_switched_off(products, monkeypatch):
    from glue.config import settings

    monkeypatch.setitem(settings.AUTOLINK, "SPHEREx sky", "always_ignore")
    dc = DataCollection(cutouts(products, 5))
    assert find_possible_links(dc) == {}
    assert dc.external_links == ()
