"""The pipeline-7 layout (QR3, and QR2 reprocessed) of synthetic frames.

What differs from the QR2 layout (``docs/spherex-r7.md`` of the project's reference notes):
``VERSION = '7.0.5'``; the keyword set of a real QR3 D5 header (``data/qr3_image_header.json``);
``MSKN``/``MSKM`` flag cards and the R7 bits in a RICE_1 tile-compressed FLAGS image; an
``EPSF`` table instead of the PSF cube; the real R7 WCS-WAVE (``data/qr3_d5_wcs_wave.fits``);
the R7 PSF FWHM and absolute gain (:data:`R7_GAIN`). Calibration UUIDs derive from
(generation, type, detector), so WCS-WAVE and EPSF are identical wherever their UUIDs are.
The full list is in ``docs/archive.rst`` (pipeline-7 files, and "How the synthetic data
are made").
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
import zlib
from functools import cache
from importlib import resources

import numpy as np
from astropy.io import fits
from scipy.special import erf

from ...products.wavelength import WaveTable, reference_table
from .geometry import NPIX
from .spec import survey_target_name  # noqa: F401  (re-exported for headers)

__all__ = ["R7_VERSION", "R7_BITS", "R7_GAIN", "DETECTOR_FWHM_R7", "EPSF_OVERSAMP", "EPSF_SIZE",
           "epsf_grid", "epsf_zone_fwhm", "epsf_zone_index", "epsf_table", "epsf_hdu_bytes",
           "wave_hdu_bytes_r7", "wave_table_r7", "image_template_cards", "flags_template_cards",
           "calib_uuid", "compressed_flags_bytes", "pad_heap"]

R7_VERSION = "7.0.5"
#: R7 flag bits seen in real cutouts (and FULLSAMPLE, 12, counted in the IMAGE header).
R7_BITS = {
    "TRANSIENT": 0, "OVERFLOW": 1, "SUR_ERROR": 2, "NONFUNC": 6, "DICHROIC": 7,
    "MISSING_DATA": 9, "HOT": 10, "COLD": 11, "FULLSAMPLE": 12, "PHANMISS": 14,
    "NONLINEAR": 15, "PERSIST": 17, "OUTLIER": 19, "CROSSTALK": 20, "SOURCE": 21, "GHOST": 22,
    "GHOST_FPA": 23, "GHOST_EXT": 24, "STREAK": 25, "BLOOM": 26, "SNOWBALL": 27, "HALO": 28,
}
#: Median PSF FWHM (arcsec) of R7 headers: D1, D4, D5, D6 real; D2, D3 interpolated.
DETECTOR_FWHM_R7 = {1: 7.53, 2: 7.80, 3: 8.10, 4: 8.67, 5: 8.634423950037519, 6: 9.04}
#: R7 image = QR2 calibration x gain (the medians of IRSA's l3_flux_corrections: D1 0.970,
#: D5 1.007; the other detectors in between).
R7_GAIN = {1: 0.970, 2: 0.985, 3: 0.995, 4: 1.002, 5: 1.007, 6: 1.004}
EPSF_OVERSAMP = 5
EPSF_SIZE = 33
_EPSF_GRID = {3: (11, 41)}
_SIGMA_PER_FWHM = 1.0 / np.sqrt(8.0 * np.log(2.0))
_PIXEL_ARCSEC = 6.153
_STANDARDIZED = "Headers standardized by SSDC on 2026-06-26T22:53:33.939 (UTC)"


def _data(name):
    return resources.files("glue_spherex.data").joinpath(name)


def calib_uuid(kind, detector, generation="r7"):
    """The UUID of a calibration product (a pure function of generation, type, detector)."""
    digest = hashlib.sha256(f"{generation}/{kind}/D{int(detector)}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


# --- EPSF ------------------------------------------------------------------------------------


def epsf_grid(detector):
    """``(nx, ny)`` zones of the EPSF table: 21x21, 11x41 on D3."""
    return _EPSF_GRID.get(int(detector), (21, 21))


def _centres(n):
    """0-based zone centres along one axis: ``(i + 0.5) * 2040 / n - 0.5``."""
    return (np.arange(n) + 0.5) * NPIX / n - 0.5


@cache
def epsf_zone_fwhm(detector):
    """``(ny, nx)`` FWHM (arcsec) of the EPSF zones: up to 4 % broader towards the corners,
    median :data:`DETECTOR_FWHM_R7`."""
    nx, ny = epsf_grid(detector)
    cx, cy = _centres(nx) - (NPIX - 1) / 2, _centres(ny) - (NPIX - 1) / 2
    shape = 1.0 + 0.04 * (cx[None, :] ** 2 + cy[:, None] ** 2) / (2 * (NPIX / 2) ** 2)
    out = DETECTOR_FWHM_R7[int(detector)] * shape / np.median(shape)
    out.setflags(write=False)
    return out


def epsf_zone_index(detector, x, y):
    """Zone ``(ix, iy)`` whose centre is nearest to 0-based pixel positions (x, y)."""
    nx, ny = epsf_grid(detector)
    ix = np.clip(np.floor((np.asarray(x) + 0.5) * nx / NPIX), 0, nx - 1).astype(int)
    iy = np.clip(np.floor((np.asarray(y) + 0.5) * ny / NPIX), 0, ny - 1).astype(int)
    return ix, iy


def _epsf_profiles(sigma_px):
    """1-D effective PSF (a Gaussian integrated over one native pixel) at the oversampled
    offsets ``(i - 16) / 5`` native pixels, for each sigma (native pixels)."""
    d = (np.arange(EPSF_SIZE) - EPSF_SIZE // 2) / EPSF_OVERSAMP
    s = np.sqrt(2.0) * np.asarray(sigma_px)[:, None]
    return 0.5 * (erf((d + 0.5) / s) - erf((d - 0.5) / s))


@cache
def epsf_table(detector):
    """The ``EPSF`` BinTableHDU of a detector (columns and cards as in R7 files)."""
    det = int(detector)
    nx, ny = epsf_grid(det)
    binx, biny = np.meshgrid(np.arange(nx), np.arange(ny))       # x fast
    binx, biny = binx.ravel(), biny.ravel()
    fwhm = epsf_zone_fwhm(det).ravel()
    sigma = fwhm * _SIGMA_PER_FWHM / _PIXEL_ARCSEC
    prof = _epsf_profiles(sigma)
    epsf = prof[:, :, None] * prof[:, None, :]
    epsf /= epsf.sum(axis=(1, 2), keepdims=True)
    k, s2 = np.arange(-8, 9)[None, :], np.sqrt(2.0) * sigma[:, None]
    native = 0.5 * (erf((k + 0.5) / s2) - erf((k - 0.5) / s2))   # 1-D, native pixels
    neff = 1.0 / (native**2).sum(axis=1) ** 2
    xc, yc = _centres(nx)[binx], _centres(ny)[biny]
    wl, bw = wave_table_r7(det).lookup(xc + 1.0, yc + 1.0)
    nstar = 40 + np.array([zlib.crc32(f"epsf/{det}/{k}".encode()) % 200 for k in range(len(binx))])
    cols = [
        fits.Column("BINX", "J", array=binx.astype(np.int32)),
        fits.Column("BINY", "J", array=biny.astype(np.int32)),
        fits.Column("XCENTER", "E", array=xc.astype(np.float32)),
        fits.Column("YCENTER", "E", array=yc.astype(np.float32)),
        fits.Column("XWIDTH", "E", array=np.full(len(binx), NPIX / nx, np.float32)),
        fits.Column("YWIDTH", "E", array=np.full(len(binx), NPIX / ny, np.float32)),
        fits.Column("NSTAR", "J", array=nstar.astype(np.int32)),
        fits.Column("NEFF_MEAN", "E", array=neff.astype(np.float32)),
        fits.Column("CWAVE", "E", array=np.asarray(wl, np.float32)),
        fits.Column("CBAND", "E", array=np.asarray(bw, np.float32)),
        fits.Column("EPSF", f"{EPSF_SIZE * EPSF_SIZE}D", dim=f"({EPSF_SIZE},{EPSF_SIZE})",
                    array=epsf),
    ]
    hdu = fits.BinTableHDU.from_columns(cols, name="EPSF")
    h = hdu.header
    for key, value, comment in (
        ("DETECTOR", str(det), "Detector number"),
        ("OVSMPX", EPSF_OVERSAMP, "Oversampling factor in x"),
        ("OVSMPY", EPSF_OVERSAMP, "Oversampling factor in y"),
        ("MAXIT", 20, "Maximum number of ePSF iterations"),
        ("SMOOTH", "quartic", "Smoothing kernel"),
        ("JUNKCLN", True, "Junk sources cleaned"),
        ("KEEPNAT", False, "Native-resolution ePSF kept"),
        ("KEEPOS", True, "Oversampled ePSF kept"),
        ("DETCOORD", "sky", "MWIR pixels flipped on X to match SWIR view"),
        ("ORDERING", "x-fast then y", "Row order of the zones"),
        ("BINSRC", "uniform", "Source of the zone binning"),
        ("GEOMSRC", f"epsf_{det}_20260710.fits", "Source of the zone geometry"),
        ("NEFFSRC", "epsf", "Source of NEFF_MEAN"),
        ("WVMSRC", "spectral_wcs", "Source of the wavelength map"),
        ("CWAVESRC", "spectral_wcs", "Source of CWAVE"),
        ("CBANDSRC", "spectral_wcs", "Source of CBAND"),
    ):
        h[key] = (value, comment)
    h.add_history(_STANDARDIZED)
    h.add_history(f"Calibration source file: epsf_{det}_20260710.fits")
    return hdu


@cache
def epsf_hdu_bytes(detector):
    """The EPSF extension (header and data) as FITS bytes (about 3.9 MB)."""
    return _extension_bytes(epsf_table(detector))


def _extension_bytes(hdu):
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
    return buf.getvalue()[2880:]


# --- WCS-WAVE --------------------------------------------------------------------------------


@cache
def wave_hdu_bytes_r7(detector):
    """The R7 WCS-WAVE extension of a detector as bytes: D5 is the real HDU, byte for byte;
    the others carry the same cards around the detector's QR3 table."""
    det = int(detector)
    if det == 5:
        return _data("qr3_d5_wcs_wave.fits").read_bytes()[2880:]
    hdu = reference_table(det, "qr3").to_hdu()
    hdu.header["DETECTOR"] = str(det)
    hdu.header["DETCOORD"] = "sky"
    hdu.header.add_history(_STANDARDIZED)
    hdu.header.add_history(f"Calibration source file: spectral_wcs_{det}_v3.0.fits")
    return _extension_bytes(hdu)


