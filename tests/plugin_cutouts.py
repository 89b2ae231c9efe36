"""Small SPHEREx cutouts for the glue-plugin tests, built without a 2040x2040 frame.

Headers are the real QR2 IMAGE/FLAGS headers (via :mod:`spherex_testfiles`) with the
pointing, roll, detector, times and cutout window changed; the WCS-WAVE table is the real
one of the detector; the PSF is a single zone (the plugin never reads it).  ``flux`` is a
known smooth function of sky position (:func:`sky_flux`), so reprojected values can be
checked against it.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from spherex_testfiles import _full_frame, _header, image_header, psf_hdu

from glue_spherex.products.combined import CombinedWriter
from glue_spherex.products.wavelength import reference_table

RA0, DEC0 = 210.80, 54.35  # M101


def sky_flux(ra, dec):
    """The flux every test cutout has at (ra, dec): linear in both (MJy/sr)."""
    return 100.0 + 400.0 * (ra - RA0) + 900.0 * (dec - DEC0)


@cache
def _templates(detector):
    flags = _full_frame(_header("qr2_flags_header.txt"))
    flags["DETECTOR"], flags["BITPIX"] = detector, 32
    return image_header(detector), flags


def _pointed(header, ra, dec, pa):
    h = header.copy()
    h["CRVAL1"], h["CRVAL2"] = ra, dec
    c, s = np.cos(np.radians(pa)), np.sin(np.radians(pa))
    pc = np.array([[h["PC1_1"], h["PC1_2"]], [h["PC2_1"], h["PC2_2"]]]) @ np.array([[c, -s],
                                                                                    [s, c]])
    for (i, j), v in np.ndenumerate(pc):
        h[f"PC{i + 1}_{j + 1}"] = v
    return h


def cutout_hdul(detector=2, ra=RA0, dec=DEC0, pa=0.0, x0=990, y0=990, size=24, mjd=61000.0,
                obsid="2025W18_1A_0001_1", seed=0):
    """One IRSA-style cutout (PRIMARY + 6 extensions): pixel (0, 0) is frame pixel (x0, y0)
    of a frame whose reference pixel (1020.5, 1020.5) points at (ra, dec), rolled by pa."""
    rng = np.random.default_rng(seed)
    image, flags = (_pointed(h, ra, dec, pa) for h in _templates(detector))
    for h in (image, flags):
        h["OBSID"] = obsid
        h["NAXIS1"] = h["NAXIS2"] = size
        for axis, shift in ((1, x0), (2, y0)):
            for suffix in ("", "A", "W"):
                h[f"CRPIX{axis}{suffix}"] -= shift
        h["MJD-BEG"], h["MJD-AVG"], h["MJD-END"] = mjd, mjd + 0.0007, mjd + 0.0013
        h["MJD-OBS"] = mjd
    yy, xx = np.mgrid[:size, :size]
    ra_pix, dec_pix = WCS(image, naxis=2).all_pix2world(xx, yy, 0)
    arrays = {
        "IMAGE": sky_flux(ra_pix, dec_pix).astype(np.float32),
        "FLAGS": rng.integers(0, 1 << 22, (size, size), dtype=np.int32),
        "VARIANCE": rng.uniform(0.01, 0.02, (size, size)).astype(np.float32),
        "ZODI": np.full((size, size), 0.5, np.float32),
    }
    hdus = [fits.PrimaryHDU()]
    hdus[0].header["VERSION"] = "6.4+psffix1"
    for name, data in arrays.items():
        hdu = fits.ImageHDU(data, header=flags if name == "FLAGS" else image, name=name)
        hdu.header["BUNIT"] = {"IMAGE": "MJy / sr", "VARIANCE": "MJy2 / sr2", "FLAGS": "",
                               "ZODI": "MJy / sr"}[name]
        hdus.append(hdu)
    hdus.append(psf_hdu(n=1))
    hdus.append(reference_table(detector).to_hdu())
    return fits.HDUList(hdus)


def survey(n, size=24, seed=1):
    """``n`` cutout HDULists around M101 from different detectors, rolls, windows and times;
    all overlap the central 0.02 deg."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        out.append(cutout_hdul(
            detector=1 + i % 6, ra=RA0 + rng.uniform(-0.01, 0.01),
            dec=DEC0 + rng.uniform(-0.01, 0.01), pa=rng.uniform(0, 360),
            x0=1020 - size // 2 + int(rng.integers(-3, 4)),
            y0=1020 - size // 2 + int(rng.integers(-3, 4)),
            size=size, mjd=61000.0 + 0.01 * i, obsid=f"2025W18_1A_{i:04d}_1", seed=i))
    return out


def write_combined(path, hduls):
    """A combined cutout file of ``hduls`` (cutout_index 1..n), via CombinedWriter."""
    planned = [{"cutout_index": i, "access_url": f"http://127.0.0.1:1/cutout/{i}"}
               for i in range(1, len(hduls) + 1)]
    with CombinedWriter(path, planned, size=0.05) as writer:
        for i, hdul in enumerate(hduls, start=1):
            writer.add(i, hdul)
    return path
