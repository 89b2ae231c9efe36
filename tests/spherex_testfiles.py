"""Small SPHEREx files for the reader and combined-file tests, built from real headers.

Pipeline < 7 (QR2): headers start from the real QR2 cutout headers shipped in
``glue_spherex/data`` (reset to full-frame values), wavelength tables are the real
per-detector ``WCS-WAVE`` tables, and the PSF plane ``k`` is filled with the value ``k`` so a
test can tell which plane it got.

Pipeline 7 (QR3 and QR2 reprocessed, ``make_r7_frame``): the real QR3 D5 IMAGE header and
the real R7 D5 ``WCS-WAVE`` HDU (``tests/data/r7``, copies of the shared reference files),
FLAGS written by astropy as ``CompImageHDU(int32, 'RICE_1', tile_shape=(1, nx))`` or as a
plain int32 image, with ``MSKNnnnn``/``MSKMnnnn`` cards, and an ``EPSF`` table as
spherex-r7.md §2 describes it (21x21 zones, 11x41 on D3, 33x33 arrays at 5x summing to 1;
zone k's Gaussian width grows with k, so a test can tell which zone it got).

The cutout rule is IRSA's (§10.3 of the product notes): slice the four images and shift
``CRPIXn``, ``CRPIXnA`` and ``CRPIXnW``; R7 cutouts keep the EPSF table whole. Pixel values
are random but reproducible.
"""

from __future__ import annotations

import json
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

from glue_spherex.products.wavelength import reference_table

N = 2040
R7_DATA = Path(__file__).parent / "data" / "r7"
R7_IMAGE_HEADER = R7_DATA / "qr3_D5_IMAGE_header_2026W30_2A_0049_1.json"
R7_WCS_WAVE = R7_DATA / "qr3_D5_WCS-WAVE_2026W30_era.fits"
#: bit -> name of the FLAGS bits real R7 cutouts define (spherex-r7.md §3)
R7_BITS = {0: "TRANSIENT", 1: "OVERFLOW", 2: "SUR_ERROR", 6: "NONFUNC", 7: "DICHROIC",
           9: "MISSING_DATA", 10: "HOT", 11: "COLD", 12: "FULLSAMPLE", 14: "PHANMISS",
           15: "NONLINEAR", 17: "PERSIST", 19: "OUTLIER", 20: "CROSSTALK", 21: "SOURCE",
           22: "GHOST", 23: "GHOST_FPA", 24: "GHOST_EXT", 25: "STREAK", 26: "BLOOM",
           27: "SNOWBALL", 28: "HALO"}
_STRUCTURAL = ("XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT")


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


def r7_image_header(detector=5, obsid="2026W30_2A_0049_1"):
    """Full-frame IMAGE header of pipeline 7: the real QR3 D5 header (DETECTOR, OBSID set)."""
    values = json.loads(R7_IMAGE_HEADER.read_text())["header"]
    h = fits.Header()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)  # 'L2 N_...' keys become HIERARCH
        for key, value in values.items():
            if key not in _STRUCTURAL:
                h[key] = value
    h["DETECTOR"] = detector
    h["OBSID"] = obsid
    return h


def r7_flags_header(image_header):
    """FLAGS header of pipeline 7: the image's WCS cards plus MSKN/MSKM bit definitions."""
    h = image_header.copy()
    h["EXTNAME"] = h["EXTTYPE"] = "FLAGS"
    h["BUNIT"] = ""
    for bit, name in R7_BITS.items():
        h[f"MSKN{bit:04d}"] = name
        h[f"MSKM{bit:04d}"] = 1 << bit
    return h


def epsf_hdu(detector=5, oversampling=5, size=33, normalise=True):
    """An EPSF table (spherex-r7.md §2): 21x21 zones (11x41 on D3), one Gaussian per zone."""
    nx, ny = (11, 41) if detector == 3 else (21, 21)
    k = np.arange(nx * ny)
    binx, biny = k % nx, k // nx  # rows x-fast, row 0 lower left
    xc, yc = (binx + 0.5) * N / nx - 0.5, (biny + 0.5) * N / ny - 0.5
    g = np.arange(size) - size // 2
    sigma = oversampling * (0.55 + 0.001 * k)  # zone k: a little wider than zone k - 1
    arrays = np.exp(-(g[None, :, None] ** 2 + g[None, None, :] ** 2) / (2 * sigma[:, None, None] ** 2))
    if normalise:
        arrays /= arrays.sum(axis=(1, 2), keepdims=True)
    cols = [fits.Column("BINX", "J", array=binx), fits.Column("BINY", "J", array=biny),
            fits.Column("XCENTER", "E", array=xc), fits.Column("YCENTER", "E", array=yc),
            fits.Column("XWIDTH", "E", array=np.full(k.size, N / nx)),
            fits.Column("YWIDTH", "E", array=np.full(k.size, N / ny)),
            fits.Column("NSTAR", "J", array=100 + k % 50),
            fits.Column("NEFF_MEAN", "E", array=sigma),
            fits.Column("CWAVE", "E", array=np.full(k.size, 1.0 + detector * 0.5)),
            fits.Column("CBAND", "E", array=np.full(k.size, 0.03)),
            fits.Column("EPSF", f"{size * size}D", dim=f"({size},{size})", array=arrays)]
    hdu = fits.BinTableHDU.from_columns(cols, name="EPSF")
    h = hdu.header
    for key, value in (("DETECTOR", str(detector)), ("OVSMPX", oversampling),
                       ("OVSMPY", oversampling), ("MAXIT", 10), ("SMOOTH", "quartic"),
                       ("JUNKCLN", True), ("KEEPNAT", False), ("KEEPOS", True),
                       ("DETCOORD", "sky"), ("ORDERING", "x-fast then y"),
                       ("BINSRC", "uniform"), ("GEOMSRC", "ssdc"), ("NEFFSRC", "fit"),
                       ("WVMSRC", "spectral_wcs"), ("CWAVESRC", "spectral_wcs"),
                       ("CBANDSRC", "spectral_wcs")):
        h[key] = value
    h.add_history("Headers standardized by SSDC on 2026-07-10T00:00:00.000 (UTC)")
    h.add_history(f"Calibration source file: epsf_{detector}_20260710.fits")
    return hdu


