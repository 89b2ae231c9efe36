"""glue plugin: exporting SPHEREx datasets to a combined file and to single cutout files."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from cutouts import survey, write_combined
from glue.config import data_exporter
from glue.core import Data, DataCollection
from glue.core.data_factories import load_data
from glue.core.state import GlueSerializer, GlueUnSerializer

from glue_spherex import plugin
from glue_spherex.errors import SpherexInputError
from glue_spherex.plugin import export_combined, products_to_data, sky_subset
from glue_spherex.plugin.exporter import EXPORTER_LABEL, export_cutout
from glue_spherex.products.spectral_image import SpectralImage


@pytest.fixture(scope="module", autouse=True)
def registered():
    plugin.setup()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A combined file of 6 cutouts (one per detector), written in time order."""
    hduls = survey(6, seed=7)
    path = write_combined(tmp_path_factory.mktemp("export") / "source.fits", hduls)
    return path, hduls


def fresh(source):
    return load_data(str(source[0]))


def test_combined_export_in_wavelength_order_reopens_everywhere(source, tmp_path):
    datasets = fresh(source)
    out = tmp_path / "export.fits"
    shuffled = [datasets[i] for i in (3, 0, 5, 1, 4, 2)] + [Data(x=np.ones(3), label="x")]
    assert export_combined(shuffled, out, order="wavelength") == str(out)

    again = load_data(str(out))  # the plugin's factory
    by_wavelength = sorted(datasets, key=lambda d: d.meta["central_wavelength"])
    assert [d.meta["cutout_index"] for d in again] == [1, 2, 3, 4, 5, 6]
    assert [d.meta["obs_id"] for d in again] == [d.meta["obs_id"] for d in by_wavelength]
    for new, old in zip(again, by_wavelength):
        for name in ("flux", "flags", "variance", "zodi", "wavelength", "bandwidth"):
            np.testing.assert_array_equal(new[name], old[name])
        assert new.meta["access_url"] == old.meta["access_url"]  # provenance kept

    # the tutorial's way of reading it
    table = Table.read(out, hdu=1)
    assert list(table["cutout_index"]) == [1, 2, 3, 4, 5, 6]
    assert np.all(np.diff(table["central_wavelength"]) > 0)
    assert list(table["status"]) == ["ok"] * 6
    with fits.open(out) as hdul:
        image = hdul["IMAGE1"]
        np.testing.assert_array_equal(image.data, by_wavelength[0]["flux"])
        wave = WCS(image.header, fobj=hdul, key="W")
        wave.sip = None  # as IRSA's tutorial does (SIP must not apply to the W WCS)
        wl, bw = wave.pixel_to_world_values(3, 4)
        assert wl == pytest.approx(by_wavelength[0]["wavelength"][4, 3], rel=1e-6)
        assert bw == pytest.approx(by_wavelength[0]["bandwidth"][4, 3], rel=1e-6)
        assert hdul["PSF1"].data.shape[1:] == (101, 101)


def test_time_order_and_target(source, tmp_path):
    datasets = fresh(source)
    out = tmp_path / "by_time.fits"
    export_combined(datasets[::-1], out, order="time", target=(210.80, 54.35))
    table = Table.read(out, hdu=1)
    assert list(table["obs_id"]) == [d.meta["obs_id"] for d in datasets]  # written in time order
    assert np.all(np.diff(table["observation_date"]) > 0)
    with fits.open(out) as hdul:
        assert hdul[0].header["RA_TARG"] == pytest.approx(210.80)


def test_modified_arrays_are_exported_as_held(source, tmp_path):
    datasets = fresh(source)
    data = datasets[2]
    flux = np.array(data["flux"], dtype=np.float64) * 2 + 1
    data.update_components({data.id["flux"]: flux})
    out = tmp_path / "modified.fits"
    export_combined([data, datasets[0]], out)
    again = {d.meta["obs_id"]: d for d in load_data(str(out))}
    np.testing.assert_allclose(again[data.meta["obs_id"]]["flux"], flux.astype(np.float32))
    np.testing.assert_array_equal(again[data.meta["obs_id"]]["flags"], data["flags"])
    np.testing.assert_array_equal(again[datasets[0].meta["obs_id"]]["flux"], datasets[0]["flux"])


def test_export_after_a_session_round_trip(source, tmp_path):
    """Datasets restored with their arrays (no product in memory) find their source file."""
    dc = DataCollection(products_to_data(SpectralImage.open(source[0], i) for i in (1, 2, 3)))
    restored = GlueUnSerializer.loads(GlueSerializer(dc, include_data=True).dumps()).object(
        "__main__")
    assert getattr(restored[0], "_spherex_product", None) is None
    out = tmp_path / "restored.fits"
    export_combined(list(restored), out)
    assert len(load_data(str(out))) == 3


def test_a_missing_source_is_recorded_not_fatal(source, tmp_path):
    datasets = fresh(source)[:3]
    lost = datasets[1]
    lost._spherex_product = None
    lost.meta["source_path"] = str(tmp_path / "gone.fits")
    out = tmp_path / "partial.fits"
    export_combined(datasets, out)
    table = Table.read(out, hdu=1)
    assert sorted(table["status"]) == ["failed", "ok", "ok"]
    failed = table[table["status"] == "failed"][0]
    assert "no longer exists" in failed["reason"] and failed["obs_id"] == lost.meta["obs_id"]
    assert len(load_data(str(out))) == 2


def test_nothing_to_export(tmp_path):
    with pytest.raises(SpherexInputError, match="none of the datasets"):
        export_combined([Data(x=np.ones(3), label="x")], tmp_path / "x.fits")
    with pytest.raises(SpherexInputError, match="order"):
        export_combined([], tmp_path / "x.fits", order="size")


def test_single_dataset_exporter(source, tmp_path):
    member = next(m for m in data_exporter.members if m.label == EXPORTER_LABEL)
    assert member.function is export_cutout and member.extension == ["fits"]
    data = fresh(source)[4]
    out = tmp_path / "one.fits"
    member.function(str(out), data)
    again = load_data(str(out))
    assert isinstance(again, Data)
    assert again.meta["obs_id"] == data.meta["obs_id"] and again.meta["cutout_index"] is None
    np.testing.assert_array_equal(again["flux"], data["flux"])
    with fits.open(out) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "IMAGE", "FLAGS", "VARIANCE", "ZODI", "PSF",
                                          "WCS-WAVE"]
    assert not list(tmp_path.glob("*.part"))


def test_single_exporter_on_a_subset(source, tmp_path):
    dc = DataCollection(fresh(source))
    group = sky_subset(dc, 210.80, 54.35, 25 / 3600)
    subset = group.subsets[1]
    mask = subset.to_mask()
    assert 0 < mask.sum() < mask.size
    out = tmp_path / "subset.fits"
    export_cutout(str(out), subset)
    again = load_data(str(out))
    flux = again["flux"]
    assert np.isnan(flux[~mask]).all()
    np.testing.assert_array_equal(flux[mask], dc[1]["flux"][mask])
    np.testing.assert_array_equal(again["flags"], dc[1]["flags"])  # flags kept everywhere
    with pytest.raises(SpherexInputError, match="not a SPHEREx cutout"):
        export_cutout(str(tmp_path / "x.fits"), Data(x=np.ones(3), label="x"))
