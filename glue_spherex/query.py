"""Find SPHEREx spectral images covering a target, astroquery style.

>>> from glue_spherex.query import Spherex                      # doctest: +SKIP
>>> table = Spherex.query_region('M101', size=0.1 * u.deg, bandpass='D2')   # doctest: +SKIP

:class:`SpherexArchive` queries IRSA's TAP service (default; it sees new data at once) or its
SIA2 service (``via='sia'``; lags ingestion by about a day) through pyvo, and returns one
:class:`~astropy.table.Table` row per image containing the target, sorted by time, with a ready
cutout URL. ``Spherex`` is a module-level instance that follows :data:`glue_spherex.config.conf`
and ``GLUE_SPHEREX_ARCHIVE_URL`` at each call.

Every argument is validated first and the ADQL is assembled only from validated numbers and
whitelisted names, so no input can change the query; bad input raises
:class:`~glue_spherex.errors.SpherexInputError` with a one-line message.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass

import astropy.units as u
import numpy as np
import pyvo
import requests
from astropy.table import Table
from astropy.time import Time

from .config import settings
from .errors import SpherexInputError, SpherexServiceError
from .http import make_session
from .resolve import resolve_target

__all__ = ["SpherexArchive", "Spherex", "CutoutSize", "BANDPASSES", "COLLECTIONS",
           "parse_bandpasses", "parse_collection", "parse_size", "parse_time", "cutout_url",
           "build_adql", "COLUMNS"]

BANDPASSES = (1, 2, 3, 4, 5, 6)
COLLECTIONS = {
    "wide": ("spherex_qr2",),
    "deep": ("spherex_qr2_deep",),
    "both": ("spherex_qr2", "spherex_qr2_deep"),
}
#: Columns of a query result, in order.
COLUMNS = ("cutout_index", "access_url", "cutout_url", "obs_id", "detector", "bandpass",
           "t_min", "t_max", "em_min", "em_max", "collection", "cloud_access")

#: Largest cutout: a full frame is 2040 px, about 3.5 deg.
MAX_SIZE_DEG = 4.0
MAX_SIZE_PX = 2040
#: Radius (deg) of the SIA2 search circle: images must (nearly) contain the target.
SIA_RADIUS_DEG = 1.0 / 3600.0
_PUBLISHER_DID = re.compile(r"^ivo://[^/]+/(?P<collection>[^?]+)\?(?P<obs_id>.+)/D(?P<det>[1-6])$")
_BANDPASS = re.compile(r"^(?:spherex-)?d?([1-6])$", re.IGNORECASE)
_SIZE = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-zA-Z\"']*)\s*$")
_SIZE_UNITS = {
    "": u.deg, "d": u.deg, "deg": u.deg, "degree": u.deg, "degrees": u.deg,
    "arcmin": u.arcmin, "amin": u.arcmin, "'": u.arcmin,
    "arcsec": u.arcsec, "asec": u.arcsec, '"': u.arcsec,
    "px": u.pix, "pix": u.pix, "pixel": u.pix, "pixels": u.pix,
}
_SIZE_HELP = "e.g. 0.1deg, 6arcmin, 30arcsec or 60px"


# -- validation -----------------------------------------------------------------------------

def parse_bandpasses(value):
    """Sorted detector numbers from None (all), one bandpass or a sequence of them.

    A bandpass is ``'D2'``, ``'SPHEREx-D2'`` (any case) or the integer 2.
    """
    if value is None:
        return BANDPASSES
    items = [value] if isinstance(value, (str, int, np.integer)) else list(value)
    if not items:
        raise SpherexInputError("bandpass list is empty; give D1-D6 or leave it out for all")
    return tuple(sorted({_bandpass(v) for v in items}))


def _bandpass(value):
    if isinstance(value, (bool, np.bool_)):
        match = None
    elif isinstance(value, (int, np.integer)):
        match = _BANDPASS.match(str(int(value)))
    else:
        match = _BANDPASS.match(str(value).strip())
    if match is None:
        raise SpherexInputError(
            f"bandpass {str(value)!r} is not accepted; give D1-D6, SPHEREx-D1..SPHEREx-D6 or 1-6")
    return int(match.group(1))


def parse_collection(value):
    """IRSA collection names for ``'wide'``, ``'deep'`` or ``'both'``."""
    key = str(value).strip().lower() if isinstance(value, str) else None
    if key not in COLLECTIONS:
        raise SpherexInputError(
            f"collection {str(value)!r} is not accepted; give wide, deep or both")
    return COLLECTIONS[key]


@dataclass(frozen=True)
class CutoutSize:
    """A square cutout size in degrees or in whole pixels (exactly one is set)."""

    deg: float | None = None
    px: int | None = None

    @property
    def param(self):
        """The IBE ``size=`` value: bare degrees (IRSA's default unit) or ``<n>px``."""
        return f"{self.px}px" if self.px is not None else f"{self.deg:.10g}"

    @property
    def quantity(self):
        return self.px * u.pix if self.px is not None else self.deg * u.deg

    def __str__(self):
        return f"{self.px}px" if self.px is not None else f"{self.deg:g}deg"


def parse_size(value):
    """:class:`CutoutSize` from an angle or pixel Quantity, a string with units or a number.

    A bare number (or a string without a unit) is in degrees, IRSA's default.
    """
    if isinstance(value, CutoutSize):
        return value
    if isinstance(value, str):
        match = _SIZE.match(value)
        unit = _SIZE_UNITS.get(match.group(2).lower()) if match else None
        if unit is None:
            raise SpherexInputError(f"size {value!r} is not understood; {_SIZE_HELP}")
        quantity = float(match.group(1)) * unit
    elif isinstance(value, u.Quantity):
        quantity = value
    elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        quantity = float(value) * u.deg
    else:
        raise SpherexInputError(f"size {value!r} is not understood; {_SIZE_HELP}")
    if not quantity.isscalar or not math.isfinite(quantity.value) or quantity.value <= 0:
        raise SpherexInputError(f"size {_show(value)} must be a positive angle or pixel count; "
                                f"{_SIZE_HELP}")
    if quantity.unit == u.pix:
        px = quantity.value
        if not float(px).is_integer() or px > MAX_SIZE_PX:
            raise SpherexInputError(
                f"size {_show(value)} must be a whole number of pixels from 1 to {MAX_SIZE_PX}")
        return CutoutSize(px=int(px))
    try:
        deg = quantity.to_value(u.deg)
    except u.UnitsError:
        raise SpherexInputError(
            f"size {_show(value)} must be an angle or a pixel count; {_SIZE_HELP}") from None
    if deg > MAX_SIZE_DEG:
        raise SpherexInputError(f"size {_show(value)} is larger than a full frame; "
                                f"give at most {MAX_SIZE_DEG:g} deg")
    return CutoutSize(deg=deg)


def _show(value):
    return f"{value!r}" if isinstance(value, str) else str(value)


def parse_time(value):
    """``(mjd_start, mjd_end)`` from None, a pair of astropy Times or MJD numbers, or a Time pair.

    Images overlapping the interval are kept.
    """
    if value is None:
        return None
    message = (f"time range {value!r} is invalid; give (start, end) as MJD numbers or "
               "astropy Times, start before end")
    try:
        if isinstance(value, Time):
            mjd = tuple(float(v) for v in np.atleast_1d(value.utc.mjd))
        else:
            mjd = tuple(float(v.utc.mjd) if isinstance(v, Time) else _mjd_number(v)
                        for v in value)
    except (TypeError, ValueError):
        raise SpherexInputError(message) from None
    if len(mjd) != 2 or not all(math.isfinite(v) for v in mjd) or not mjd[0] < mjd[1]:
        raise SpherexInputError(message)
    return mjd


def _mjd_number(v):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, str, np.number)):
        raise TypeError(v)
    return float(v)


