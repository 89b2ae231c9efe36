"""Small SPHEREx files for the reader and combined-file tests, built from real headers.

Headers start from the real QR2 cutout headers shipped in ``glue_spherex/data`` (reset to
full-frame values), wavelength tables are the real per-detector ``WCS-WAVE`` tables, and the
cutout rule is IRSA's (§10.3 of the product notes): slice the four images and shift
``CRPIXn``, ``CRPIXnA`` and ``CRPIXnW``. Pixel values are random but reproducible, and the
PSF plane ``k`` is filled with the value ``k`` so a test can tell which plane it got.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
from astropy.io import fits

from glue_spherex.wavelength import reference_table

N = 2040


def _header(name):
    text = resources.files("glue_spherex.data").joinpath(name).read_text()
    return fits.Header.fromstring(text, sep="\n")


def _full_frame(header):
    """A real cutout header reset to a full 2040x2040 frame."""
    h = header.copy()
    h["NAXIS1"] = h["NAXIS2"] = N
    h["CRPIX1"] = h["CRPIX2"] = 1020.5
    for key in ("CRPIX1A", "CRPIX2A", "CRPIX1W", "CRPIX2W"):
        h[key] = 1.0
    return h


def image_header(detector=3, obsid="2025W51_1A_0684_2"):
    """Full-frame IMAGE header of a detector (the real D3 header, DETECTOR and OBSID set)."""
    h = _full_frame(_header("qr2_cutout_image_header.txt"))
    h["DETECTOR"] = detector
    h["OBSID"] = obsid
    return h


def psf_hdu(x_fast=True, n=11):
    """PSF cube with plane k = k; zone keywords x-fast (fixed files) or y-fast (erratum)."""
    cube = np.broadcast_to(np.arange(n * n, dtype=np.float32)[:, None, None], (n * n, 101, 101))
    hdu = fits.ImageHDU(np.ascontiguousarray(cube), name="PSF")
    h = hdu.header
    h["BUNIT"] = ""
    for key, value in (("WCSAXES", 2), ("CRPIX1", 51.0), ("CRPIX2", 51.0), ("CDELT1", 0.615),
                       ("CDELT2", 0.615), ("CUNIT1", "arcsec"), ("CUNIT2", "arcsec"),
                       ("CTYPE1", "XANG"), ("CTYPE2", "YANG"), ("CRVAL1", 0.0), ("CRVAL2", 0.0),
                       ("MJDREF", 0.0), ("OVERSAMP", 10)):
        h[key] = value
    for k in range(1, n * n + 1):
        ix, iy = ((k - 1) % n, (k - 1) // n) if x_fast else ((k - 1) // n, (k - 1) % n)
        h[f"XCTR_{k}"] = (0.5 + (ix + 0.5) * N / n, f"Center of x zone ({ix}, {iy})")
        h[f"YCTR_{k}"] = (0.5 + (iy + 0.5) * N / n, f"Center of y zone ({ix}, {iy})")
        h[f"XWID_{k}"] = (N / n + (ix == 0), f"Width of x zone ({ix}, {iy})")
        h[f"YWID_{k}"] = (N / n + (iy == 0), f"Width of y zone ({ix}, {iy})")
    return hdu


def make_frame(detector=3, version="6.4+psffix1", obsid="2025W51_1A_0684_2", seed=0,
               psf_x_fast=None):
    """A full-frame Level-2 spectral image (7 HDUs) with random pixels."""
    rng = np.random.default_rng(seed)
    hdr = image_header(detector, obsid)
    flags_hdr = _full_frame(_header("qr2_flags_header.txt"))
    flags_hdr["BITPIX"] = 32
    if psf_x_fast is None:
        psf_x_fast = version != "6.5.5"
    image = rng.normal(1.0, 0.1, (N, N)).astype(np.float32)
    flags = rng.integers(0, 1 << 22, (N, N), dtype=np.int32)
    variance = rng.uniform(0.01, 0.02, (N, N)).astype(np.float32)
    zodi = np.full((N, N), 0.5, np.float32)
    hdus = [fits.PrimaryHDU()]
    hdus[0].header["VERSION"] = version
    for name, data, bunit, h in (("IMAGE", image, "MJy / sr", hdr),
                                 ("FLAGS", flags, "", flags_hdr),
                                 ("VARIANCE", variance, "MJy2 / sr2", hdr),
                                 ("ZODI", zodi, "MJy / sr", hdr)):
        h = h.copy()
        h["EXTNAME"] = name
        h["BUNIT"] = bunit
        hdus.append(fits.ImageHDU(data, header=h, name=name))
    hdus.append(psf_hdu(psf_x_fast))
    hdus.append(reference_table(detector).to_hdu())
    return fits.HDUList(hdus)


def make_cutout(frame, x0, y0, nx, ny):
    """IRSA-style cutout of ``frame`` whose pixel (0, 0) is parent pixel (x0, y0)."""
    out = fits.HDUList([fits.PrimaryHDU(header=frame[0].header.copy())])
    for hdu in frame[1:]:
        if hdu.name in ("IMAGE", "FLAGS", "VARIANCE", "ZODI"):
            h = hdu.header.copy()
            for axis, shift in ((1, x0), (2, y0)):
                for suffix in ("", "A", "W"):
                    h[f"CRPIX{axis}{suffix}"] -= shift
            out.append(fits.ImageHDU(hdu.data[y0:y0 + ny, x0:x0 + nx].copy(), header=h,
                                     name=hdu.name))
        else:
            out.append(hdu.copy())
    return out


def to_bytes(hdul):
    import io

    buf = io.BytesIO()
    hdul.writeto(buf)
    return buf.getvalue()