@cache
def wave_table_r7(detector):
    """The :class:`~glue_spherex.products.wavelength.WaveTable` in :func:`wave_hdu_bytes_r7`."""
    raw = wave_hdu_bytes_r7(detector)
    with fits.open(io.BytesIO(b"".join([fits.PrimaryHDU().header.tostring().encode(), raw]))) as h:
        return WaveTable.from_hdu(h["WCS-WAVE"])


# --- header templates ------------------------------------------------------------------------

#: Comments of the keywords new in R7 (the real header was kept without comments).
_NEW_COMMENTS = {
    "SNWSTRK": "number of snowball streaks", "NBLMSRCS": "number of blooming sources",
    "SNW7-5CT": "snowballs of 7x5 pixels", "SNW3-1CT": "snowballs of 3x1 pixels",
    "SNW2-5CT": "snowballs of 2x5 pixels", "SNW6-5CT": "snowballs of 6x5 pixels",
    "NSNOWSRC": "number of snowball sources", "NBLM5SCS": "blooming sources over 5 pixels",
    "L2 N_XTALK": "number of flagged crosstalk pixels",
    "L2 SATSTRKS_PXS": "number of flagged satellite streak pixels",
    "L2 SATSTRKS": "number of satellite streaks",
    "L2 N_SNOWBALL": "number of flagged snowball pixels",
    "L2 N_BLOOM": "number of flagged bloom pixels", "L2 N_HALO": "number of flagged halo pixels",
    "L2 N_SAT_HALO": "number of flagged satellite halo pixels",
    "AURORA_CORR": "aurora correction applied [MJy/sr]",
    "SHUTTLE_GLOW_CORR": "shuttle glow correction applied [MJy/sr]",
    "HE_AIRGLOW_CONT": "helium airglow contamination", "SHUTTLE_GLOW_CONT": "shuttle glow "
    "contamination", "AURORA_CONT": "aurora contamination",
}
_FLAG_COMMENTS = {"CROSSTALK": "Pixel affected by electronic crosstalk",
                  "STREAK": "Pixel part of a satellite streak"}