def r7_wcs_wave_hdu(detector=5):
    """The real R7 D5 WCS-WAVE HDU; for another detector its real QR2 table with R7 cards."""
    if detector == 5:
        with fits.open(R7_WCS_WAVE) as hdul:
            return fits.BinTableHDU(data=hdul[1].data.copy(), header=hdul[1].header.copy())
    hdu = reference_table(detector).to_hdu()
    hdu.header["DETECTOR"] = str(detector)
    hdu.header["DETCOORD"] = "sky"
    return hdu


def r7_flags(rng, shape):
    """Realistic pipeline-7 FLAGS: mostly SOURCE or nothing, some other R7 bits (20, 25 too)."""
    flags = np.where(rng.random(shape) < 0.5, 1 << 21, 0).astype(np.int32)
    for bit, p in ((0, 0.01), (2, 0.01), (6, 0.005), (11, 0.002), (19, 0.01), (20, 0.01),
                   (25, 0.01), (28, 0.02)):
        flags |= np.where(rng.random(shape) < p, 1 << bit, 0).astype(np.int32)
    return flags


def flags_hdu(data, header, compressed):
    """FLAGS as astropy writes it: RICE_1 tiles of one row, or a plain int32 image."""
    if compressed:
        return fits.CompImageHDU(data, header=header, name="FLAGS", compression_type="RICE_1",
                                 tile_shape=(1, data.shape[1]))
    return fits.ImageHDU(data, header=header, name="FLAGS")


def make_r7_frame(detector=5, version="7.0.5", obsid="2026W30_2A_0049_1", seed=0,
                  compressed=True):
    """A full-frame pipeline-7 spectral image (7 HDUs, EPSF table) with random pixels."""
    rng = np.random.default_rng(seed)
    hdr = r7_image_header(detector, obsid)
    hdus = [fits.PrimaryHDU()]
    hdus[0].header["VERSION"] = version
    image = rng.normal(1.0, 0.1, (N, N)).astype(np.float32)
    variance = rng.uniform(0.01, 0.02, (N, N)).astype(np.float32)
    zodi = np.full((N, N), 0.5, np.float32)
    hdus.append(fits.ImageHDU(image, header=hdr, name="IMAGE"))
    hdus.append(flags_hdu(r7_flags(rng, (N, N)), r7_flags_header(hdr), compressed))
    for name, data, bunit in (("VARIANCE", variance, "MJy2 / sr2"), ("ZODI", zodi, "MJy / sr")):
        h = hdr.copy()
        h["EXTNAME"] = h["EXTTYPE"] = name
        h["BUNIT"] = bunit
        hdus.append(fits.ImageHDU(data, header=h, name=name))
    hdus.append(epsf_hdu(detector))
    hdus.append(r7_wcs_wave_hdu(detector))
    return fits.HDUList(hdus)


def make_cutout(frame, x0, y0, nx, ny, flags_compressed=None):
    """IRSA-style cutout of ``frame`` whose pixel (0, 0) is parent pixel (x0, y0).

    A compressed FLAGS stays compressed (tiles of one cutout row) unless ``flags_compressed``
    says otherwise; tables (PSF, EPSF, WCS-WAVE) are copied whole.
    """
    out = fits.HDUList([fits.PrimaryHDU(header=frame[0].header.copy())])
    for hdu in frame[1:]:
        if hdu.name in ("IMAGE", "FLAGS", "VARIANCE", "ZODI"):
            h = hdu.header.copy()
            for axis, shift in ((1, x0), (2, y0)):
                for suffix in ("", "A", "W"):
                    h[f"CRPIX{axis}{suffix}"] -= shift
            data = hdu.data[y0:y0 + ny, x0:x0 + nx].copy()
            compressed = isinstance(hdu, fits.CompImageHDU)
            if hdu.name == "FLAGS" and (compressed if flags_compressed is None
                                        else flags_compressed):
                out.append(flags_hdu(data, h, True))
            else:
                out.append(fits.ImageHDU(data, header=h, name=hdu.name))
        else:
            out.append(hdu.copy())
    return out


def to_bytes(hdul):
    import io

    buf = io.BytesIO()
    hdul.writeto(buf)
    return buf.getvalue()
