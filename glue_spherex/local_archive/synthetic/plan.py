"""The observation plan: which synthetic exposures the local archive holds.

One survey year (from MJD 60796 = 2025-05-01) of visits around the four targets of
:data:`.sky.TARGETS` in ``spherex_qr2`` and ``spherex_qr2_deep``, each exposure yielding all
six detectors, the target walking across an array from visit to visit so it is seen at
wavelengths spanning each band; plus the pipeline-7 products over the same sky (QR3's shorter
season, the reprocessing of one QR2 exposure in five, ``l2b_retry`` side runs), so one
observation can exist in several processing versions. Everything is seeded and cached. The
plan in detail (passes, slews, obs ids, processing tags): ``docs/archive.rst``, "How the
synthetic data are made".
"""

from __future__ import annotations

import zlib
from dataclasses import replace
from datetime import datetime, timedelta
from functools import lru_cache

import numpy as np

from ._real import real_sip
from .geometry import ARRAY_SPACING_DEG, CRPIX, REAL_PC, ecliptic_lonlat, radec, unit_vector
from .sky import TARGETS
from .spec import FrameSpec

__all__ = ["observation_plan", "plan_by_key", "SURVEY_START_MJD", "COLLECTIONS", "PLAN_PARTS"]

SURVEY_START_MJD = 60796.0  # 2025-05-01
COLLECTIONS = {"M101": "spherex_qr2", "M31": "spherex_qr2", "RA0": "spherex_qr2",
               "NEP": "spherex_qr2_deep"}
#: The QR3 season (MJD 61161 = 2026-05-01 to 61272 = 2026-08-20) and its processing dates.
QR3_WINDOW = (61161.0, 61272.0)
_QR3_TAG_DAYS = (222, 223, 224, 240)
_QR3_RETRY_DAY = 243
REPROCESSING_TAG = "l2b-v26-2026-196"
REPROCESSING_RETRY_TAG = "l2b_retry-v26-2026-203"
#: What :func:`observation_plan` can return.
PLAN_PARTS = ("qr2", "reprocessed", "qr3", "all")
EXPOSURE_SPACING_S = 120.0
_SLOT_MIN = 9.0  # minutes per large slew
_HALF_WEEK = 3.5
_SLOTS = int(_HALF_WEEK * 24 * 60 / _SLOT_MIN)
_MJD0 = datetime(1858, 11, 17)
_OBLIQUITY = np.deg2rad(23.4392911)


# --- vectorised pointing geometry ------------------------------------------------------------


def _normalize(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _basis(c):
    east = _normalize(np.stack([-c[:, 1], c[:, 0], np.zeros(len(c))], axis=-1))
    return east, np.cross(c, east)


def _rot(pa):
    """Rows of ``Rot(pa) @ REAL_PC`` applied to pixel offsets: (N, 2, 2)."""
    c, s = np.cos(np.deg2rad(pa)), np.sin(np.deg2rad(pa))
    rot = np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], -2)
    return rot @ REAL_PC


def _pixel_direction(c, pa, x, y):
    """Sky unit vectors of 0-based pixels (x, y) for pointings ``c`` (N, 3) and rolls ``pa``."""
    a, b, _, _ = real_sip()
    u, v = x + 1.0 - CRPIX, y + 1.0 - CRPIX
    pu = np.stack([np.ones_like(u), u, u * u, u**3])
    pv = np.stack([np.ones_like(v), v, v * v, v**3])
    uf = u + np.einsum("pn,pq,qn->n", pu, a, pv)
    vf = v + np.einsum("pn,pq,qn->n", pu, b, pv)
    xi_eta = np.deg2rad(_rot(pa) @ np.stack([uf, vf], -1)[..., None])[..., 0]
    east, north = _basis(c)
    return _normalize(c + xi_eta[:, :1] * east + xi_eta[:, 1:] * north)


def _rotate_towards(c, s, t):
    """Apply to ``c`` the rotations that take ``s`` onto ``t`` (row-wise, Rodrigues)."""
    axis = np.cross(s, t)
    sin = np.linalg.norm(axis, axis=-1, keepdims=True)
    cos = np.sum(s * t, axis=-1, keepdims=True)
    k = axis / np.where(sin > 0, sin, 1.0)
    return (c * cos + np.cross(k, c) * sin + k * np.sum(k * c, -1, keepdims=True) * (1 - cos))


def _aim(target, pa, x, y):
    """Pointings (N, 3) that put ``target`` (N, 3) on 0-based pixel (x, y) at roll ``pa``."""
    c = target.copy()
    for _ in range(8):
        c = _normalize(_rotate_towards(c, _pixel_direction(c, pa, x, y), target))
    return c