# -- query building --------------------------------------------------------------------------

def cutout_url(access_url, ra, dec, size):
    """IBE cutout URL of one image: ``<access_url>?center=<ra>,<dec>&size=<size>``."""
    return f"{access_url}?center={ra:.8f},{dec:.8f}&size={size.param}"


def build_adql(ra, dec, bandpasses, collections, time=None):
    """The TAP query of :meth:`SpherexArchive.query_region` from validated values only.

    ``ra``/``dec`` are floats, ``bandpasses`` detector integers, ``collections`` names from
    :data:`COLLECTIONS`, ``time`` an MJD pair or None; anything else is refused.
    """
    ra, dec = float(ra), float(dec)
    if not (math.isfinite(ra) and math.isfinite(dec) and -90 <= dec <= 90):
        raise SpherexInputError(f"position ({ra}, {dec}) is not a valid RA/Dec in degrees")
    dets = [d for d in bandpasses if d in BANDPASSES]
    known = {c for names in COLLECTIONS.values() for c in names}
    if len(dets) != len(bandpasses) or not collections or not set(collections) <= known:
        raise SpherexInputError("bandpasses and collections must come from parse_bandpasses() "
                                "and parse_collection()")
    where = [f"1 = CONTAINS(POINT('ICRS', {ra!r}, {dec!r}), p.poly)"]
    if len(dets) < len(BANDPASSES):
        names = ", ".join(f"'SPHEREx-D{d}'" for d in dets)
        where.append(f"p.energy_bandpassname IN ({names})")
    dids = " OR ".join(f"p.obs_publisher_did LIKE 'ivo://irsa.ipac/{c}?%'" for c in collections)
    where.append(f"({dids})")
    if time is not None:
        t0, t1 = (float(t) for t in time)
        where.append(f"p.time_bounds_upper >= {t0!r} AND p.time_bounds_lower <= {t1!r}")
    return (
        "SELECT a.uri, p.obs_publisher_did, p.energy_bandpassname, "
        "p.time_bounds_lower, p.time_bounds_upper, p.energy_bounds_lower, p.energy_bounds_upper\n"
        "FROM spherex.artifact a JOIN spherex.plane p ON a.planeid = p.planeid\n"
        "WHERE " + "\n  AND ".join(where) + "\n"
        "ORDER BY p.time_bounds_lower"
    )


