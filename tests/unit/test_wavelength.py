"""Our -TAB wavelength evaluation against astropy/wcslib and against real IRSA tutorial values."""

from importlib import resources

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from cutouts import frame_spec

from glue_spherex.local_archive.synthetic import frame_headers
from glue_spherex.products.spectral_image import SpectralImage
from glue_spherex.products.wavelength import SpectralWCS, reference_table

DETECTORS = (1, 2, 3, 4, 5, 6)


def image_header(detector):
    """The full-frame IMAGE header of a synthetic frame of ``detector`` (the real keywords)."""
    return frame_headers(frame_spec(detector))["IMAGE"]


def _cutout_header(detector):
    """The real 117x117 IRSA cutout header (parent pixel (1292, 863)) on a detector's table."""
    text = resources.files("glue_spherex.data").joinpath("qr2_cutout_image_header.txt").read_text()
    header = fits.Header.fromstring(text, sep="\n")
    header["DETECTOR"] = detector
    return header


def _astropy(header, table_hdul, sip):
    w = WCS(header, fobj=table_hdul, key="W")
    if not sip:
        w.sip = None
    ny, nx = header["NAXIS2"], header["NAXIS1"]
    y, x = np.mgrid[0:ny, 0:nx]
    return w.pixel_to_world_values(x, y)


def _ours(header, table_hdul):
    return SpectralWCS.from_header(header, table_hdul).grid((header["NAXIS2"], header["NAXIS1"]))


def _tables(detector):
    return fits.HDUList([fits.PrimaryHDU(), reference_table(detector).to_hdu()])


def _max_diff(a, b):
    assert np.array_equal(np.isnan(a), np.isnan(b))
    return np.nanmax(np.abs(a - b))


@pytest.mark.parametrize("detector", [3, 4])
def test_full_frame_matches_astropy(detector):
    # D3 (9x14) and D4 (13x20) are the non-square grids with near-duplicate knots
    header, tables = image_header(detector), _tables(detector)
    wl_ref, bw_ref = _astropy(header, tables, sip=False)
    wl, bw = _ours(header, tables)
    assert wl.shape == (2040, 2040)
    assert _max_diff(wl, wl_ref) < 1e-6
    assert _max_diff(bw, bw_ref) < 1e-6


@pytest.mark.parametrize("detector", DETECTORS)
def test_cutout_matches_astropy(detector):
    header, tables = _cutout_header(detector), _tables(detector)
    assert header["CRPIX1W"] == -1291.0  # the real shifted cutout keywords
    wl_ref, bw_ref = _astropy(header, tables, sip=False)
    wl, bw = _ours(header, tables)
    assert _max_diff(wl, wl_ref) < 1e-6
    assert _max_diff(bw, bw_ref) < 1e-6


def test_astropy_with_sip_differs():
    # Proves the comparison above would fail if SIP leaked into the wavelength WCS.
    header, tables = _cutout_header(5), _tables(5)
    wl_sip, _ = _astropy(header, tables, sip=True)
    wl, _ = _ours(header, tables)
    assert np.nanmax(np.abs(wl - wl_sip)) > 1e-4


def test_tutorial_d5_values():
    # Real values printed by IRSA's SPHEREx intro tutorial for a QR2 D5 full frame.
    w = SpectralWCS.from_header(image_header(5), _tables(5))
    x = np.array([0, 1, 0, 2039])
    y = np.array([0, 0, 1, 0])
    wl, bw = w.pixel_to_wave(x, y)
    np.testing.assert_allclose(wl, [4.4361639, 4.4361342, 4.43584344, 4.42395306], atol=1e-6)
    assert abs(bw[0] - 0.036175) < 1e-6


def test_product_wavelength_is_the_w_lookup():
    # The reader's per-pixel grid and point lookups agree with the table evaluation.
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((117, 117), np.float32),
                                                          header=_cutout_header(4), name="IMAGE"),
                         reference_table(4).to_hdu()])
    for name in ("FLAGS", "VARIANCE", "ZODI"):  # the reader checks they match IMAGE
        hdul.append(fits.ImageHDU(np.zeros((117, 117), np.float32), name=name))
    hdul.append(fits.ImageHDU(name="PSF"))
    image = SpectralImage.open(hdul)
    wl_ref, bw_ref = _astropy(_cutout_header(4), _tables(4), sip=False)
    assert _max_diff(image.wavelength(), wl_ref) < 1e-6
    assert _max_diff(image.bandwidth(), bw_ref) < 1e-6
    wl, bw = image.pixel_to_wave(5, 7)
    assert (wl, bw) == pytest.approx((wl_ref[7, 5], bw_ref[7, 5]), abs=1e-9)
