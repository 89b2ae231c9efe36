"""The synthetic PSF: a circular Gaussian per detector, slightly broader towards the corners.

The PSF extension of a real file holds 121 PSFs on an 11x11 grid of detector zones, each
101x101 at 10x oversampling (0.615" pixels), plane ``k-1 = iy*11 + ix`` (x fastest, the fixed
``+psffix1`` order). Here plane (ix, iy) is a Gaussian whose FWHM grows by up to 4 % from the
centre to the corners of the detector; ``PSF_FWHM`` (the header's median) is the value in
:data:`DETECTOR_FWHM`. Each plane is integrated over its 0.615" sub-pixels and normalised to
sum 1 (the normalisation of the real planes is not documented).

The renderer draws a point source with the FWHM of the zone that contains it, so the image and
the PSF extension agree.

``psf_header(detector, zone_order='y-fast')`` writes the zone keywords as files of
``VERSION <= 6.5.5`` have them (the erratum: ``XCTR_k``/``YCTR_k`` numbered y-fast while the
planes are x-fast); the archive always serves the fixed, x-fast order.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from astropy.io import fits
from scipy.special import erf

from .geometry import NPIX

__all__ = ["DETECTOR_FWHM", "NZONE", "OVERSAMP", "zone_fwhm", "fwhm_at", "zone_index",
           "psf_cube", "psf_header", "zone_centres", "ZONE_ORDERS"]

#: Median PSF FWHM (arcsec) per detector: D3, D4, D5 are real header values.
DETECTOR_FWHM = {1: 5.41, 2: 5.31, 3: 5.222648214064271, 4: 6.10, 5: 6.06, 6: 5.98}
NZONE = 11
OVERSAMP = 10
PSF_PIXEL_ARCSEC = 0.615
PSF_SIZE = 101
_ZONE = NPIX / NZONE


def _check_detector(detector):
    from ...errors import SpherexInputError

    if detector not in DETECTOR_FWHM:
        raise SpherexInputError(f"detector must be 1-6, got {detector!r}")
    return int(detector)


def zone_centres():
    """1-based zone centres along one axis (``XCTR``/``YCTR`` values)."""
    return 0.5 + (np.arange(NZONE) + 0.5) * _ZONE


@cache
def zone_fwhm(detector):
    """``(11, 11)`` FWHM (arcsec) of the zone PSFs, indexed ``[iy, ix]``."""
    detector = _check_detector(detector)
    c = zone_centres() - 0.5 - NPIX / 2
    rho2 = (c[None, :] ** 2 + c[:, None] ** 2) / (2 * (NPIX / 2) ** 2)
    shape = 1.0 + 0.04 * rho2
    out = DETECTOR_FWHM[detector] * shape / np.median(shape)
    out.setflags(write=False)
    return out


def zone_index(x, y):
    """Zone ``(ix, iy)`` containing 0-based pixel positions (x, y), clipped to the grid."""
    ix = np.clip(np.floor((np.asarray(x) + 0.5) / _ZONE), 0, NZONE - 1).astype(int)
    iy = np.clip(np.floor((np.asarray(y) + 0.5) / _ZONE), 0, NZONE - 1).astype(int)
    return ix, iy


def fwhm_at(detector, x, y):
    """FWHM (arcsec) of the PSF used for a source at 0-based pixel position (x, y)."""
    ix, iy = zone_index(x, y)
    return float(zone_fwhm(detector)[iy, ix])


@cache
def psf_cube(detector):
    """The ``(121, 101, 101)`` float32 PSF cube of a detector (cached, read-only)."""
    fwhm = zone_fwhm(detector).ravel()  # plane order: iy * 11 + ix
    edges = (np.arange(PSF_SIZE + 1) - PSF_SIZE / 2) * PSF_PIXEL_ARCSEC
    sigma = fwhm / np.sqrt(8 * np.log(2))
    cdf = 0.5 * erf(edges[None, :] / (np.sqrt(2) * sigma[:, None]))
    prof = np.diff(cdf, axis=1)  # (121, 101)
    cube = prof[:, :, None] * prof[:, None, :]
    cube /= cube.sum(axis=(1, 2), keepdims=True)
    cube = cube.astype(np.float32)
    cube.setflags(write=False)
    return cube


#: Orders of the zone keywords ``XCTR_k``... : ``'x-fast'`` (fixed files), ``'y-fast'`` (erratum).
ZONE_ORDERS = ("x-fast", "y-fast")


@cache
def _psf_cards(detector, zone_order="x-fast"):
    cards = [
        ("WCSAXES", 2, "Number of coordinate axes"),
        ("CRPIX1", 51.0, "Pixel coordinate of reference point"),
        ("CRPIX2", 51.0, "Pixel coordinate of reference point"),
        ("CDELT1", PSF_PIXEL_ARCSEC, "[arcsec]"),
        ("CDELT2", PSF_PIXEL_ARCSEC, "[arcsec]"),
        ("CUNIT1", "arcsec", "Units of coordinate increment and value"),
        ("CUNIT2", "arcsec", "Units of coordinate increment and value"),
        ("CTYPE1", "XANG", "Coordinate type code"),
        ("CTYPE2", "YANG", "Coordinate type code"),
        ("CRVAL1", 0.0, "[arcsec] Coordinate value at reference point"),
        ("CRVAL2", 0.0, "[arcsec] Coordinate value at reference point"),
        ("CNAME1", "Relative offset in detector X from center of PSF, in arcseconds", ""),
        ("CNAME2", "Relative offset in detector Y from center of PSF, in arcseconds", ""),
        ("MJDREF", 0.0, "[d] MJD of fiducial time"),
        ("OVERSAMP", OVERSAMP, "Oversampling factor"),
    ]
    ctr = np.round(zone_centres(), 8)
    for k in range(NZONE * NZONE):
        ix, iy = (k % NZONE, k // NZONE) if zone_order == "x-fast" else (k // NZONE, k % NZONE)
        cards += [
            (f"XCTR_{k + 1}", float(ctr[ix]), f"Center of x zone ({ix}, {iy})"),
            (f"YCTR_{k + 1}", float(ctr[iy]), f"Center of y zone ({ix}, {iy})"),
            (f"XWID_{k + 1}", _width(ix, ctr), f"Width of x zone ({ix}, {iy})"),
            (f"YWID_{k + 1}", _width(iy, ctr), f"Width of y zone ({ix}, {iy})"),
        ]
    cards += [("EXTNAME", "PSF", "extension name"), ("BUNIT", "", "Unit of pixel value")]
    return tuple(cards)


def _width(i, ctr):
    # The real widths: zone 0 spans from pixel 0.5, the others are 2040/11 wide.
    return round(2 * ctr[0], 8) if i == 0 else round(_ZONE, 8)


def psf_header(detector, zone_order="x-fast"):
    """The PSF extension header (509 cards, as in the real files) of a detector.

    ``zone_order``: ``'x-fast'`` (the default, as the archive serves it: keyword ``k`` is plane
    ``k``, zone ``ix = (k - 1) % 11``, ``iy = (k - 1) // 11``) or ``'y-fast'`` (the
    ``VERSION <= 6.5.5`` erratum: keyword ``k`` describes zone ``ix = (k - 1) // 11``,
    ``iy = (k - 1) % 11``, while plane ``k`` is still zone ``((k - 1) % 11, (k - 1) // 11)``).
    """
    from ...errors import SpherexInputError

    detector = _check_detector(detector)
    if zone_order not in ZONE_ORDERS:
        raise SpherexInputError(f"zone_order={zone_order!r}: give 'x-fast' or 'y-fast'")
    hdr = fits.Header()
    hdr["XTENSION"] = ("IMAGE", "Image extension")
    hdr["BITPIX"] = (-32, "array data type")
    hdr["NAXIS"] = (3, "number of array dimensions")
    hdr["NAXIS1"] = PSF_SIZE
    hdr["NAXIS2"] = PSF_SIZE
    hdr["NAXIS3"] = NZONE * NZONE
    hdr["PCOUNT"] = (0, "number of parameters")
    hdr["GCOUNT"] = (1, "number of groups")
    for key, value, comment in _psf_cards(detector, zone_order):
        hdr[key] = (value, comment)
    return hdr
