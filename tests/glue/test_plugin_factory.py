"""glue plugin: registration and the data factory (full frame, IRSA cutout, combined file)."""

import mmap
import os

import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS
from cutouts import (
    DEC0,
    RA0,
    frame_spec,
    make_cutout,
    make_frame,
    one_zone_psf,
    survey,
    write_combined,
)
from glue.config import autolinker, data_exporter, data_factory
from glue.core.data_factories import find_factory, load_data

from glue_spherex import plugin
from glue_spherex.local_archive.synthetic import frame_headers
from glue_spherex.plugin import datasets, exporter, factory, linkmanager, links, patches
from glue_spherex.plugin.patches import wcs_autolinker
from glue_spherex.products.spectral_image import SpectralImage

COMPONENTS = ["flux", "variance", "flags", "zodi", "wavelength", "bandwidth"]


def memory_mapped(array):
    """True if ``array`` is a view of a memory-mapped file (ndarray bases, then a buffer)."""
    while array is not None:
        if isinstance(array, (np.memmap, mmap.mmap)):
            return True
        array = array.obj if isinstance(array, memoryview) else getattr(array, "base", None)
    return False


@pytest.fixture(scope="module", autouse=True)
def registered():
    plugin.setup()


def test_setup_is_idempotent():
    plugin.setup()
    plugin.setup()
    assert sum(m.function is factory.read_spherex for m in data_factory.members) == 1
    assert sum(m.function is exporter.export_cutout for m in data_exporter.members) == 1
    labels = [label for label, _ in autolinker.members]
    assert labels.count(links.AUTOLINKER_LABEL) == 1
    if wcs_autolinker.LABEL in labels:  # registered by glue's wcs_autolinking plugin
        assert labels.count(wcs_autolinker.LABEL) == 1
        wcs = dict(autolinker.members)[wcs_autolinker.LABEL]
        assert wcs._spherex_wrapped is not None  # wrapped once, not twice
        assert getattr(wcs._spherex_wrapped, "_spherex_wrapped", None) is None
    assert set(patches.applied()) >= {p.name for p in patches.registered("glue-core")}


def test_teardown_restores_glue_and_setup_reapplies():
    from glue.core import Data, DataCollection
    from glue.core.link_manager import LinkManager
    from glue.core.state import GlueSerializer

    patched = (DataCollection.__dict__["append"], Data.__dict__["find_component_id"],
               GlueSerializer.__dict__["_disambiguate"])
    plugin.teardown()
    try:
        assert not set(patches.applied()) & {p.name for p in patches.registered("glue-core")}
        originals = (DataCollection.__dict__["append"], Data.__dict__["find_component_id"],
                     GlueSerializer.__dict__["_disambiguate"])
        assert all(new is not old for new, old in zip(patched, originals))
        assert originals[0] is patched[0].__wrapped__  # glue's own methods are back
        assert originals[1] is patched[1].__wrapped__
        assert "add" not in autolinker.__dict__
        if wcs_autolinker.LABEL in dict(autolinker.members):
            wcs = dict(autolinker.members)[wcs_autolinker.LABEL]
            assert getattr(wcs, "_spherex_wrapped", None) is None
        dc = DataCollection(datasets.products_to_data(
            [SpectralImage.open(h) for h in survey(2, seed=5)]))
        assert type(dc._link_manager) is LinkManager  # no upgrade without the patch
    finally:
        plugin.setup()
    assert (DataCollection.__dict__["append"].__wrapped__,
            Data.__dict__["find_component_id"].__wrapped__) == originals[:2]
    dc = DataCollection(datasets.products_to_data(
        [SpectralImage.open(h) for h in survey(2, seed=5)]))
    assert isinstance(dc._link_manager, linkmanager.IndexedLinkManager)
    assert sum(m.function is factory.read_spherex for m in data_factory.members) == 1


CUTOUT_SPEC = frame_spec(4, ra=RA0, dec=DEC0, pa=30, mjd=61045.25, obsid="2026W02_1B_0042_3")


@pytest.fixture(scope="module")
def cutout_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("factory") / "cutout.fits"
    make_cutout(CUTOUT_SPEC, 990, 990, 30, 30).writeto(path)
    return path