#: R7 calibration types replacing QR2 ones in HISTORY (``None``: dropped).
_R7_CALIBS = {"average_psf": "epsf", "nonfunc": "nonfunc_v2"}
_R7_EXTRA_CALIBS = ("zodi_scaling_v2", "xtalk_class2")
_R7_D1_CALIBS = ("aurora_template", "he_template", "xtalk_class1")


def _qr2_cards(kind):
    from ._real import real_header

    return list(real_header(kind).cards)


@cache
def _real_r7_values():
    return json.loads(_data("qr3_image_header.json").read_text())["header"]


def _calib_history(cards, detector, generation):
    """The QR2 COMMENT/HISTORY cards with this detector's calibration UUIDs (and, for R7, the
    R7 calibration types)."""
    out = []
    for card in cards:
        text = str(card.value)
        if card.keyword == "HISTORY" and text.startswith("[CALIB] "):
            kind = text.split()[1]
            if generation == "r7":
                kind = _R7_CALIBS.get(kind, kind)
            if kind == "epsf" and generation == "r7":
                extra = _R7_EXTRA_CALIBS + (_R7_D1_CALIBS if int(detector) == 1 else ())
                out += [fits.Card("HISTORY", f"[CALIB] {k} {calib_uuid(k, detector)}")
                        for k in extra]
            if generation == "qr2" and (kind != "spectral_wcs" or int(detector) == 3):
                out.append(card)          # the real UUIDs of the D3 template
                continue
            card = fits.Card("HISTORY", f"[CALIB] {kind} {calib_uuid(kind, detector, generation)}")
        out.append(card)
    return out


