"""Reading SPHEREx spectral images: sources, metadata, cutouts vs parents, PSF zones, flags, errors."""

import gzip
import io
import mmap

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from cutouts import (
    FrameSpec,
    cutout_bytes,
    frame_spec,
    make_cutout,
    make_frame,
    one_zone_psf,
    to_bytes,
    with_version,
)

from glue_spherex.errors import SpherexFormatError, SpherexInputError
from glue_spherex.local_archive.synthetic import frame_headers, psf_cube
from glue_spherex.local_archive.synthetic.psf import NZONE, zone_index
from glue_spherex.products.flags import DEFAULT_BAD_FLAGS, describe, flag_bits, mask_from_names
from glue_spherex.products.spectral_image import SpectralImage, is_spherex_product, open_products

X0, Y0, NX, NY = 1292, 863, 117, 117  # the window of the real IRSA cutout header
SPEC = frame_spec(3)  # D3: the non-square 9x14 wavelength grid; the real file's pointing


@pytest.fixture(scope="module")
def frame():
    return make_frame(SPEC)


@pytest.fixture(scope="module")
def frame_path(frame, tmp_path_factory):
    path = tmp_path_factory.mktemp("frames") / "level2_2025W51_1A_0684_2D3.fits"
    frame.writeto(path)
    return path


@pytest.fixture(scope="module")
def cutout():
    return make_cutout(SPEC, X0, Y0, NX, NY)


# -- sources -----------------------------------------------------------------------------------

def test_every_kind_of_source_reads_the_same(cutout, tmp_path):
    raw = to_bytes(cutout)
    plain, gz = tmp_path / "c.fits", tmp_path / "c.fits.gz"
    plain.write_bytes(raw)
    gz.write_bytes(gzip.compress(raw))
    sources = [str(plain), plain, gz, raw, bytearray(gzip.compress(raw)), io.BytesIO(raw), cutout]
    ref = cutout["IMAGE"].data
    for source in sources:
        with SpectralImage.open(source) as image:
            assert image.shape == (NY, NX)
            assert image.obsid == "2025W51_1A_0684_2"
            np.testing.assert_array_equal(image.image, ref)
            np.testing.assert_array_equal(image.flags, cutout["FLAGS"].data)


def test_metadata(frame_path):
    with SpectralImage.open(frame_path) as image:
        assert (image.obsid, image.detector, image.bandpass) == ("2025W51_1A_0684_2", 3, "SPHEREx-D3")
        truth = frame_headers(SPEC)["IMAGE"]
        assert image.mjd_beg == truth["MJD-BEG"] == 61027.214984375  # the real file's
        assert image.mjd_avg == truth["MJD-AVG"] == pytest.approx(SPEC.mjd_avg, abs=1e-9)
        assert image.mjd_end == truth["MJD-END"] == pytest.approx(SPEC.mjd_end, abs=1e-9)
        assert image.exptime == truth["XPOSURE"] == 113.5826
        assert image.psf_fwhm == pytest.approx(5.222648214064271)
        assert image.version == "6.4+psffix1"
        assert image.parent_origin == (0, 0)
        assert image.access_url is None and image.cutout_index is None
        assert set(image.headers) == {"PRIMARY", "IMAGE", "FLAGS", "VARIANCE", "ZODI", "PSF",
                                      "WCS-WAVE"}
        assert image.header["EXTNAME"] == "IMAGE"
        assert image.flag_bits["HOT"] == 10 and image.flag_bits["HALO"] == 28
        assert image.psf.shape == (121, 101, 101)
        assert image.wcs.naxis == 2 and image.wcs.sip is not None


def test_path_is_memory_mapped_and_headers_parsed_on_demand(frame_path):
    with SpectralImage.open(frame_path) as image:
        # identity, WCSs and wavelengths come from the cards: no header parsed by astropy
        assert image.detector == 3 and image.wcs.sip is not None
        assert np.isfinite(image.wavelength()).all()
        assert image._backing._headers == {}
        assert image.header["EXTNAME"] == "IMAGE"  # parsed now, on request
        assert set(image._backing._headers) == {"IMAGE"}
        # arrays are views of the mapped file at their HDUs' data offsets (no copy, so the
        # 4.9 MB PSF cube is read only if used)
        with fits.open(frame_path) as hdul:
            offsets = {name: hdul.fileinfo(i)["datLoc"] for i, name in
                       enumerate(h.name for h in hdul)}
        for name, array in (("IMAGE", image.image), ("PSF", image.psf)):
            base = array
            while isinstance(base, np.ndarray):
                top, base = base, base.base
            assert isinstance(getattr(base, "obj", base), mmap.mmap)
            start = top.__array_interface__["data"][0]
            assert array.__array_interface__["data"][0] - start == offsets[name]


