"""Header keyword blocks of synthetic frames, built from the real QR2 headers.

The IMAGE and FLAGS headers are the real ones (same keywords, order, comments, SIP, HISTORY)
with the exposure-dependent cards replaced: identity (``DETECTOR``, ``OBSID``, ``EXPIDN``),
survey and spacecraft state, the ``L2 N_*`` counters (exact counts of the frame's FLAGS), the
spatial WCS (re-pointed, rotated PC), the time block and the ``A``/``W`` reference pixels.
VARIANCE and ZODI carry ``EXTNAME``, ``BUNIT``, ``EXTTYPE`` and the same WCS blocks (119
cards, as in real files). PRIMARY has ``VERSION = '6.4+psffix1'``; PSF and WCS-WAVE depend on
the detector only.

Headers are kept as tuples of 80-character card images, so that a cutout, which differs from
its parent only in ``NAXISn``, ``CRPIXn``, ``CRPIXnA`` and ``CRPIXnW``, costs a few string
replacements.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from functools import cache, lru_cache

import numpy as np
from astropy.io import fits

from ...products.wavelength import reference_table
from . import pipeline7 as r7
from ._real import real_header
from .fitsbytes import card_image
from .geometry import (
    CRPIX,
    NPIX,
    PIXEL_SCALE_ARCSEC,
    boresight,
    ecliptic_lonlat,
    frame_geometry,
    local_basis,
    pc_matrix,
    unit_vector,
)
from .psf import DETECTOR_FWHM, psf_header
from .render import frame_state
from .spec import survey_target_id, survey_target_name

__all__ = ["frame_headers", "frame_cards", "cutout_cards", "KINDS", "KINDS_R7", "PIPELINE_VERSION",
           "iso_time", "survey_target_id"]

PIPELINE_VERSION = "6.4+psffix1"
KINDS = ("PRIMARY", "IMAGE", "FLAGS", "VARIANCE", "ZODI", "PSF", "WCS-WAVE")
#: HDUs of a pipeline-7 file: the PSF cube is replaced by the EPSF table.
KINDS_R7 = ("PRIMARY", "IMAGE", "FLAGS", "VARIANCE", "ZODI", "EPSF", "WCS-WAVE")
_IMAGE_KINDS = ("IMAGE", "FLAGS", "VARIANCE", "ZODI")
_MJD0 = datetime(1858, 11, 17)

#: ``L2 N_<name>`` counter -> FLAGS bit name (or count key) it counts.
_COUNTERS = {
    "NONLINEAR": "NONLINEAR", "PERSIST": "PERSIST", "HOT": "HOT", "COLD": "COLD",
    "TRAN_NB": "TRAN_NB", "PERS_NB": "PERS_NB", "SOURCE": "SOURCE", "GHOST": "GHOST",
    "GHOST_FPA": "GHOST_FPA", "GHOST_EXT": "GHOST_EXT", "BLOOM_NS": "BLOOM",
    "SNOW_NS": "SNOWBALL", "OUTLIER": "OUTLIER", "TRANSIENT": "TRANSIENT",
    "OVERFLOW": "OVERFLOW", "SUR_ERROR": "SUR_ERROR", "NONFUNC": "NONFUNC",
    "DICHROIC": "DICHROIC", "MISSING": "MISSING_DATA", "FULLSAMPLE": "FULLSAMPLE",
    "PHANMISS": "PHANMISS", "PHANTOM": "PHANTOM", "REFERENCE": "REFERENCE",
}


def iso_time(mjd):
    """ISO-8601 UTC string with milliseconds, as in ``DATE-OBS``."""
    return (_MJD0 + timedelta(milliseconds=round(float(mjd) * 86_400_000))).isoformat(
        timespec="milliseconds")


# --- templates -------------------------------------------------------------------------------


@cache
def _template(kind, detector=0, pipeline7=False):
    """``(card images, comments, positions)`` of the full-frame template of an image HDU.

    QR2 IMAGE headers carry the detector's calibration UUIDs; pipeline-7 IMAGE and FLAGS
    headers are the R7 templates of :mod:`.pipeline7`.
    """
    if pipeline7 and kind == "IMAGE":
        cards = [fits.Card.fromstring(c) for c in r7.image_template_cards(detector)]
    elif pipeline7 and kind == "FLAGS":
        cards = [fits.Card.fromstring(c) for c in r7.flags_template_cards()]
    elif kind == "IMAGE":
        cards = [c for c in real_header(kind).cards if c.keyword not in ("COMMENT", "HISTORY")]
        cards += [fits.Card.fromstring(c) for c in r7.qr2_history(detector)]
    elif kind == "FLAGS":
        cards = list(real_header(kind).cards)
    else:
        flags = list(real_header("FLAGS").cards)
        start = [c.keyword for c in flags].index("WCSAXES")
        extra = {
            "VARIANCE": [("EXTNAME", "VARIANCE", "extension name"),
                         ("BUNIT", "MJy2 / sr2", "Unit of pixel value"),
                         ("EXTTYPE", "VARIANCE", "Extension supports mask overlay")],
            "ZODI": [("EXTNAME", "ZODI", "extension name"),
                     ("BUNIT", "MJy / sr", "Unit of pixel value"),
                     ("EXTTYPE", "IMAGE", "Extension supports mask overlay")],
        }[kind]
        cards = (list(real_header("IMAGE").cards)[:7] + [fits.Card(*c) for c in extra]
                 + flags[start:])
    images = [c.image for c in cards]
    comments = {c.keyword: (c.comment, c.image.startswith("HIERARCH")) for c in cards}
    positions = {c.keyword: i for i, c in enumerate(cards) if c.keyword not in ("COMMENT", "HISTORY")}
    return tuple(images), comments, positions


def _fill(template, values, memo):
    """A template with ``values`` replaced; ``memo`` shares formatted cards."""
    images, comments, positions = template
    out = list(images)
    for key, value in values.items():
        i = positions.get(key)
        if i is not None:
            ck = (key, comments[key])
            if ck not in memo:
                memo[ck] = card_image(key, value, *comments[key])
            out[i] = memo[ck]
    return out


# --- exposure-dependent values ---------------------------------------------------------------


def _orbit(mjd):
    """Geocentric position (km) and velocity (km/s) on a 97.9° dawn-dusk circular orbit."""
    a, mu = 7020.0, 398600.4418
    n = np.sqrt(mu / a**3)
    sun_lon = np.deg2rad(280.460 + 0.9856474 * (mjd - 51544.5))
    raan, inc = sun_lon + np.pi / 2, np.deg2rad(97.9)
    p = np.array([np.cos(raan), np.sin(raan), 0.0])
    q = np.array([-np.cos(inc) * np.sin(raan), np.cos(inc) * np.cos(raan), np.sin(inc)])
    u = n * (mjd - 60796.0) * 86400.0
    return a * (np.cos(u) * p + np.sin(u) * q), a * n * (-np.sin(u) * p + np.cos(u) * q)


def _ground_track(pos, mjd):
    lat = np.rad2deg(np.arcsin(pos[2] / np.linalg.norm(pos)))
    gmst = 280.46061837 + 360.98564736629 * (mjd - 51544.5)
    lon = (np.rad2deg(np.arctan2(pos[1], pos[0])) - gmst) % 360.0
    return float(lat), float(lon)


def _ecliptic_pa(ra, dec, direction):
    """Position angle (deg, east of ecliptic north) of a sky direction at (ra, dec)."""
    b = unit_vector(ra, dec)
    eps = np.deg2rad(23.4392911)
    pole = np.array([0.0, -np.sin(eps), np.cos(eps)])
    east = np.cross(pole, b)
    east /= np.linalg.norm(east)
    north = np.cross(b, east)
    return float(np.rad2deg(np.arctan2(direction @ east, direction @ north)) % 360.0)


def _values(spec):
    st = frame_state(spec)
    g = frame_geometry(spec)
    det = int(spec.detector)
    counts = st.counts
    rng = np.random.default_rng(spec.seed)
    v = {"NAXIS1": NPIX, "NAXIS2": NPIX, "DETECTOR": det, "OBSID": spec.obsid,
         "EXPIDN": int(spec.expidn), "DATE": iso_time(spec.mjd_beg + 7.0)}

    # Survey planning: the focal-plane centre, its y-axis PA from ecliptic north.
    bra, bdec, bpa = boresight(spec)
    elon, elat = ecliptic_lonlat(bra, bdec)
    _, e, n = local_basis(bra, bdec)
    pc = pc_matrix(bpa)
    ydir = pc[0, 1] * e + pc[1, 1] * n  # detector +y on the sky at the boresight
    pos_mid, vel_mid = _orbit(spec.mjd_avg)
    lat, lon = _ground_track(pos_mid, spec.mjd_avg)
    saa = unit_vector(-50.0, -25.0)  # (lon, lat) of the South Atlantic Anomaly, as a vector
    gcd = float(np.rad2deg(np.arccos(np.clip(unit_vector(lon, lat) @ saa, -1, 1))))
    v.update({
        "SPS_TARGET": survey_target_id(spec), "SGT_LAT_MIDPT": round(lat, 6),
        "SGT_LON_MIDPT": round(lon, 6), "SGT_MIN_GCD2SAA": round(gcd, 6),
        "SPS_ELON": round(float(elon), 6), "SPS_ELAT": round(float(elat), 6),
        "SPS_EPA": round(_ecliptic_pa(bra, bdec, ydir / np.linalg.norm(ydir)), 6),
    })
    for tag, mjd in (("_START", spec.mjd_beg), ("", spec.mjd_avg), ("_END", spec.mjd_end)):
        pos, vel = _orbit(mjd)
        for axis, i in (("X", 0), ("Y", 1), ("Z", 2)):
            v[f"{axis}_SC{tag}"] = float(pos[i])
            v[f"V{axis}_SC{tag}"] = float(vel[i])

    v.update({"NBLMPIX": counts["BLOOM"], "NHALOPIX": counts["HALO"],
              "NSNOWPIX": counts["SNOWBALL"]})
    for name, key in _COUNTERS.items():
        v[f"L2 N_{name}"] = int(counts[key])
    v["PXSRCMSK"] = round(100.0 * counts["SOURCE"] / NPIX**2, 2)
    v["OMEGA_MEDIAN"] = PIXEL_SCALE_ARCSEC**2
    v["OMEGA_STDDEV"] = 0.0
    v.update({"DAXIS": round(float(rng.uniform(1.2, 1.5)), 6),
              "CONTRAST": round(float(rng.uniform(60, 90)), 1),
              "MATCH_NSTARS": int(rng.integers(2500, 4500)),
              "QS_NMATCH_VAR": round(float(rng.uniform(0.005, 0.02)), 6),
              "PSF_FWHM": DETECTOR_FWHM[det]})
    if spec.pipeline7:
        v.update({"SPS_TARGET": survey_target_name(v["SPS_TARGET"]),
                  "PSF_FWHM": r7.DETECTOR_FWHM_R7[det],
                  "L2 N_XTALK": int(counts["CROSSTALK"]), "L2 SATSTRKS_PXS": int(counts["STREAK"]),
                  "L2 SATSTRKS": int(counts["STREAKS"]), "L2 N_SNOWBALL": int(counts["SNOWBALL"]),
                  "L2 N_BLOOM": int(counts["BLOOM"]), "L2 N_HALO": int(counts["HALO"]),
                  "L2 N_SAT_HALO": 0})

    v.update({"CRPIX1": CRPIX, "CRPIX2": CRPIX,
              "PC1_1": float(g.pc[0, 0]), "PC1_2": float(g.pc[0, 1]),
              "PC2_1": float(g.pc[1, 0]), "PC2_2": float(g.pc[1, 1]),
              "CRVAL1": g.crval[0], "CRVAL2": g.crval[1], "LATPOLE": g.crval[1],
              "CRPIX1A": 1.0, "CRPIX2A": 1.0, "CRPIX1W": 1.0, "CRPIX2W": 1.0})
    for tag, mjd in (("OBS", spec.mjd_beg), ("BEG", spec.mjd_beg), ("AVG", spec.mjd_avg),
                     ("END", spec.mjd_end)):
        v[f"DATE-{tag}"] = iso_time(mjd)
        v[f"MJD-{tag}"] = float(mjd)
    return v


# --- per-detector constant HDUs --------------------------------------------------------------


@cache
def primary_cards(pipeline7=False):
    hdr = fits.PrimaryHDU().header
    hdr["VERSION"] = (r7.R7_VERSION if pipeline7 else PIPELINE_VERSION, "Pipeline version")
    return tuple(c.image for c in hdr.cards)


@cache
def psf_cards(detector):
    return tuple(c.image for c in psf_header(detector).cards)


@cache
def wave_hdu_bytes(detector):
    """The WCS-WAVE extension (header and data) of a detector, as bytes."""
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), reference_table(detector).to_hdu()]).writeto(buf)
    return buf.getvalue()[2880:]


# --- public ----------------------------------------------------------------------------------


def _spec_template(spec, kind):
    det = int(spec.detector) if kind == "IMAGE" else 0
    return _template(kind, det, spec.pipeline7)


@lru_cache(maxsize=512)
def frame_cards(spec):
    """``{kind: tuple of card images}`` of a full frame (image HDUs, PRIMARY, and PSF for
    pipeline < 7)."""
    values, memo = _values(spec), {}
    out = {kind: tuple(_fill(_spec_template(spec, kind), values, memo)) for kind in _IMAGE_KINDS}
    out["PRIMARY"] = primary_cards(spec.pipeline7)
    if not spec.pipeline7:
        out["PSF"] = psf_cards(int(spec.detector))
    return out


def cutout_cards(spec, kind, x0, y0, nx, ny):
    """Card images of an image HDU of a cutout: the parent's, with NAXIS and CRPIX shifted."""
    cards = list(frame_cards(spec)[kind])
    _, comments, positions = _spec_template(spec, kind)
    for key, value in (("NAXIS1", nx), ("NAXIS2", ny),
                       ("CRPIX1", CRPIX - x0), ("CRPIX2", CRPIX - y0),
                       ("CRPIX1A", 1.0 - x0), ("CRPIX2A", 1.0 - y0),
                       ("CRPIX1W", 1.0 - x0), ("CRPIX2W", 1.0 - y0)):
        cards[positions[key]] = card_image(key, value, *comments[key])
    return cards


def frame_headers(spec):
    """``{kind: fits.Header}`` of a full frame for PRIMARY, IMAGE, FLAGS, VARIANCE, ZODI, PSF
    (EPSF for pipeline 7) and WCS-WAVE; FLAGS as the image header (before compression)."""
    cards = frame_cards(spec)
    det = int(spec.detector)
    kinds = KINDS_R7 if spec.pipeline7 else KINDS
    out = {kind: fits.Header.fromstring("".join(cards[kind])) for kind in kinds if kind in cards}
    if spec.pipeline7:
        out["EPSF"] = r7.epsf_table(det).header.copy()
        out["WCS-WAVE"] = fits.Header.fromstring(r7.wave_hdu_bytes_r7(det)[:2880].decode())
    else:
        out["WCS-WAVE"] = fits.Header.fromstring(wave_hdu_bytes(det)[:2880].decode())
    return {kind: out[kind] for kind in kinds}