@cache
def qr2_history(detector):
    """COMMENT/HISTORY card images of a QR2 IMAGE header of ``detector``: the real D3 lines,
    with a ``spectral_wcs`` UUID of the detector's own (the WCS-WAVE table differs between
    detectors); D3 keeps the real one, so its bytes are those of the template."""
    cards = [c for c in _qr2_cards("IMAGE") if c.keyword in ("COMMENT", "HISTORY")]
    return tuple(c.image for c in _calib_history(cards, detector, "qr2"))


@cache
def image_template_cards(detector):
    """Card images of the R7 IMAGE template of a detector: the real QR3 keyword set in its
    order, QR2 comments, COMMENT and HISTORY lines with the R7 calibrations."""
    qr2 = {c.keyword: c for c in _qr2_cards("IMAGE") if c.keyword not in ("COMMENT", "HISTORY")}
    cards = []
    for key, value in _real_r7_values().items():
        old = qr2.get(key)
        comment = old.comment if old is not None else _NEW_COMMENTS.get(key, "")
        hierarch = old.image.startswith("HIERARCH") if old is not None else None
        cards.append(_card(key, value, comment, hierarch))
    history = [c for c in _qr2_cards("IMAGE") if c.keyword in ("COMMENT", "HISTORY")]
    return tuple(cards) + tuple(c.image for c in _calib_history(history, detector, "r7"))


def _card(key, value, comment, hierarch):
    from .fitsbytes import card_image

    if key == "XTENSION":
        return fits.Card(key, value, comment or "Image extension").image
    return card_image(key, value, comment, hierarch)


@cache
def flags_template_cards():
    """Card images of the R7 FLAGS template: the QR2 FLAGS header with the ``MP_*`` cards
    replaced by ``MSKNnnnn``/``MSKMnnnn`` pairs of :data:`R7_BITS` (and the R7 counters)."""
    from .fitsbytes import card_image

    old = _qr2_cards("FLAGS")
    comments = {c.keyword[3:]: c.comment for c in old if c.keyword.startswith("MP_")}
    comments.update(_FLAG_COMMENTS)
    out, done = [], False
    for c in old:
        if c.keyword.startswith("MP_"):
            if not done:
                for name, bit in sorted(R7_BITS.items(), key=lambda kv: kv[1]):
                    out.append(card_image(f"MSKN{bit:04d}", name, comments.get(name, "")))
                    out.append(card_image(f"MSKM{bit:04d}", 1 << bit, f"Mask of bit {bit}"))
                done = True
            continue
        out.append(c.image)
        if c.keyword == "L2 N_PHANMISS":
            for key in ("L2 N_XTALK", "L2 SATSTRKS_PXS", "L2 N_SNOWBALL", "L2 N_BLOOM",
                        "L2 N_HALO"):
                out.append(card_image(key, 0, _NEW_COMMENTS[key]))
    return tuple(out)


# --- FLAGS, compressed -----------------------------------------------------------------------


def pad_heap(hdu, extra):
    """A BINTABLE extension's bytes with ``extra`` (a multiple of 2880) unused bytes added at
    the end of its heap (``PCOUNT`` raised): the full file then has the size IRSA reports,
    whose real FLAGS heaps (about 12 MB) are larger than those of the synthetic flags."""
    from .fitsbytes import BLOCK, card_image

    if extra % BLOCK:
        raise ValueError("the heap grows by whole FITS blocks")
    if extra == 0:
        return hdu
    text = hdu[:hdu.index(b"END" + b" " * 77)].decode("ascii")
    cards = [text[i:i + 80] for i in range(0, len(text), 80)]
    values = {c[:8].strip(): c for c in cards}
    naxis1, naxis2 = (int(values[k][10:30]) for k in ("NAXIS1", "NAXIS2"))
    head = -(-(len(text) + 80) // BLOCK) * BLOCK
    data_len = len(hdu) - head
    pcount = data_len + extra - naxis1 * naxis2
    i = next(i for i, c in enumerate(cards) if c.startswith("PCOUNT  ="))
    comment = cards[i].split(" / ", 1)[1].strip() if " / " in cards[i] else ""
    cards[i] = card_image("PCOUNT", pcount, comment)
    return "".join(cards).encode("ascii") + hdu[len(text):] + b"\0" * extra


def compressed_flags_bytes(cards, flags):
    """The FLAGS extension as astropy writes ``CompImageHDU(flags, header,
    compression_type='RICE_1', tile_shape=(1, nx))``: a BINTABLE with one tile per row."""
    header = fits.Header.fromstring("".join(cards))
    hdu = fits.CompImageHDU(np.asarray(flags, np.int32), header=header,
                            compression_type="RICE_1", tile_shape=(1, flags.shape[1]))
    return _extension_bytes(hdu)