def test_is_spherex_product(frame_path, cutout, tmp_path):
    assert is_spherex_product(frame_path)
    assert is_spherex_product(to_bytes(cutout))
    other = tmp_path / "plain.fits"
    fits.PrimaryHDU(np.zeros((4, 4))).writeto(other)
    assert not is_spherex_product(other)
    assert not is_spherex_product(b"not fits at all")
    assert not is_spherex_product(tmp_path / "does-not-exist.fits")


def test_open_products_single(frame_path):
    images = open_products(frame_path)
    assert len(images) == 1 and images[0].detector == 3
    images[0].close()


# -- cutout vs parent ------------------------------------------------------------------------

def test_cutout_matches_parent_at_same_parent_pixels(frame, cutout):
    parent, cut = SpectralImage.open(frame), SpectralImage.open(cutout)
    assert cut.parent_origin == (X0, Y0)
    y, x = np.mgrid[0:NY, 0:NX]
    # wavelength and bandwidth: identical
    for a, b in zip(cut.pixel_to_wave(x, y), parent.pixel_to_wave(x + X0, y + Y0)):
        np.testing.assert_array_equal(a, b)
    # full grids agree to BLAS rounding (the grid is two small matrix products)
    np.testing.assert_allclose(cut.wavelength(), parent.wavelength()[Y0:Y0 + NY, X0:X0 + NX],
                               rtol=0, atol=1e-12)
    # sky coordinates
    sky_cut = cut.wcs.pixel_to_world(x, y)
    sky_par = parent.wcs.pixel_to_world(x + X0, y + Y0)
    assert np.max(sky_cut.separation(sky_par).arcsec) < 1e-6
    # pixel values
    for kind in ("image", "flags", "variance", "zodi"):
        np.testing.assert_array_equal(getattr(cut, kind),
                                      getattr(parent, kind)[Y0:Y0 + NY, X0:X0 + NX])
    # the same sky position has the same wavelength and PSF zone in both
    target = cut.wcs.pixel_to_world(40.3, 70.8)
    assert cut.wavelength_at(target) == pytest.approx(parent.wavelength_at(target), abs=1e-12)
    assert cut.psf_zone(40, 70) == parent.psf_zone(40 + X0, 70 + Y0)


def test_celestial_wcs_equals_astropy_on_the_full_header(cutout):
    cut = SpectralImage.open(cutout)
    full = WCS(cutout["IMAGE"].header)
    x, y = np.meshgrid([0, 10.5, 116], [0, 58, 116.2])
    ours, ref = cut.wcs.pixel_to_world(x, y), full.pixel_to_world(x, y)
    np.testing.assert_array_equal(ours.ra.deg, ref.ra.deg)
    np.testing.assert_array_equal(ours.dec.deg, ref.dec.deg)


def test_wavelength_at_uses_sip_for_sky_to_pixel(cutout):
    cut = SpectralImage.open(cutout)
    target = SkyCoord(10.68, 41.27, unit="deg")
    x, y = cut.wcs.world_to_pixel(target)  # SIP included
    wl, bw = cut.wavelength_at(target)
    assert (wl, bw) == tuple(float(v) for v in cut.pixel_to_wave(x, y))
    # without SIP the pixel moves by a fraction of a pixel, and so does the wavelength
    x_nosip, y_nosip = cut.wcs.wcs_world2pix([[10.68, 41.27]], 0)[0]
    assert abs(y - y_nosip) > 0.1
    assert wl != pytest.approx(float(cut.pixel_to_wave(x_nosip, y_nosip)[0]), abs=1e-6)
    # arrays of positions; NaN beyond the table (parent frame) and on the far side of the sky
    many = SkyCoord([10.68, 14.0, 190.0], [41.27, 42.5, -41.0], unit="deg")
    wls, bws = cut.wavelength_at(many)
    assert (wls[0], bws[0]) == pytest.approx((wl, bw), abs=1e-9)
    assert np.isnan(wls[1:]).all() and np.isnan(bws[1:]).all()


# -- PSF zones -------------------------------------------------------------------------------

def _expected_plane(px, py):
    """Plane of the universe's PSF cube used for parent pixel (px, py): x fastest."""
    ix, iy = zone_index(px, py)
    return int(iy) * NZONE + int(ix)


@pytest.fixture(scope="module")
def d5_frame():
    return make_frame(frame_spec(5))