# -- the archive -----------------------------------------------------------------------------

class SpherexArchive:
    """Query interface to the SPHEREx holdings of IRSA (or a compatible archive).

    Parameters
    ----------
    archive_url, tap_url, sia_url : str, optional
        Service locations; default from :mod:`glue_spherex.config` (``GLUE_SPHEREX_ARCHIVE_URL``
        overrides ``conf.archive_url``), read at each query.
    timeout : float or (float, float), optional
        Connect and read timeouts (s) of the TAP/SIA request.
    """

    def __init__(self, archive_url=None, *, tap_url=None, sia_url=None, timeout=None):
        self._overrides = dict(archive_url=archive_url, tap_url=tap_url, sia_url=sia_url,
                               timeout=timeout)
        settings(**self._overrides)  # validate now, not at the first query

    @property
    def settings(self):
        return settings(**self._overrides)

    def query_region(self, target, size=0.1 * u.deg, bandpass=None, collection="wide",
                     time=None, via="tap"):
        """Images containing ``target``, one row each with its cutout URL, sorted by time.

        Parameters
        ----------
        target : str, SkyCoord or (ra, dec)
            Object name (resolved by Sesame), coordinate string, SkyCoord, or degrees.
        size : Quantity, str or float
            Cutout width: an angle (``0.1 * u.deg``, ``'6arcmin'``) or pixels (``60 * u.pix``,
            ``'60px'``); a bare number is degrees.
        bandpass : str, int or sequence, optional
            ``'D2'``, ``'SPHEREx-D2'`` or 2, or several; default all six.
        collection : {'wide', 'deep', 'both'}
            Wide survey (``spherex_qr2``), deep survey (``spherex_qr2_deep``) or both.
        time : (Time, Time) or (float, float), optional
            Keep images overlapping this interval (MJD numbers or astropy Times).
        via : {'tap', 'sia'}
            TAP sees new data at once; SIA2 lags by about a day. Only SIA2 fills
            ``cloud_access``; TAP leaves it empty (IRSA's plane/artifact tables do not carry it).

        Returns
        -------
        Table
            Columns :data:`COLUMNS`; ``t_min``/``t_max`` in MJD, ``em_min``/``em_max`` in µm;
            ``cutout_index`` numbers the rows from 1.
        """
        dets = parse_bandpasses(bandpass)
        collections = parse_collection(collection)
        cut = parse_size(size)
        mjd = parse_time(time)
        mode = str(via).strip().lower() if isinstance(via, str) else None
        if mode not in ("tap", "sia"):
            raise SpherexInputError(f"via {str(via)!r} is not accepted; give tap or sia")
        coord = resolve_target(target)
        ra, dec = float(coord.ra.deg), float(coord.dec.deg)
        cfg = self.settings
        session = make_session(cfg.timeout)
        try:
            if mode == "tap":
                adql = build_adql(ra, dec, dets, collections, mjd)
                rows = self._tap_rows(cfg.tap_url, cfg.archive_url, session, adql)
            else:
                rows = self._sia_rows(cfg.sia_url, session, ra, dec, dets, collections, mjd)
        finally:
            session.close()
        table = _make_table(rows, ra, dec, cut)
        table.meta.update(target_ra=ra, target_dec=dec, size=str(cut), via=mode,
                          collection=str(collection).lower(),
                          bandpass=",".join(f"D{d}" for d in dets))
        table.meta["archive_url"] = cfg.archive_url  # the fetcher follows rows on its host only
        return table

    # -- services --

    @staticmethod
    def _tap_rows(url, archive_url, session, adql):
        try:
            result = pyvo.dal.TAPService(url, session=session).search(adql)
            _warn_overflow(result, "TAP")
            data = result.to_table()
        except (pyvo.dal.DALServiceError, pyvo.dal.DALQueryError, pyvo.dal.DALFormatError,
                requests.RequestException, ValueError) as exc:
            raise SpherexServiceError(f"TAP query to {url} failed: {_one_line(exc)}") from None
        rows = []
        for rec in data:
            did = _text(rec["obs_publisher_did"])
            match = _PUBLISHER_DID.match(did)
            if match is None:
                raise SpherexServiceError(
                    f"TAP service {url} returned an unexpected obs_publisher_did {did!r}")
            rows.append(dict(
                access_url=_absolute(archive_url, _text(rec["uri"])),
                obs_id=match["obs_id"], detector=int(match["det"]),
                t_min=float(rec["time_bounds_lower"]), t_max=float(rec["time_bounds_upper"]),
                em_min=float(rec["energy_bounds_lower"]) * 1e6,
                em_max=float(rec["energy_bounds_upper"]) * 1e6,
                collection=match["collection"], cloud_access=""))
        return rows

    @staticmethod
    def _sia_rows(url, session, ra, dec, dets, collections, mjd):
        time = None if mjd is None else (Time(mjd[0], format="mjd"), Time(mjd[1], format="mjd"))
        try:
            service = pyvo.dal.SIA2Service(url, session=session)
            result = service.search(pos=(ra, dec, SIA_RADIUS_DEG), collection=list(collections),
                                    time=time)
            _warn_overflow(result, "SIA")
            data = result.to_table()
        except (pyvo.dal.DALServiceError, pyvo.dal.DALQueryError, pyvo.dal.DALFormatError,
                requests.RequestException, ValueError) as exc:
            raise SpherexServiceError(f"SIA query to {url} failed: {_one_line(exc)}") from None
        wanted = {f"SPHEREx-D{d}" for d in dets}
        rows = []
        for rec in data:
            name = _text(rec["energy_bandpassname"])
            if name not in wanted or _text(rec["obs_collection"]) not in collections:
                continue  # SIA2 has no bandpass-name parameter; BAND ranges of D1-D6 overlap
            rows.append(dict(
                access_url=_text(rec["access_url"]), obs_id=_text(rec["obs_id"]),
                detector=int(name[-1]), t_min=float(rec["t_min"]), t_max=float(rec["t_max"]),
                em_min=float(rec["em_min"]) * 1e6, em_max=float(rec["em_max"]) * 1e6,
                collection=_text(rec["obs_collection"]),
                cloud_access=_text(rec["cloud_access"]) if "cloud_access" in data.colnames
                else ""))
        return rows


