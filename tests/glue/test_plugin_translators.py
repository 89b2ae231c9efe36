"""Live-spectrum tables to specutils through glue's translators: ``data.get_object(Spectrum)``.

The expected spectrum is computed without glue: :func:`extract_spectrum` on the products.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.nddata import StdDevUncertainty
from cutouts import cutouts_at
from glue.config import data_translator
from glue.core import Data, DataCollection
from glue.core.subset import RangeSubsetState

from glue_spherex import plugin
from glue_spherex.analysis.spectrum import extract_spectrum
from glue_spherex.local_archive.synthetic import default_sky
from glue_spherex.plugin import link_cutouts, products_to_data, sky_subset
from glue_spherex.plugin.live_spectrum import LiveSpectrum

specutils = pytest.importorskip("specutils")
Spectrum = specutils.Spectrum
S1 = default_sky().source("M101-S1")
RADIUS = 6.0 / 3600


@pytest.fixture(scope="module", autouse=True)
def registered():
    plugin.setup()
    # glue-astronomy's own handlers, as its glue plugin registers them
    pytest.importorskip("glue_astronomy")
    from glue_astronomy import setup as glue_astronomy_setup

    glue_astronomy_setup()


@pytest.fixture(scope="module")
def products():
    return cutouts_at(S1.ra, S1.dec, per_detector=3)


@pytest.fixture
def live(products):
    dc = DataCollection(products_to_data(products))
    link_cutouts(dc)
    group = sky_subset(dc, S1.ra, S1.dec, RADIUS)
    return LiveSpectrum(dc, group)


def test_spectrum_table_converts_with_units_and_uncertainties(live, products):
    spec = live.spectrum.get_object(Spectrum)
    assert isinstance(spec, Spectrum)
    want = extract_spectrum(products, SkyCoord(S1.ra * u.deg, S1.dec * u.deg), RADIUS * u.deg)
    want = want[np.isfinite(u.Quantity(want["wavelength"]).value)]
    assert spec.spectral_axis.unit == u.um and spec.flux.unit == u.uJy
    assert len(spec.flux) == len(want) >= 12
    assert np.allclose(spec.spectral_axis.value, u.Quantity(want["wavelength"], u.um).value)
    ok = np.isfinite(u.Quantity(want["flux"]).value)
    assert np.allclose(spec.flux.value[ok], u.Quantity(want["flux"], u.uJy).value[ok])
    assert isinstance(spec.uncertainty, StdDevUncertainty)
    assert spec.uncertainty.unit == u.uJy
    assert np.allclose(spec.uncertainty.array[ok], u.Quantity(want["flux_err"], u.uJy).value[ok])
    assert np.array_equal(spec.mask, ~ok)
    assert np.all(np.diff(spec.spectral_axis.value) > 0)
    assert spec.meta["subset"] == live.label


def test_a_subset_of_the_spectrum_masks_the_other_rows(live):
    table = live.spectrum
    wl = table.get_data(table.id["wavelength"])
    cut = float(np.nanmedian(wl))
    subset = table.new_subset(RangeSubsetState(0.0, cut, table.id["wavelength"]))
    spec = table.get_subset_object(subset_id=subset.label, cls=Spectrum)
    full = table.get_object(Spectrum)
    assert len(spec.flux) == len(full.flux)
    inside = spec.spectral_axis.value <= cut
    assert inside.any() and (~inside).any()
    assert np.all(spec.mask[~inside])
    assert np.array_equal(spec.mask[inside], full.mask[inside])


def test_other_data_still_use_glue_astronomys_translator():
    from glue_astronomy.spectral_coordinates import SpectralCoordinates

    wl = np.linspace(1.0, 2.0, 5) * u.um
    data = Data(coords=SpectralCoordinates(wl), label="plain")
    data["flux"] = np.arange(5.0)
    data.get_component("flux").units = "Jy"
    spec = data.get_object(Spectrum)
    assert np.allclose(spec.spectral_axis.value, wl.value) and spec.flux.unit == u.Jy
    # and back: a Spectrum added to glue goes through glue-astronomy's to_data
    dc = DataCollection()
    dc["back"] = spec
    assert np.allclose(dc["back"].get_data(dc["back"].id["flux"]), np.arange(5.0))


def test_teardown_removes_only_the_spherex_handler():
    def handlers():
        return [type(item.handler).__name__ for item in data_translator
                if item.target_cls is Spectrum]

    assert handlers()[0] == "SpherexSpectrumHandler"
    plugin.teardown()
    try:
        assert "SpherexSpectrumHandler" not in handlers()
        assert "SpecutilsHandler" in handlers()
    finally:
        plugin.setup()
    assert handlers()[0] == "SpherexSpectrumHandler"


def test_cube_converts_to_its_mean_spectrum_and_to_a_spectral_cube(products):
    from glue.core.roi import RectangularROI
    from glue.core.subset import RoiSubsetState

    from glue_spherex.plugin import build_cube

    cube, slices = build_cube(products, band="D2")
    flux = cube.get_data(cube.id["flux"])
    var = cube.get_data(cube.id["variance"])
    wavelength = u.Quantity(slices["wavelength"], u.um).value

    full = cube.get_object(Spectrum, statistic=None)
    assert full.shape == flux.shape and full.spectral_axis_index == 0
    assert np.allclose(full.spectral_axis.value, wavelength) and full.spectral_axis.unit == u.um
    assert full.flux.unit == u.MJy / u.sr
    assert np.allclose(full.flux.value, flux, equal_nan=True)
    assert np.allclose(full.uncertainty.array, var, equal_nan=True)

    mean = cube.get_object(Spectrum)  # glue-astronomy's default statistic: 'mean'
    ok = np.isfinite(flux)
    n = ok.sum(axis=(1, 2))
    assert np.allclose(mean.flux.value, np.nanmean(flux, axis=(1, 2)))
    assert np.allclose(mean.uncertainty.array, np.nansum(np.where(ok, var, 0), axis=(1, 2)) / n ** 2)

    # a box subset: the mean over its pixels only
    state = RoiSubsetState(cube.pixel_component_ids[2], cube.pixel_component_ids[1],
                           RectangularROI(2.5, 8.5, 3.5, 9.5))
    cube.new_subset(state, label="box")
    boxed = cube.get_subset_object(subset_id="box", cls=Spectrum)
    inside = np.zeros(flux.shape[1:], bool)
    inside[4:10, 3:9] = True
    assert np.allclose(boxed.flux.value, np.nanmean(flux[:, inside], axis=1))

    with pytest.raises(ValueError, match="'median' is not offered"):
        cube.get_object(Spectrum, statistic="median")
    by_time, _ = build_cube(products, band="D2", order="mjd")
    with pytest.raises(ValueError, match="not ordered by wavelength"):
        by_time.get_object(Spectrum)