@pytest.mark.parametrize("version", ["6.4+psffix1", "6.5.6", "6.5.5"])
def test_psf_zone_lookup(version, d5_frame):
    frame = with_version(d5_frame, version)  # 6.5.5: zone keywords written y-fast (erratum)
    image = SpectralImage.open(frame)
    cube = psf_cube(5)
    for px, py in [(0, 0), (2039, 0), (0, 2039), (1000, 300), (300, 1000), (1900, 1200)]:
        plane = _expected_plane(px, py)
        assert image.psf_row(px, py) == plane
        np.testing.assert_array_equal(image.psf_at(px, py), cube[plane])
    # (1000, 300) and (300, 1000) are transposed zones: a y-fast reading would swap them
    assert image.psf_zone(1000, 300) == (5, 1) and image.psf_zone(300, 1000) == (1, 5)
    cut = SpectralImage.open(with_version(make_cutout(frame_spec(5), 1700, 150, 50, 50), version))
    assert cut.psf_row(10, 10) == _expected_plane(1710, 160)
    np.testing.assert_array_equal(cut.psf_at(10, 10), cube[_expected_plane(1710, 160)])


def test_erratum_file_breaks_the_keyword_number_method(d5_frame):
    # The tutorial picks plane k of the nearest (XCTR_k, YCTR_k): right for fixed files,
    # transposed for VERSION <= 6.5.5 files. This is the case psf_at must get right.
    def keyword_method(header, px, py):
        d = [(header[f"XCTR_{k}"] - 1 - px) ** 2 + (header[f"YCTR_{k}"] - 1 - py) ** 2
             for k in range(1, 122)]
        return int(np.argmin(d))

    px, py = 1900, 200
    fixed = with_version(d5_frame, "6.5.6")["PSF"].header
    erratum = with_version(d5_frame, "6.5.5")["PSF"].header
    assert keyword_method(fixed, px, py) == _expected_plane(px, py)
    assert keyword_method(erratum, px, py) != _expected_plane(px, py)
    with SpectralImage.open(with_version(d5_frame, "6.5.5")) as image:
        assert image.psf_row(px, py) == _expected_plane(px, py)


def test_one_zone_psf_of_the_test_survey_keeps_the_universes_plane():
    # tests/cutouts.py cuts the PSF cube of its glue-test cutouts to one zone
    full = make_cutout(frame_spec(2), 1500, 400, 24, 24)
    with SpectralImage.open(full) as a, SpectralImage.open(one_zone_psf(full)) as b:
        assert b.psf.shape == (1, 101, 101) and a.psf_zone(12, 12) == (8, 2)
        np.testing.assert_array_equal(b.psf_at(12, 12), a.psf_at(12, 12))
        np.testing.assert_array_equal(b.psf_at(0, 23), psf_cube(2)[2 * NZONE + 8])


# -- hdulist -----------------------------------------------------------------------------------

def test_hdulist_renames_and_repoints_the_wavelength_table(cutout):
    image = SpectralImage.open(cutout)
    hdul = image.hdulist(suffix="7")
    assert [h.name for h in hdul] == ["IMAGE7", "FLAGS7", "VARIANCE7", "ZODI7", "PSF7",
                                      "WCS-WAVE7"]
    for name in ("IMAGE7", "FLAGS7", "VARIANCE7", "ZODI7"):
        assert hdul[name].header["PS1_0W"] == hdul[name].header["PS2_0W"] == "WCS-WAVE7"
    w = WCS(hdul["IMAGE7"].header, fobj=hdul, key="W")
    w.sip = None
    wl, bw = w.pixel_to_world_values(3, 4)
    assert (float(wl), float(bw)) == pytest.approx(tuple(map(float, image.pixel_to_wave(3, 4))),
                                                   abs=1e-9)


# -- flags -------------------------------------------------------------------------------------

def test_flag_bits_hierarch_and_plain_keywords(frame):
    bits = flag_bits(frame["FLAGS"].header)
    assert bits["TRANSIENT"] == 0 and bits["MISSING_DATA"] == 9  # HIERARCH keywords
    assert bits["HOT"] == 10 and bits["GHOST"] == 22             # plain 8-character keywords
    assert len(bits) == 22
    custom = fits.Header([("MP_HOT", 3), ("HIERARCH MP_SOMETHING_NEW", 30)])
    assert flag_bits(custom) == {"HOT": 3, "SOMETHING_NEW": 30}


def test_mask_and_describe():
    values = np.array([0, 1 << 10, 1 << 21, (1 << 21) | (1 << 1), 1 << 31], dtype=np.int64)
    values = values.astype(np.uint32).view(np.int32)
    np.testing.assert_array_equal(mask_from_names(values, ["hot", "MP_OVERFLOW"]),
                                  [False, True, False, True, False])
    np.testing.assert_array_equal(mask_from_names(values, DEFAULT_BAD_FLAGS),
                                  [False, True, False, True, False])
    assert describe(values[3]) == ["OVERFLOW", "SOURCE"]
    assert describe(values[4]) == ["BIT31"]
    with pytest.raises(SpherexInputError, match="unknown flag name 'HOTT'"):
        mask_from_names(values, ["HOTT"])


