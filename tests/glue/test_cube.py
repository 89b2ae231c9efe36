"""The wavelength-ordered cube: real synthetic cutouts of M101 reprojected onto one grid."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS
from cutouts import cutouts_at
from glue.core import DataCollection

from glue_spherex.analysis.cube import reproject_cube
from glue_spherex.analysis.spectrum import extract_spectrum
from glue_spherex.errors import SpherexInputError
from glue_spherex.local_archive.synthetic import default_sky
from glue_spherex.plugin.cube_data import CubeCoordinates, build_cube, cube_coordinates
from glue_spherex.products.flags import DEFAULT_BAD_FLAGS, mask_from_names

M101 = default_sky().source("M101")
CENTRE = SkyCoord(M101.ra * u.deg, M101.dec * u.deg)


@pytest.fixture(scope="module")
def products():
    return cutouts_at(M101.ra, M101.dec, per_detector=5)


@pytest.fixture(scope="module")
def cube(products):
    return reproject_cube(products)


@pytest.fixture
def glue_cube(products):
    return build_cube(products)  # fresh: a Data joins one DataCollection only


def test_shape_order_and_spectral_axis(products, cube, glue_cube):
    data, slices = glue_cube
    n = len(products)
    assert n >= 30
    assert data.shape == cube.flux.shape and data.shape[0] == n
    for name in ("flux", "variance", "wavelength", "bandwidth", "flagged"):
        assert data[name].shape == data.shape
    # one slice per cutout, ordered by the wavelength each sees at the grid centre
    centre = SkyCoord(slices.meta["ra"] * u.deg, slices.meta["dec"] * u.deg)
    expected = sorted((float(p.wavelength_at(centre)[0]), p.obsid, p.detector) for p in products)
    assert [(o, d) for _, o, d in expected] == list(zip(slices["obs_id"], slices["detector"]))
    wl = np.array([w for w, _, _ in expected])
    assert np.allclose(u.Quantity(slices["wavelength"], u.um).value, wl)
    assert np.allclose(data.meta["slice_wavelength"], wl)
    # the third world axis is that table: glue's world component along the spectral axis
    world = data[data.world_component_ids[0]][:, 0, 0]
    assert np.allclose(world, wl)
    assert data.world_component_ids[0].label == "Wavelength"
    assert data.coords.world_axis_units[2] == "um"
    # the grid covers the cutouts around the target
    ny, nx = data.shape[1:]
    x, y = cube.wcs.world_to_pixel(CENTRE)
    assert 0 < x < nx - 1 and 0 < y < ny - 1


def test_per_pixel_wavelength_is_each_cutouts_own(products, cube):
    by_obs = {(p.obsid, p.detector): p for p in products}
    ny, nx = cube.flux.shape[1:]
    yy, xx = np.mgrid[0:ny, 0:nx]
    ra, dec = cube.wcs.pixel_to_world_values(xx, yy)
    sky = SkyCoord(ra * u.deg, dec * u.deg)
    for k in range(0, len(products), 4):
        p = by_obs[(cube.slices["obs_id"][k], cube.slices["detector"][k])]
        covered = np.isfinite(cube.wavelength[k])
        assert covered.sum() > 100
        exact, band = p.wavelength_at(sky[covered])
        diff = np.abs(cube.wavelength[k][covered] - exact)
        assert np.median(diff) < 1e-5 and diff.max() < 2e-3
        assert np.allclose(cube.bandwidth[k][covered], band, atol=1e-3)
        # and each slice's wavelength differs across the field: it is a per-pixel quantity
        assert np.ptp(cube.wavelength[k][covered]) > 1e-4


def test_flagged_pixels_are_marked(products, cube):
    by_obs = {(p.obsid, p.detector): p for p in products}
    checked = 0
    for k in range(len(products)):
        p = by_obs[(cube.slices["obs_id"][k], cube.slices["detector"][k])]
        bad = mask_from_names(p.flags, DEFAULT_BAD_FLAGS, bits=p.flag_bits)
        for y, x in zip(*np.nonzero(bad)):
            cx, cy = cube.wcs.world_to_pixel(p.wcs.pixel_to_world(x, y))
            i, j = int(round(float(cx))), int(round(float(cy)))
            if 0 <= i < cube.flux.shape[2] and 0 <= j < cube.flux.shape[1]:
                assert cube.flagged[k, j, i]
                checked += 1
    assert checked > 0
    covered = np.isfinite(cube.flux)
    assert cube.flagged[covered].mean() < 0.2
    # no flagged input value leaks into unflagged cube pixels: they look like the sky
    ok = covered & ~cube.flagged
    assert np.nanmax(np.abs(cube.flux[ok])) < 100  # corrupted values are 20-200 MJy/sr higher


def test_pixel_spectrum_follows_the_extracted_spectrum(products, cube):
    """Loose: the cube's flux near the nucleus has the shape of the aperture spectrum."""
    table = extract_spectrum(products, CENTRE, 18 * u.arcsec, aperture_correction="none")
    ny, nx = cube.flux.shape[1:]
    yy, xx = np.mgrid[0:ny, 0:nx]
    x0, y0 = (float(v) for v in cube.wcs.world_to_pixel(CENTRE))
    scale = np.sqrt(np.abs(np.linalg.det(cube.wcs.pixel_scale_matrix))) * 3600
    disc = np.hypot(xx - x0, yy - y0) * scale <= 18
    omega = (scale / 206264.806) ** 2
    cube_flux = np.array([np.nansum(np.where(cube.flagged[k], np.nan, cube.flux[k])[disc])
                          / np.mean(~cube.flagged[k][disc]) for k in range(len(cube.slices))])
    cube_flux *= omega * 1e12
    order = {(o, d): i for i, (o, d) in enumerate(zip(table["obs_id"], table["detector"]))}
    spec = np.array([u.Quantity(table["flux"][order[(o, d)]]).value
                     for o, d in zip(cube.slices["obs_id"], cube.slices["detector"])])
    good = np.isfinite(spec)
    ratio = cube_flux[good] / spec[good]
    print(f"\ncube/aperture flux: median {np.median(ratio):.3f}, scatter {np.std(ratio) / np.mean(ratio):.3f}")
    assert 0.85 < np.median(ratio) < 1.15
    assert np.std(ratio) / np.mean(ratio) < 0.1
    assert np.corrcoef(cube_flux[good], spec[good])[0, 1] > 0.95
    # and the single cube pixel on the nucleus has the same shape, loosely (its share of
    # the unresolved nucleus changes with each band's PSF and sub-pixel position)
    pixel = cube.flux[:, int(round(y0)), int(round(x0))]
    both = good & np.isfinite(pixel) & ~cube.flagged[:, int(round(y0)), int(round(x0))]
    assert both.sum() > 0.8 * len(both)
    assert np.corrcoef(pixel[both], spec[both])[0, 1] > 0.9