def test_cutout_file_opens_as_one_dataset(cutout_file):
    assert find_factory(str(cutout_file)) is factory.read_spherex  # beats glue's FITS reader
    data = load_data(str(cutout_file))
    product = SpectralImage.open(cutout_file)

    assert [c.label for c in data.main_components] == COMPONENTS
    units = {c.label: data.get_component(c).units for c in data.main_components}
    assert units == {"flux": "MJy / sr", "variance": "MJy2 / sr2", "flags": "",
                     "zodi": "MJy / sr", "wavelength": "um", "bandwidth": "um"}
    np.testing.assert_array_equal(data["flux"], product.image)
    np.testing.assert_array_equal(data["flags"], product.flags)
    np.testing.assert_array_equal(data["variance"], product.variance)
    np.testing.assert_array_equal(data["zodi"], product.zodi)
    np.testing.assert_array_equal(data["wavelength"], product.wavelength())
    np.testing.assert_array_equal(data["bandwidth"], product.bandwidth())
    assert memory_mapped(data.get_component("flux").data)  # not read into memory

    meta = data.meta
    assert meta["spherex"] is True and datasets.is_spherex_data(data)
    assert (meta["obs_id"], meta["detector"], meta["bandpass"]) == \
        ("2026W02_1B_0042_3", 4, "SPHEREx-D4")
    truth = frame_headers(CUTOUT_SPEC)["IMAGE"]
    assert (meta["mjd_beg"], meta["mjd_avg"], meta["mjd_end"]) == \
        (truth["MJD-BEG"], truth["MJD-AVG"], truth["MJD-END"])
    assert meta["mjd_beg"] == 61045.25
    assert meta["mjd_end"] == pytest.approx(CUTOUT_SPEC.mjd_end, abs=1e-9)
    assert meta["mjd_end"] - meta["mjd_beg"] == pytest.approx(115.12 / 86400, abs=1e-9)
    wl, bw = product.pixel_to_wave(14.5, 14.5)
    assert meta["central_wavelength"] == pytest.approx(float(wl))
    assert meta["central_bandwidth"] == pytest.approx(float(bw))
    assert 2.42 < meta["central_wavelength"] < 3.82  # the D4 band
    assert meta["cutout_index"] is None and meta["access_url"] is None
    assert meta["source_path"] == str(cutout_file)
    when = Time(meta["mjd_avg"], format="mjd").datetime.strftime("%Y-%m-%d %H:%M")
    assert when.startswith("2026-01-05 06:0")  # the exposure's MJD-AVG, to the minute
    # short: the observation id is in meta and in the tooltip text, not in the label
    assert data.label == f"D4 {meta['central_wavelength']:.3f} µm {when}"
    assert datasets.identity(data).startswith("2026W02_1B_0042_3 D4")


def test_coords_are_the_celestial_wcs_only(cutout_file):
    data = load_data(str(cutout_file))
    with fits.open(cutout_file) as hdul:
        reference = WCS(hdul["IMAGE"].header, naxis=2)  # primary WCS, with SIP
    assert data.coords.pixel_n_dim == data.coords.world_n_dim == 2
    assert data.coords.world_axis_physical_types == ["pos.eq.ra", "pos.eq.dec"]
    assert [c.label for c in data.world_component_ids] == ["Declination", "Right Ascension"]
    yy, xx = np.mgrid[-5:35, -5:35]
    np.testing.assert_allclose(data.coords.all_pix2world(xx, yy, 0),
                               reference.all_pix2world(xx, yy, 0), rtol=0, atol=1e-12)
    ra, dec = reference.all_pix2world(7, 3, 0)
    assert data["Right Ascension"][3, 7] == pytest.approx(float(ra), abs=1e-12)
    assert data["Declination"][3, 7] == pytest.approx(float(dec), abs=1e-12)


@pytest.mark.slow
def test_full_frame_file(tmp_path):
    frame = one_zone_psf(make_frame(frame_spec(1)))  # keep the file small
    path = tmp_path / "frame.fits"
    frame.writeto(path)
    data = load_data(str(path))
    assert data.shape == (2040, 2040)
    assert data.meta["detector"] == 1 and data.meta["cutout_index"] is None
    assert memory_mapped(data.get_component("flux").data)
    np.testing.assert_array_equal(data["wavelength"][::500, ::500],
                                  SpectralImage.open(path).wavelength()[::500, ::500])