# -- bad input ---------------------------------------------------------------------------------

def test_not_fits(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(SpherexFormatError, match=r"notes\.txt: not a FITS file"):
        SpectralImage.open(path)
    with pytest.raises(SpherexFormatError, match="not a FITS file"):
        SpectralImage.open(b"<html>502 Bad Gateway</html>")


def test_fits_that_is_not_spherex(tmp_path):
    path = tmp_path / "plain.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((3, 3)), name="SCI")]).writeto(path)
    with pytest.raises(SpherexFormatError, match="not a SPHEREx spectral image.*no IMAGE"):
        SpectralImage.open(path)
    no_w = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((3, 3)), name="IMAGE")])
    with pytest.raises(SpherexFormatError, match="no DETECTOR keyword or no WAVE-TAB"):
        SpectralImage.open(no_w)


def test_missing_wavelength_table(cutout):
    broken = fits.HDUList([h for h in cutout if h.name != "WCS-WAVE"])
    with pytest.raises(SpherexFormatError, match="missing wavelength table WCS-WAVE"):
        SpectralImage.open(to_bytes(broken))


@pytest.mark.filterwarnings("ignore:File may have been truncated")
@pytest.mark.filterwarnings("ignore:Error validating header")
@pytest.mark.parametrize("where", ["image data", "psf header", "end"])
def test_truncated_file(cutout, tmp_path, where):
    raw = to_bytes(cutout)
    hdul = fits.open(io.BytesIO(raw))
    cut = {"image data": hdul.fileinfo(1)["datLoc"] + 1000,
           "psf header": hdul.fileinfo(5)["hdrLoc"] + 500,
           "end": len(raw) - 10}[where]
    path = tmp_path / "partial.fits"
    path.write_bytes(raw[:cut])
    for source in (path, raw[:cut], gzip.compress(raw[:cut])):
        with pytest.raises(SpherexFormatError, match="truncated"):
            SpectralImage.open(source)
    with pytest.raises(SpherexFormatError, match="truncated or corrupt gzip"):
        SpectralImage.open(gzip.compress(raw)[:-100])


def test_bad_index(frame_path):
    with pytest.raises(SpherexFormatError, match="single spectral image"):
        SpectralImage.open(frame_path, index=2)


def test_bad_source_types(tmp_path):
    with pytest.raises(SpherexInputError, match="no such file"):
        SpectralImage.open(tmp_path / "missing.fits")
    with pytest.raises(SpherexInputError, match="cannot open a int"):
        SpectralImage.open(42)
    with pytest.raises(SpherexInputError, match="binary mode"):
        SpectralImage.open(io.StringIO("SIMPLE"))


# -- files from glue_spherex.local_archive.synthetic (the local archive's writer) -----------------------------

def test_synthetic_archive_cutouts_agree_where_they_overlap():
    spec = FrameSpec("2025W21_1A_0001_1", 4, 150.1, 2.2, 30.0, 60800.0)
    a = SpectralImage.open(cutout_bytes(spec, 100, 1700, 60, 50))
    b = SpectralImage.open(gzip.compress(cutout_bytes(spec, 130, 1720, 40, 40)))
    assert (a.parent_origin, b.parent_origin) == ((100, 1700), (130, 1720))
    assert (a.detector, a.bandpass, a.version) == (4, "SPHEREx-D4", "6.4+psffix1")
    # parent pixels 130..159 x 1720..1749 are in both
    ya, xa = np.mgrid[20:50, 30:60]
    for kind in ("image", "flags", "variance", "zodi"):
        np.testing.assert_array_equal(getattr(a, kind)[20:50, 30:60], getattr(b, kind)[0:30, 0:30])
    for va, vb in zip(a.pixel_to_wave(xa, ya), b.pixel_to_wave(xa - 30, ya - 20)):
        np.testing.assert_array_equal(va, vb)
    assert np.max(a.wcs.pixel_to_world(xa, ya).separation(
        b.wcs.pixel_to_world(xa - 30, ya - 20)).arcsec) < 1e-6
    # and the per-pixel wavelengths are astropy's (sip=None)
    with fits.open(io.BytesIO(cutout_bytes(spec, 100, 1700, 60, 50))) as hdul:
        w = WCS(hdul["IMAGE"].header, fobj=hdul, key="W")
        w.sip = None
        yy, xx = np.mgrid[0:50, 0:60]
        wl, bw = w.pixel_to_world_values(xx, yy)
    np.testing.assert_allclose(a.wavelength(), wl, rtol=0, atol=1e-9)
    np.testing.assert_allclose(a.bandwidth(), bw, rtol=0, atol=1e-9)