def test_glue_profile_viewer_shows_a_pixels_spectrum(glue_cube):
    from glue.core.roi import RectangularROI
    from glue.core.subset import RoiSubsetState
    from glue.viewers.profile.state import ProfileLayerState, ProfileViewerState

    data, slices = glue_cube
    dc = DataCollection([data])
    j, i = data.shape[1] // 2, data.shape[2] // 2
    roi = RectangularROI(i - 0.5, i + 0.5, j - 0.5, j + 0.5)
    group = dc.new_subset_group("pixel", RoiSubsetState(
        data.pixel_component_ids[2], data.pixel_component_ids[1], roi))
    viewer = ProfileViewerState()
    layer = ProfileLayerState(viewer_state=viewer, layer=group.subsets[0])
    viewer.layers.append(layer)
    viewer.reference_data = data
    viewer.x_att = data.world_component_ids[0]
    viewer.function = "mean"
    layer.attribute = data.id["flux"]
    x, y = layer.profile
    assert np.allclose(x, u.Quantity(slices["wavelength"], u.um).value)
    assert np.allclose(y, data["flux"][:, j, i], equal_nan=True)
    assert viewer.x_display_unit == "um"


def test_cube_survives_a_glue_session_file(glue_cube):
    from glue.core.state import GlueSerializer, GlueUnSerializer

    data, _ = glue_cube
    text = GlueSerializer(DataCollection([data])).dumps()
    restored = GlueUnSerializer.loads(text).object("__main__")[0]
    assert isinstance(restored.coords, CubeCoordinates)
    pix = (np.array([1.0, 5.5]), np.array([2.0, 3.0]), np.array([0.0, 7.25]))
    assert np.allclose(restored.coords.pixel_to_world_values(*pix),
                       data.coords.pixel_to_world_values(*pix))
    assert np.allclose(restored["wavelength"], data["wavelength"], equal_nan=True)