def test_combined_file_opens_as_a_list(tmp_path):
    hduls = survey(5)
    path = write_combined(tmp_path / "combined.fits", hduls)
    found = load_data(str(path))
    assert isinstance(found, list) and len(found) == 5
    assert [d.meta["cutout_index"] for d in found] == [1, 2, 3, 4, 5]
    assert [d.meta["detector"] for d in found] == [1, 2, 3, 4, 5]
    assert len({d.label for d in found}) == 5
    assert all(d.label.endswith(f"#{i}") for i, d in enumerate(found, start=1))
    assert [d.meta["access_url"] for d in found] == \
        [f"http://127.0.0.1:1/cutout/{i}" for i in range(1, 6)]
    for d, hdul in zip(found, hduls):
        np.testing.assert_array_equal(d["flux"], hdul["IMAGE"].data)
        product = SpectralImage.open(hdul)
        np.testing.assert_array_equal(d["wavelength"], product.wavelength())


def test_combined_file_without_psf_opens_with_the_same_data(tmp_path):
    """A file written with psf='none' (no PSFn) loads as the full one does, less the PSF."""
    from glue_spherex.plugin.datasets import source_product
    from glue_spherex.products.combined import CombinedWriter

    hduls = survey(3)
    planned = [{"cutout_index": i, "access_url": f"http://127.0.0.1:1/cutout/{i}"}
               for i in (1, 2, 3)]
    path = tmp_path / "nopsf.fits"
    with CombinedWriter(path, planned, size=0.05, psf="none") as writer:
        for i, hdul in enumerate(hduls, start=1):
            writer.add(i, hdul)
    assert writer.psf_bytes_saved > 0
    assert factory.is_spherex_file(str(path))
    found = load_data(str(path))
    full = load_data(str(write_combined(tmp_path / "full.fits", hduls)))
    assert [d.meta["cutout_index"] for d in found] == [1, 2, 3]
    for d, e in zip(found, full):
        assert d.label == e.label and d.meta["psf_fwhm"] == e.meta["psf_fwhm"]
        for name in COMPONENTS:
            np.testing.assert_array_equal(d[name], e[name])
        assert not source_product(d).has_psf and source_product(e).has_psf


def test_other_fits_files_are_left_to_glue(tmp_path):
    path = tmp_path / "plain.fits"
    fits.PrimaryHDU(np.zeros((4, 5))).writeto(path)
    assert not factory.is_spherex_file(str(path))
    assert find_factory(str(path)) is not factory.read_spherex
    assert load_data(str(path)).shape == (4, 5)


def test_the_factory_takes_over_what_the_identifier_opened(tmp_path):
    path = write_combined(tmp_path / "c.fits", survey(3))
    assert factory.is_spherex_file(str(path))
    (kept,) = factory._identified.values()
    datasets = factory.read_spherex(str(path))
    assert [d._spherex_product for d in datasets] == kept  # not read a second time
    assert factory._identified == {}
    # a file replaced after it was identified is read again
    assert factory.is_spherex_file(str(path))
    (stale,) = factory._identified.values()
    other = write_combined(tmp_path / "d.fits", survey(2, seed=5))
    os.replace(other, path)
    datasets = factory.read_spherex(str(path))
    assert len(datasets) == 2 and not any(d._spherex_product in stale for d in datasets)


def test_session_of_file_loaded_cutouts_reads_the_file_again(tmp_path):
    from glue.core import DataCollection
    from glue.core.roi import RectangularROI
    from glue.core.state import GlueSerializer, GlueUnSerializer
    from glue.core.subset import RoiSubsetState

    path = write_combined(tmp_path / "session.fits", survey(5, seed=11))
    dc = DataCollection(load_data(str(path)))
    plugin.link_cutouts(dc)
    ref = dc[0]
    dc.new_subset_group("box", RoiSubsetState(ref.pixel_component_ids[1],
                                              ref.pixel_component_ids[0],
                                              RectangularROI(3.5, 16.5, 5.5, 19.5)))
    masks = [s.to_mask() for s in dc.subset_groups[0].subsets]
    text = GlueSerializer(dc).dumps()  # components saved as references to the file
    assert "flux" in text and len(text) < 200_000

    restored = GlueUnSerializer.loads(text).object("__main__")
    assert [d.label for d in restored] == [d.label for d in dc]
    assert all(memory_mapped(d.get_component("flux").data) for d in restored)
    assert len(restored.external_links) == 4
    for subset, mask in zip(restored.subset_groups[0].subsets, masks):
        assert np.array_equal(subset.to_mask(), mask)
    assert any(m.any() for m in masks[1:])
