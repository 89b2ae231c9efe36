"""The live spectrum in glue: a spectrum table that follows a region across every cutout."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from cutouts import cutouts_at
from glue.core import DataCollection
from glue.core.roi import CircularROI, RectangularROI
from glue.core.subset import RangeSubsetState, RoiSubsetState

from glue_spherex.analysis.spectrum import extract_spectrum
from glue_spherex.errors import SpherexInputError
from glue_spherex.local_archive.synthetic import default_sky
from glue_spherex.plugin import (
    SkyCircleSubsetState,
    link_cutouts,
    products_to_data,
    sky_subset,
)
from glue_spherex.plugin.live_spectrum import (
    CutoutSelectionSubsetState,
    LiveSpectrum,
    live_spectra,
    selection_label,
    sky_circle_of,
    spectrum_label,
)

S1 = default_sky().source("M101-S1")
RADIUS = 6.0 / 3600  # degrees


@pytest.fixture(scope="module")
def products():
    return cutouts_at(S1.ra, S1.dec, per_detector=4)


@pytest.fixture
def session(products):
    datasets = products_to_data(products)
    dc = DataCollection(datasets)
    link_cutouts(dc)
    return dc, datasets


def _offset(arcsec_east, arcsec_north=0.0):
    return (S1.ra + arcsec_east / 3600 / np.cos(np.radians(S1.dec)),
            S1.dec + arcsec_north / 3600)


def _expected(products, ra, dec, radius_deg, **kwargs):
    return extract_spectrum(products, SkyCoord(ra * u.deg, dec * u.deg), radius_deg * u.deg,
                            **kwargs)


def _rows(spectrum):
    """(obs_id, flux) of each row of the spectrum dataset, sorted by obs_id."""
    return sorted(zip(spectrum["obs_id"], spectrum["flux"]))


def _same(spectrum, table):
    got = _rows(spectrum)
    want = sorted(zip(table["obs_id"], u.Quantity(table["flux"], u.uJy).value))
    assert [o for o, _ in got] == [o for o, _ in want]
    assert np.allclose([f for _, f in got], [f for _, f in want], equal_nan=True)


def test_spectrum_table_appears_and_follows_the_region(session, products):
    dc, datasets = session
    ra, dec = _offset(8.0)
    group = sky_subset(dc, ra, dec, RADIUS, label="source")
    live = LiveSpectrum(dc, group)
    spectrum = live.spectrum
    assert spectrum in dc and spectrum.label == spectrum_label("source") == \
        "SPHEREx spectrum: source"
    assert spectrum.shape == (len(datasets),) and len(datasets) >= 20
    for name in ("wavelength", "flux", "error", "mjd", "cutout_index", "detector", "obs_id",
                 "status", "cutout"):
        assert spectrum.id[name] is not None
    assert spectrum.get_component("flux").units == "uJy"
    assert np.all(np.diff(spectrum["wavelength"]) >= 0)
    assert sorted(spectrum["cutout"]) == sorted(d.label for d in datasets)
    _same(spectrum, _expected(products, ra, dec, RADIUS))
    off_flux = np.nanmedian(spectrum["flux"])

    # move the region onto the star: glue sends one message per dataset, we compute once
    n = live.n_computations
    group.subset_state = SkyCircleSubsetState(S1.ra, S1.dec, RADIUS)
    assert live.n_computations == n + 1
    assert live.spectrum is spectrum and spectrum in dc  # updated in place
    _same(spectrum, _expected(products, S1.ra, S1.dec, RADIUS))
    assert np.nanmedian(spectrum["flux"]) > 1.5 * off_flux
    # a "move" below a milliarcsecond changes nothing
    group.subset_state = SkyCircleSubsetState(S1.ra + 1e-10, S1.dec, RADIUS)
    assert live.n_computations == n + 1
    assert live_spectra(dc)[group] is live


def test_moves_are_debounced(session, products):
    dc, _ = session
    pending = []
    group = sky_subset(dc, S1.ra, S1.dec, RADIUS, label="drag")
    live = LiveSpectrum(dc, group, schedule=pending.append)
    assert live.n_computations == 1
    for east in (3.0, 6.0, 9.0):  # a drag: three moves before the timer fires
        group.subset_state = SkyCircleSubsetState(*_offset(east), RADIUS)
    assert len(pending) == 1 and live.n_computations == 1
    pending.pop()()
    assert live.n_computations == 2
    _same(live.spectrum, _expected(products, *_offset(9.0), RADIUS))


def test_region_drawn_on_a_cutout(session, products):
    dc, datasets = session
    d = datasets[3]
    wcs = d.coords
    x, y = (float(v) for v in wcs.world_to_pixel(SkyCoord(S1.ra * u.deg, S1.dec * u.deg)))
    px, py = d.pixel_component_ids[1], d.pixel_component_ids[0]
    group = dc.new_subset_group("drawn", RoiSubsetState(px, py, CircularROI(x, y, 1.5)))
    circle = sky_circle_of(group.subset_state, dc)
    assert SkyCoord(circle.ra * u.deg, circle.dec * u.deg).separation(
        SkyCoord(S1.ra * u.deg, S1.dec * u.deg)).arcsec < 0.01
    assert circle.radius_arcsec == pytest.approx(1.5 * 6.153, rel=2e-3)
    live = LiveSpectrum(dc, group)
    _same(live.spectrum, _expected(products, circle.ra, circle.dec, circle.radius_arcsec / 3600))

    # a rectangle becomes the circle of the same area and centroid; moving it updates
    n = live.n_computations
    group.subset_state = RoiSubsetState(px, py, RectangularROI(x - 2, x + 2, y - 1, y + 3))
    circle = sky_circle_of(group.subset_state, dc)
    assert circle.radius_arcsec == pytest.approx(np.sqrt(16 / np.pi) * 6.153, rel=2e-3)
    cx, cy = wcs.world_to_pixel(SkyCoord(circle.ra * u.deg, circle.dec * u.deg))
    assert (float(cx), float(cy)) == pytest.approx((x, y + 1), abs=1e-3)
    assert live.n_computations == n + 1
    assert live.circle == circle

    # any other subset state: the centroid and area of its mask on a cutout
    state = RangeSubsetState(-1, 1e9, d.id["flux"]) & RoiSubsetState(
        px, py, RectangularROI(x - 1.5, x + 1.5, y - 1.5, y + 1.5))
    masked = sky_circle_of(state, dc)
    assert masked.radius_arcsec == pytest.approx(np.sqrt(9 / np.pi) * 6.153, rel=0.05)


def test_selecting_points_identifies_their_cutouts(session):
    dc, datasets = session
    group = sky_subset(dc, S1.ra, S1.dec, RADIUS, label="star")
    live = LiveSpectrum(dc, group)
    seen = []
    live.selection_callbacks.append(seen.append)
    spectrum = live.spectrum
    wl = spectrum["wavelength"]
    lo, hi = np.nanpercentile(wl, 30), np.nanpercentile(wl, 60)
    pick = dc.new_subset_group("pick", RangeSubsetState(lo, hi, spectrum.id["wavelength"]))
    by_label = {d.label: d for d in datasets}
    expected = {spectrum["cutout"][i] for i in np.flatnonzero((wl >= lo) & (wl <= hi))}
    assert 2 <= len(expected) < len(datasets)
    assert {d.label for d in live.selected_cutouts} == expected
    assert seen and {d.label for d in seen[-1]} == expected
    # the companion subset lights up the aperture on exactly those cutouts
    companion = live.selection
    assert companion.label == selection_label("star")
    assert isinstance(companion.subset_state, CutoutSelectionSubsetState)
    for d in datasets:
        subset = next(s for s in d.subsets if s.group is companion)
        assert (subset.to_mask().sum() > 0) == (d.label in expected), d.label
    # changing the selection updates the companion
    pick.subset_state = RangeSubsetState(np.nanmin(wl) - 1, lo - 1e-6, spectrum.id["wavelength"])
    fewer = {spectrum["cutout"][i] for i in np.flatnonzero(wl < lo)}
    assert {d.label for d in live.selected_cutouts} == fewer
    mask = next(s for s in by_label[sorted(expected)[0]].subsets if s.group is companion)
    assert mask.to_mask().sum() == 0
    # moving the region re-evaluates the selection on the new spectrum
    group.subset_state = SkyCircleSubsetState(*_offset(4.0), RADIUS)
    assert {d.label for d in live.selected_cutouts} == fewer


def test_new_cutouts_join_and_close_stops_following(session, products):
    dc, datasets = session
    extra = products_to_data(cutouts_at(S1.ra, S1.dec, per_detector=5))
    extra = [d for d in extra if d.meta["obs_id"] not in {x.meta["obs_id"] for x in datasets}
             or d.meta["detector"] not in {x.meta["detector"] for x in datasets}]
    assert extra
    group = sky_subset(dc, S1.ra, S1.dec, RADIUS, label="grow")
    live = LiveSpectrum(dc, group)
    dc.append(extra[0])
    assert live.spectrum.shape == (len(datasets) + 1,)
    live.close()
    n = live.n_computations
    group.subset_state = SkyCircleSubsetState(*_offset(5.0), RADIUS)
    assert live.n_computations == n and group not in live_spectra(dc)
    assert live.spectrum in dc   # the spectrum stays


def test_datasets_restored_from_a_session(products):
    """After a session round trip glue no longer holds the products (no PSF extension)."""
    from glue.core.state import GlueSerializer, GlueUnSerializer

    few = products[::3]
    dc = DataCollection(products_to_data(few))
    link_cutouts(dc)
    restored = GlueUnSerializer.loads(GlueSerializer(dc).dumps()).object("__main__")
    group = sky_subset(restored, S1.ra, S1.dec, 12.0 / 3600, label="restored")
    live = LiveSpectrum(restored, group, aperture_correction="none")
    _same(live.spectrum, _expected(few, S1.ra, S1.dec, 12.0 / 3600,
                                   aperture_correction="none"))
    # no PSF cube any more: each exposure's PSF is taken as a Gaussian of its PSF_FWHM
    psf = LiveSpectrum(restored, sky_subset(restored, S1.ra, S1.dec, RADIUS, label="psf"))
    assert set(psf.spectrum["status"]) == {"ok"}
    exact = _expected(few, S1.ra, S1.dec, RADIUS)  # the PSF cubes of the products
    got = np.array(sorted(zip(psf.spectrum["wavelength"], psf.spectrum["flux"])))
    want = np.array(sorted(zip(u.Quantity(exact["wavelength"], u.um).value,
                               u.Quantity(exact["flux"], u.uJy).value)))
    np.testing.assert_allclose(got[:, 0], want[:, 0])
    np.testing.assert_allclose(got[:, 1], want[:, 1], rtol=0.01)  # Gaussian vs PSF cube
    # datasets saved before psf_fwhm was recorded: nothing to correct with
    for data in restored:
        data.meta.pop("psf_fwhm", None)
    none = LiveSpectrum(restored, sky_subset(restored, S1.ra, S1.dec, RADIUS, label="none"))
    assert set(none.spectrum["status"]) == {"no_psf"}


def test_restored_datasets_reopen_their_file(products, tmp_path):
    """Datasets read from a file get their products (PSF cubes, flag names) back from it."""
    from glue.core.state import GlueSerializer, GlueUnSerializer

    from glue_spherex.products.combined import CombinedWriter
    from glue_spherex.products.spectral_image import open_products

    few = products[::3]
    path = tmp_path / "few.fits"
    planned = [{"cutout_index": i + 1, "access_url": f"u{i}"} for i in range(len(few))]
    with CombinedWriter(path, planned) as writer:
        for i, product in enumerate(few):
            writer.add(i + 1, product.hdulist())
    from_file = open_products(path)
    dc = DataCollection(products_to_data(from_file))
    link_cutouts(dc)
    restored = GlueUnSerializer.loads(GlueSerializer(dc).dumps()).object("__main__")
    cutouts = list(restored)
    assert all(getattr(d, "_spherex_product", None) is None for d in cutouts)
    psf = LiveSpectrum(restored, sky_subset(restored, S1.ra, S1.dec, RADIUS, label="psf"))
    _same(psf.spectrum, _expected(from_file, S1.ra, S1.dec, RADIUS))
    assert all(d._spherex_product.psf.shape == from_file[0].psf.shape for d in cutouts)


def test_a_region_off_every_cutout_and_a_subset_with_no_region(session):
    dc, datasets = session
    live = LiveSpectrum(dc, sky_subset(dc, 10.0, -40.0, RADIUS, label="elsewhere"))
    assert set(live.spectrum["status"]) == {"off_image"}      # rows kept, flux NaN
    assert np.isnan(live.spectrum["flux"]).all()
    nothing = dc.new_subset_group("nothing", RangeSubsetState(1e30, 2e30, datasets[0].id["flux"]))
    with pytest.raises(SpherexInputError, match="no pixel"):
        LiveSpectrum(dc, nothing)
    empty = DataCollection([])
    with pytest.raises(SpherexInputError):
        LiveSpectrum(empty, empty.new_subset_group("x", SkyCircleSubsetState(1, 2, 0.01)))


# --- Qt -------------------------------------------------------------------------------------

@pytest.fixture
def glue_app(qtbot, monkeypatch):
    pytest.importorskip("glue_qt")
    from glue.config import settings
    from glue_qt.app import GlueApplication

    import glue_spherex.plugin
    import glue_spherex.qt

    glue_spherex.plugin.setup()
    glue_spherex.qt.setup()
    for name in list(settings.AUTOLINK):
        monkeypatch.setitem(settings.AUTOLINK, name, "always_ignore")
    monkeypatch.setitem(settings.AUTOLINK, "Astronomy WCS", "always_ignore")
    app = GlueApplication()
    qtbot.addWidget(app)
    return app


def _scatter_viewers(app):
    from glue_qt.viewers.scatter import ScatterViewer

    return [v for tab in app.viewers for v in tab if isinstance(v, ScatterViewer)]


def _slowed(monkeypatch, seconds):
    """Make every measurement of the live spectrum take ``seconds`` longer (the real
    measurement still runs): run on the GUI thread, that would freeze the window."""
    import time

    import glue_spherex.plugin.live_spectrum as module

    measure = module.measure_frames

    def slow(*args, **kwargs):
        time.sleep(seconds)
        return measure(*args, **kwargs)

    monkeypatch.setattr(module, "measure_frames", slow)


@pytest.mark.slow
def test_qt_action_opens_a_scatter_viewer_of_the_spectrum(glue_app, products, qtbot,
                                                          monkeypatch):
    from qt_watchdog import EventLoopWatchdog

    from glue_spherex.qt.spectrum_action import LABEL, X_LABEL, Y_LABEL

    app = glue_app
    app.resize(1200, 800)
    app.show()
    datasets = products_to_data(products)
    app.data_collection.extend(datasets)
    link_cutouts(app.data_collection)
    group = sky_subset(app.data_collection, *_offset(6.0), RADIUS, label="star")
    tree = app._layer_widget.ui.layerTree
    tree.set_selected_layers([group])
    action = app._layer_widget._actions[LABEL]
    assert action.isEnabled()
    _slowed(monkeypatch, 0.8)
    dog = EventLoopWatchdog(settle_gc=True).start()
    action.trigger()
    assert "Measuring the spectrum" in app.statusBar().currentMessage()
    # the watchdog stops when the spectrum arrives, before glue builds the viewer
    live_spectra(app.data_collection)[group].spectrum_callbacks.insert(0, lambda _: dog.stop())
    qtbot.waitUntil(lambda: len(_scatter_viewers(app)) == 1, timeout=20_000)
    assert dog.max_gap < 0.4  # the 0.8 s measurement ran off the GUI thread

    viewer = _scatter_viewers(app)[0]
    # what a person sees: units on both axes, a legend of the bands, beside the other viewers
    assert viewer.state.x_axislabel == X_LABEL == "Wavelength (µm)"
    assert viewer.state.y_axislabel == Y_LABEL == "Flux density (µJy)"
    legend = viewer.axes.get_legend()
    assert legend is not None
    assert [t.get_text().split()[0] for t in legend.get_texts()] == [
        "D1", "D2", "D3", "D4", "D5", "D6"]
    assert len({tuple(h.get_color()) if not isinstance(h.get_color(), str) else h.get_color()
                for h in legend.legend_handles}) == 6
    spectrum = next(d for d in app.data_collection if d.label == spectrum_label("star"))
    assert viewer.state.x_att is spectrum.id["wavelength"]
    assert viewer.state.y_att is spectrum.id["flux"]
    layer = next(s for s in viewer.state.layers if s.layer is spectrum)
    assert layer.yerr_visible and layer.yerr_att is spectrum.id["error"]
    first = np.array(spectrum["flux"])

    # moving the region updates the plotted table once the debounce timer fires
    live = live_spectra(app.data_collection)[group]
    n = live.n_computations
    viewer.state.y_min, viewer.state.y_max = -1e9, -1e9 + 1  # every point out of view
    with EventLoopWatchdog(settle_gc=True) as dog:
        group.subset_state = SkyCircleSubsetState(S1.ra, S1.dec, RADIUS)
        assert live.n_computations == n
        qtbot.waitUntil(lambda: live.n_computations == n + 1, timeout=20_000)
    assert dog.max_gap < 0.4
    assert not np.allclose(spectrum["flux"], first, equal_nan=True)
    _same(spectrum, _expected(products, S1.ra, S1.dec, RADIUS))
    # the update rescaled the plot: every measured point is in view again
    flux = np.asarray(spectrum["flux"], float)
    flux = flux[np.isfinite(flux)]
    assert viewer.state.y_min <= flux.min() and flux.max() <= viewer.state.y_max

    # selecting points in the scatter viewer names their cutouts in the status bar
    wl = spectrum["wavelength"]
    app.data_collection.new_subset_group(
        "pick", RangeSubsetState(np.nanmin(wl) - 1, np.nanmedian(wl), spectrum.id["wavelength"]))
    assert live.selected_cutouts
    assert "SPHEREx selection" in app.statusBar().currentMessage()

    # the action again brings back the same viewer
    tree.set_selected_layers([group])
    action.trigger()
    qtbot.wait(100)
    assert len(_scatter_viewers(app)) == 1


def test_qt_region_drawn_in_an_image_viewer(glue_app, products):
    from glue_qt.viewers.image import ImageViewer

    from glue_spherex.qt.spectrum_action import open_live_spectrum

    app = glue_app
    datasets = products_to_data(products[:8])
    app.data_collection.extend(datasets)
    image = app.new_data_viewer(ImageViewer, data=datasets[2])
    x, y = (float(v) for v in datasets[2].coords.world_to_pixel(
        SkyCoord(S1.ra * u.deg, S1.dec * u.deg)))
    image.apply_roi(CircularROI(x, y, 1.0))   # what the circle tool does
    group = app.data_collection.subset_groups[-1]
    viewer = open_live_spectrum(app, group)
    spectrum = viewer.state.layers[0].layer
    assert spectrum.label == spectrum_label(group.label)
    circle = live_spectra(app.data_collection)[group].circle
    assert SkyCoord(circle.ra * u.deg, circle.dec * u.deg).separation(
        SkyCoord(S1.ra * u.deg, S1.dec * u.deg)).arcsec < 0.01
    _same(spectrum, _expected(products[:8], circle.ra, circle.dec, circle.radius_arcsec / 3600))