def test_coordinates_round_trip_and_extrapolate():
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [210.8, 54.35]
    w.wcs.cdelt = [-6.15 / 3600, 6.15 / 3600]
    coords = CubeCoordinates(w, [0.8, 1.0, 1.0, 2.5, 4.9])
    x, y, z = np.array([3.0, 7.5]), np.array([2.0, 9.0]), np.array([0.5, 3.25])
    ra, dec, wl = coords.pixel_to_world_values(x, y, z)
    assert np.allclose(wl, [0.9, 2.5 + 0.25 * 2.4])
    assert np.allclose(coords.world_to_pixel_values(ra, dec, wl), (x, y, z))
    assert np.allclose(coords.pixel_to_world_values(0, 0, [-1, 5])[2], [0.6, 7.3])
    with pytest.raises(SpherexInputError, match="non-decreasing"):
        CubeCoordinates(w, [1.0, 0.9])


def test_band_grid_and_order_options(products):
    cube = reproject_cube(products, band="D3")
    assert set(cube.slices["detector"]) == {3}
    assert len(cube.slices) == sum(p.detector == 3 for p in products)
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [M101.ra, M101.dec]
    w.wcs.crpix = [8, 6]
    w.wcs.cdelt = [-6.153 / 3600, 6.153 / 3600]
    small = reproject_cube(products[:6], wcs=w, shape=(11, 15))
    assert small.flux.shape == (6, 11, 15)
    assert np.isfinite(small.flux[:, 5, 7]).all()
    by_time = reproject_cube(products[:6], order="mjd")
    assert list(by_time.slices["mjd"]) == sorted(by_time.slices["mjd"])
    assert cube_coordinates(by_time).world_axis_names[2] == "MJD"
    for kwargs, text in ((dict(band="D9"), "band"), (dict(wcs=w), "both"),
                         (dict(order="colour"), "order"),
                         (dict(wcs=w, shape=(0, 4)), "shape")):
        with pytest.raises(SpherexInputError, match=text):
            reproject_cube(products[:3], **kwargs)
    with pytest.raises(SpherexInputError, match="no cutouts"):
        reproject_cube([p for p in products if p.detector == 1], band=2)


def test_cube_from_a_combined_file(products, tmp_path):
    from glue_spherex.products.combined import CombinedWriter

    few = products[:5]
    path = tmp_path / "combined.fits"
    planned = [dict(cutout_index=i + 1, access_url=f"http://127.0.0.1/{i + 1}")
               for i in range(len(few))]
    with CombinedWriter(path, planned, target=CENTRE) as writer:
        for i, p in enumerate(few):
            writer.add(i + 1, p)
    from_file = reproject_cube(path)
    direct = reproject_cube(few)
    assert sorted(from_file.slices["cutout_index"]) == [1, 2, 3, 4, 5]
    assert np.allclose(from_file.flux, direct.flux, equal_nan=True)
    assert np.array_equal(from_file.flagged, direct.flagged)


def test_variance_is_propagated_through_the_bilinear_weights(products):
    """On its own grid a cutout keeps its variance; on a grid shifted by half a pixel each
    output pixel is the mean of four input pixels, so its variance is their sum / 16 (an
    interpolated variance would be their mean, four times as large)."""
    product = products[0]
    raw = np.asarray(product.variance, float)
    assert np.isnan(raw).any()  # a dead pixel: it adds nothing and is marked flagged
    var = np.nan_to_num(raw)
    ny, nx = product.shape
    same = reproject_cube([product], wcs=product.wcs, shape=(ny, nx), bad_flags=())
    np.testing.assert_allclose(same.variance[0], var, rtol=1e-6, atol=1e-12)
    assert same.flagged[0][np.isnan(raw)].all()
    shifted = product.wcs.deepcopy()
    shifted.wcs.crpix = shifted.wcs.crpix + 0.5
    half = reproject_cube([product], wcs=shifted, shape=(ny, nx), bad_flags=())
    expected = (var[:-1, :-1] + var[:-1, 1:] + var[1:, :-1] + var[1:, 1:]) / 16
    # (to 1 %: the way back to input pixels goes through the approximate SIP inverse)
    np.testing.assert_allclose(half.variance[0][1:, 1:], expected, rtol=0.01)
    # the flux is the plain mean of the same four pixels
    image = np.nan_to_num(np.asarray(product.image, float) - np.asarray(product.zodi, float))
    mean = (image[:-1, :-1] + image[:-1, 1:] + image[1:, :-1] + image[1:, 1:]) / 4
    np.testing.assert_allclose(half.flux[0][1:, 1:], mean, rtol=0.01)