def _along_x(c, pa, delta_deg):
    """Pointing and roll of the array ``delta_deg`` along +x (vectorised move_along_x)."""
    east, north = _basis(c)
    pc = _rot(pa)
    dx = _normalize(pc[:, 0, :1] * east + pc[:, 1, :1] * north)
    d = np.deg2rad(np.asarray(delta_deg, float))[..., None]
    c2 = np.cos(d) * c + np.sin(d) * dx
    dx2 = -np.sin(d) * c + np.cos(d) * dx
    e2, n2 = _basis(c2)
    theta0 = np.arctan2(REAL_PC[0, 0], REAL_PC[1, 0])
    pa2 = np.rad2deg(np.arctan2(np.sum(dx2 * e2, -1), np.sum(dx2 * n2, -1)) - theta0)
    return c2, (pa2 + 180.0) % 360.0 - 180.0


def _ecliptic_north_pa(ra, dec):
    """Position angle (deg, east of north) of ecliptic north at (ra, dec)."""
    b = unit_vector(ra, dec)
    pole = np.array([0.0, -np.sin(_OBLIQUITY), np.cos(_OBLIQUITY)])
    east, north = _basis(b[None, :])
    return float(np.rad2deg(np.arctan2(east[0] @ pole, north[0] @ pole)))


# --- scheduling ------------------------------------------------------------------------------


def _sun_longitude(mjd):
    return (280.460 + 0.9856474 * (mjd - 51544.5)) % 360.0


def _period_start(mjd):
    """Start (MJD) and name of the half-week planning period containing ``mjd``."""
    t = _MJD0 + timedelta(days=float(mjd))
    year, week, weekday = t.isocalendar()
    monday = datetime(t.year, t.month, t.day) - timedelta(days=weekday - 1)
    start = (monday - _MJD0) / timedelta(days=1)
    half = 1 if mjd - start < _HALF_WEEK else 2
    if half == 2:
        start += _HALF_WEEK
    return start, f"{year}W{week:02d}_{half}A"


class _Slots:
    """Large-slew slots (9 min each) of the planning periods, handed out once."""

    def __init__(self):
        self.used = set()

    def take(self, mjd, n_exposures):
        """Start time, planning period and slew number of a visit starting near ``mjd``."""
        while True:
            start, period = _period_start(mjd)
            slot = int((mjd - start) * 24 * 60 / _SLOT_MIN)  # 0-based
            last_ok = _SLOTS - 1 - int(np.ceil(n_exposures * EXPOSURE_SPACING_S / 60 / _SLOT_MIN))
            if slot > last_ok:
                mjd = start + _HALF_WEEK + 1e-6  # first slot of the next period
                continue
            if (period, slot) not in self.used:
                self.used.add((period, slot))
                return start + (slot * _SLOT_MIN + 0.5) / (24 * 60), period, slot + 1
            mjd = start + (slot + 1) * _SLOT_MIN / (24 * 60) + 1e-6


def _visits(name, rng, qr3=False):
    """Visit list of a target: (centre mjd, array index, y walk, x, roll, n_small)."""
    ra, dec = TARGETS[name]
    deep = COLLECTIONS[name].endswith("_deep")
    n_per_array = 46 if deep else 24  # visits per array over the year
    if qr3:
        n_per_array //= 3
    elon = float(ecliptic_lonlat(ra, dec)[0])
    visits = []
    for array in range(3):
        # y positions stratified over the array's visits so the target crosses the band
        ybase = 20 + (rng.permutation(n_per_array) + rng.uniform(0, 1, n_per_array)) \
            * (2000 / n_per_array)
        for j in range(n_per_array):
            n_small = 4 if rng.uniform() < 0.75 else 3
            if qr3:
                mjd = rng.uniform(*QR3_WINDOW)
                roll_ref = None if deep else 180.0 * (j % 2)
            elif deep:
                mjd = SURVEY_START_MJD + 2 + rng.uniform(0, 360)
                roll_ref = None  # roll turns with the season
            else:
                pass_no = j % 2
                target_sun = (elon + (90.0 if pass_no == 0 else -90.0)) % 360.0
                t0 = SURVEY_START_MJD + 12
                centre = t0 + ((target_sun - _sun_longitude(t0)) % 360.0) / 0.9856474
                mjd = centre + rng.uniform(-10.0, 10.0)
                roll_ref = 180.0 * pass_no
            step = rng.choice([-1, 1]) * rng.uniform(15, 35)
            visits.append(dict(mjd=mjd, array=array, y=ybase[j], step=step,
                               x=rng.uniform(15, 2025), epa=roll_ref, n_small=n_small))
    return visits