def _make_table(rows, ra, dec, size):
    rows = sorted(rows, key=lambda r: (r["t_min"], r["detector"], r["obs_id"]))
    table = Table(names=COLUMNS,
                  dtype=(int, str, str, str, int, str, float, float, float, float, str, str))
    for i, row in enumerate(rows, start=1):
        table.add_row(dict(row, cutout_index=i, bandpass=f"SPHEREx-D{row['detector']}",
                           cutout_url=cutout_url(row["access_url"], ra, dec, size)))
    for name, unit in (("t_min", u.d), ("t_max", u.d), ("em_min", u.um), ("em_max", u.um)):
        table[name].unit = unit
    return table


def _absolute(archive_url, uri):
    """``spherex.artifact.uri`` is relative to the archive root (no leading slash)."""
    if uri.startswith(("http://", "https://")):
        return uri
    return f"{archive_url}/{uri.lstrip('/')}"


def _text(value):
    if isinstance(value, bytes):
        value = value.decode()
    if np.ma.is_masked(value):
        return ""
    return str(value).strip()


def _one_line(exc):
    text = " ".join(str(exc).split())
    return (text[:300] + "...") if len(text) > 300 else text or type(exc).__name__


def _warn_overflow(result, what):
    if getattr(result, "query_status", None) == "OVERFLOW":
        warnings.warn(f"the {what} service truncated the result at its row limit; "
                      "narrow the query (bandpass, time)", stacklevel=3)


#: Module-level archive that follows ``glue_spherex.config.conf`` at every call.
Spherex = SpherexArchive()