@lru_cache(maxsize=2)
def _build(qr3=False):
    slots = _Slots()
    theta_y0 = np.rad2deg(np.arctan2(REAL_PC[0, 1], REAL_PC[1, 1]))  # PA of +y at pa = 0
    rows = []  # per exposure: target vec, array, x, y, pa, mjd, obsid, collection
    for name in TARGETS:
        rng = np.random.default_rng(zlib.crc32(f"plan/{'qr3/' if qr3 else ''}{name}".encode()))
        ecliptic_north_pa = _ecliptic_north_pa(*TARGETS[name])
        visits = sorted(_visits(name, rng, qr3), key=lambda v: v["mjd"])
        for v in visits:
            start, period, slew = slots.take(v["mjd"], v["n_small"])
            if v["epa"] is None:
                pa0 = 360.0 * (start - SURVEY_START_MJD) / 365.25
            else:
                pa0 = ecliptic_north_pa + v["epa"] - theta_y0
            pa0 += rng.normal(0.0, 2.0)
            for k in range(v["n_small"]):
                y = min(max(float(v["y"] + k * v["step"]), 8.0), 2031.0)
                x = min(max(float(v["x"] + rng.normal(0, 2.0)), 8.0), 2031.0)
                rows.append((name, v["array"], x, y, (pa0 + rng.normal(0, 0.05) + 180) % 360 - 180,
                             start + k * EXPOSURE_SPACING_S / 86400.0,
                             f"{period}_{slew:04d}_{k + 1}"))
    names = [r[0] for r in rows]
    array = np.array([r[1] for r in rows])
    x = np.array([r[2] for r in rows])
    y = np.array([r[3] for r in rows])
    pa = np.array([r[4] for r in rows])
    target = unit_vector(np.array([TARGETS[n][0] for n in names]),
                         np.array([TARGETS[n][1] for n in names]))
    covering = _aim(target, pa, x, y)
    pointing = []  # per array index: ra, dec and pa lists over the exposures
    for a in range(3):
        c2, pa2 = _along_x(covering, pa, (a - array) * ARRAY_SPACING_DEG)
        ra_a, dec_a = radec(c2)
        pointing.append((ra_a.tolist(), dec_a.tolist(), np.where(array == a, pa, pa2).tolist()))
    specs = []
    for i, (name, _, _, _, _, mjd, obsid) in enumerate(rows):
        mjd, collection = round(float(mjd), 9), COLLECTIONS[name]
        tag = ""
        if qr3:
            collection = collection.replace("qr2", "qr3")
            tag = _qr3_tag(mjd)
        for det in range(1, 7):
            r, d, p = pointing[(det - 1) % 3]
            specs.append(FrameSpec(obsid, det, round(r[i], 10) % 360.0, round(d[i], 10),
                                   round(p[i], 6), mjd, collection, tag))
    specs.sort(key=lambda s: (s.mjd_beg, s.detector))
    if qr3:
        specs += [replace(s, tag=f"l2b_retry-v27-2026-{_QR3_RETRY_DAY}") for s in specs
                  if _hash(f"retry/{s.obsid}/D{s.detector}") % 10 == 0]
        specs.sort(key=lambda s: (s.mjd_beg, s.detector, s.tag))
    return tuple(specs)


def _hash(text):
    return zlib.crc32(text.encode())


def _qr3_tag(mjd):
    """``l2b-v27-2026-DDD``: the first processing date at least 10 days after the exposure."""
    day = (_MJD0 + timedelta(days=float(mjd))).timetuple().tm_yday
    return f"l2b-v27-2026-{next((d for d in _QR3_TAG_DAYS if d >= day + 10), _QR3_TAG_DAYS[-1])}"


@lru_cache(maxsize=1)
def _reprocessed():
    """Pipeline-7 reprocessings of QR2 exposures (one in five) and their side runs."""
    out = []
    for s in _build():
        if _hash(f"reprocess/{s.obsid}") % 5 == 0:
            out.append(replace(s, tag=REPROCESSING_TAG))
            if _hash(f"retry/{s.obsid}/D{s.detector}") % 3 == 0:
                out.append(replace(s, tag=REPROCESSING_RETRY_TAG))
    return tuple(out)


def observation_plan(part="qr2"):
    """Frames of the local archive as FrameSpecs, each part sorted by time and detector (cached).

    ``part``: ``'qr2'`` (the QR2 processing, pipeline < 7), ``'reprocessed'`` (pipeline-7
    reprocessings of QR2 exposures), ``'qr3'`` or ``'all'`` (the three, in that order).
    """
    if part == "qr2":
        return list(_build())
    if part == "reprocessed":
        return list(_reprocessed())
    if part == "qr3":
        return list(_build(True))
    if part == "all":
        return list(_build()) + list(_reprocessed()) + list(_build(True))
    raise ValueError(f"part must be one of {', '.join(PLAN_PARTS)}, got {part!r}")


@lru_cache(maxsize=1)
def _by_key():
    return {s.key: s for s in observation_plan("all")}


def plan_by_key():
    """``{key: FrameSpec}`` for the whole plan (key = path below ``/ibe/data/spherex/``)."""
    return dict(_by_key())
