"""Find SPHEREx spectral images covering a target, astroquery style.

>>> from glue_spherex.irsa.core import Spherex                      # doctest: +SKIP
>>> table = Spherex.query_region('M101', size=0.1 * u.deg, bandpass='D2')   # doctest: +SKIP

:class:`SpherexClass` (astroquery's ``IrsaClass``) queries IRSA's TAP (default) or SIA2 (``via='sia'``) service through
pyvo and returns one row per image containing the target, sorted by time, with a cutout URL;
``Spherex``, its default instance, follows :data:`glue_spherex.irsa.config.conf` and
``GLUE_SPHEREX_ARCHIVE_URL`` at each call (validated when a query is made, never at import);
``query_region(..., get_query_payload=True)`` returns the request without sending it.
``release`` (``'qr2'``, ``'qr3'``, ``'all'``) and ``versions`` choose processing versions
(``docs/python.rst``, "Releases and processing versions"). Input is validated before any ADQL
is built (:class:`~glue_spherex.errors.SpherexInputError`); an untrustworthy answer raises
:class:`~glue_spherex.errors.SpherexServiceError` naming the column and row.
"""

from __future__ import annotations

import contextlib
import gc
import math
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache

import astropy.units as u
import numpy as np
import pyvo
import requests
from astropy.table import Table
from astropy.time import Time

from ..download.http import make_session
from ..errors import SpherexInputError, SpherexServiceError
from .config import check_timeout, check_url, settings
from .resolve import resolve_target

__all__ = ["SpherexClass", "Spherex", "CutoutSize", "BANDPASSES", "COLLECTIONS", "RELEASES",
           "parse_bandpasses", "parse_collection", "parse_release", "parse_size", "parse_time",
           "cutout_url", "build_adql", "build_upload_adql", "version_key", "COLUMNS",
           "tap_columns", "select_versions"]

BANDPASSES = (1, 2, 3, 4, 5, 6)
#: Survey -> collections of QR2; :func:`parse_collection` adds QR3's for other releases.
COLLECTIONS = {
    "wide": ("spherex_qr2",),
    "deep": ("spherex_qr2_deep",),
    "both": ("spherex_qr2", "spherex_qr2_deep"),
}
#: ``release`` choices: QR2 as first processed (pipeline < 7), pipeline-7 products, both.
RELEASES = ("qr2", "qr3", "all")
#: Processing tags ``l2b-vNN-...`` from NN = 26 on are pipeline 7 (v26: QR2 reprocessed).
PIPELINE7_MIN_VERSION = 26
#: Columns of a query result, in order.
COLUMNS = ("cutout_index", "access_url", "cutout_url", "obs_id", "detector", "bandpass",
           "t_min", "t_max", "em_min", "em_max", "collection", "cloud_access", "release",
           "version")
#: Longest URL or id accepted from a service (IRSA's are ~200 characters).
MAX_TEXT = 2048

#: Largest cutout: a full frame is 2040 px, about 3.5 deg.
MAX_SIZE_DEG = 4.0
MAX_SIZE_PX = 2040
#: Radius (deg) of the SIA2 search circle: images must (nearly) contain the target.
SIA_RADIUS_DEG = 1.0 / 3600.0
_TAG = re.compile(r"_spx_(l2b(_retry)?-v(\d+)-(\d{4})-(\d{3}))\.fits(?:\.gz)?$")
_RELEASE_IN_PATH = re.compile(r"/spherex/(qr\d+)/")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
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


def parse_release(value):
    """``'qr2'``, ``'qr3'`` or ``'all'`` (any case)."""
    key = str(value).strip().lower() if isinstance(value, str) else None
    if key not in RELEASES:
        raise SpherexInputError(f"release {str(value)!r} is not accepted; give qr2, qr3 or all")
    return key


def parse_collection(value, release="qr2"):
    """IRSA collection names for ``'wide'``, ``'deep'`` or ``'both'`` of a release.

    ``'qr3'`` (pipeline-7 products) and ``'all'`` search the QR2 and QR3 collections: QR2
    exposures reprocessed by pipeline 7 stay in the QR2 collections.
    """
    key = str(value).strip().lower() if isinstance(value, str) else None
    if key not in COLLECTIONS:
        raise SpherexInputError(
            f"collection {str(value)!r} is not accepted; give wide, deep or both")
    names = COLLECTIONS[key]
    if parse_release(release) == "qr2":
        return names
    return names + tuple(n.replace("qr2", "qr3") for n in names)


@lru_cache(maxsize=1024)
def version_key(tag):
    """Order of processing versions: newest = highest ``vNN``, then a ``l2b_retry`` side run
    before the regular run of the same version, then the later processing date; tags of
    another form sort first."""
    m = _TAG.search(f"_spx_{tag}.fits") if tag else None
    if m is None:
        return (-1, 0, 0, 0)
    return (int(m.group(3)), 1 if m.group(2) else 0, int(m.group(4)), int(m.group(5)))


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
    """The TAP query of :meth:`SpherexClass.query_region` from validated values only.

    ``ra``/``dec`` are floats, ``bandpasses`` detector integers, ``collections`` names from
    :func:`parse_collection`, ``time`` an MJD pair or None; anything else is refused. The
    collection is ``spherex.observation.collection`` (the artifact path cannot tell wide from
    deep).
    """
    ra, dec = float(ra), float(dec)
    if not (math.isfinite(ra) and math.isfinite(dec) and -90 <= dec <= 90):
        raise SpherexInputError(f"position ({ra}, {dec}) is not a valid RA/Dec in degrees")
    return _select(f"1 = CONTAINS(POINT('ICRS', {ra!r}, {dec!r}), p.poly)", bandpasses,
                   collections, time)


def build_upload_adql(bandpasses, collections, time=None, upload="cat"):
    """The query of :func:`build_adql` for every row of the uploaded table
    ``TAP_UPLOAD.<upload>`` (columns ``idx``, ``ra``, ``dec``) at once: the same footprint
    test and filters, each answer row led by the ``idx`` of its source."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,30}", str(upload)):
        raise SpherexInputError(f"upload name {upload!r} is not a plain lower-case identifier")
    return _select("1 = CONTAINS(POINT('ICRS', u.ra, u.dec), p.poly)", bandpasses, collections,
                   time, source="u.idx, ", join=f"TAP_UPLOAD.{upload} AS u JOIN ")


def _select(footprint, bandpasses, collections, time, source="", join=""):
    dets = [d for d in bandpasses if d in BANDPASSES]
    known = {c for names in COLLECTIONS.values() for c in names}
    known |= {c.replace("qr2", "qr3") for c in known}
    if len(dets) != len(bandpasses) or not collections or not set(collections) <= known:
        raise SpherexInputError("bandpasses and collections must come from parse_bandpasses() "
                                "and parse_collection()")
    where = [footprint]
    if len(dets) < len(BANDPASSES):
        names = ", ".join(f"'SPHEREx-D{d}'" for d in dets)
        where.append(f"p.energy_bandpassname IN ({names})")
    names = ", ".join(f"'{c}'" for c in sorted(set(collections)))
    where.append(f"o.collection IN ({names})")
    if time is not None:
        t0, t1 = (float(t) for t in time)
        where.append(f"p.time_bounds_upper >= {t0!r} AND p.time_bounds_lower <= {t1!r}")
    return (
        f"SELECT {source}a.uri, p.obs_publisher_did, p.energy_bandpassname, o.collection, "
        "p.time_bounds_lower, p.time_bounds_upper, p.energy_bounds_lower, p.energy_bounds_upper\n"
        f"FROM {join}spherex.artifact a JOIN spherex.plane p ON a.planeid = p.planeid\n"
        "JOIN spherex.observation o ON o.obsid = p.obsid\n"
        "WHERE " + "\n  AND ".join(where) + "\n"
        "ORDER BY p.time_bounds_lower"
    )


# -- the archive -----------------------------------------------------------------------------

class SpherexClass:
    """Query interface to the SPHEREx holdings of IRSA (or a compatible archive).

    Parameters
    ----------
    archive_url, tap_url, sia_url : str, optional
        Service locations; default from :mod:`glue_spherex.irsa.config` (``GLUE_SPHEREX_ARCHIVE_URL``
        overrides ``conf.archive_url``), read at each query.
    timeout : float or (float, float), optional
        Connect and read timeouts (s) of the TAP/SIA request.
    """

    def __init__(self, archive_url=None, *, tap_url=None, sia_url=None, timeout=None):
        # arguments given here are checked now; the environment and ``conf`` at each query
        for value, what in ((archive_url, "archive URL"), (tap_url, "TAP URL"),
                            (sia_url, "SIA URL")):
            if value is not None:
                check_url(value, what)
        if timeout is not None:
            check_timeout(timeout)
        self._overrides = dict(archive_url=archive_url, tap_url=tap_url, sia_url=sia_url,
                               timeout=timeout)

    @property
    def settings(self):
        return settings(**self._overrides)

    def query_region(self, coordinates, *, size=0.1 * u.deg, bandpass=None, collection="wide",
                     time=None, via="tap", release="qr2", versions="newest",
                     get_query_payload=False):
        """Images containing ``coordinates``, one row each with its cutout URL, sorted by time.

        Parameters
        ----------
        coordinates : str, SkyCoord or (ra, dec)
            Object name (resolved by Sesame), coordinate string, SkyCoord, or degrees.
            Every other argument is keyword-only.
        size : Quantity, str or float
            Cutout width: an angle (``0.1 * u.deg``, ``'6arcmin'``) or pixels (``60 * u.pix``,
            ``'60px'``); a bare number is degrees.
        bandpass : str, int or sequence, optional
            ``'D2'``, ``'SPHEREx-D2'`` or 2, or several; default all six.
        collection : {'wide', 'deep', 'both'}
            Wide survey (``spherex_qr2``/``spherex_qr3``), deep survey (``..._deep``) or both.
        time : (Time, Time) or (float, float), optional
            Keep images overlapping this interval (MJD numbers or astropy Times).
        via : {'tap', 'sia'}
            TAP sees new data at once; SIA2 lags by about a day. Only SIA2 fills
            ``cloud_access``; TAP leaves it empty (IRSA's plane/artifact tables do not carry it).
        release : {'qr2', 'qr3', 'all'}
            ``'qr2'`` (default): QR2 as first processed, pipeline < 7 -- the files earlier
            versions of this tool fetched, one calibration; ``'qr3'``: pipeline-7 products (QR3
            and the pipeline-7 reprocessings of QR2); ``'all'``: both.
        versions : {'newest', 'all'}
            One row per exposure and detector, its newest processing version
            (:func:`version_key`: highest ``vNN``, a retry run breaks ties), or every version.
        get_query_payload : bool
            Return the parameters of the TAP (``{'REQUEST': 'doQuery', 'LANG': 'ADQL',
            'QUERY': adql}``) or SIA2 (``{'POS': [...], 'COLLECTION': [...], 'TIME': [...]}``)
            request instead of sending it. Nothing is sent to the archive and its configuration
            is not read (an object name is still resolved by Sesame; give coordinates to stay
            offline).

        Returns
        -------
        Table or dict
            Columns :data:`COLUMNS`; ``t_min``/``t_max`` in MJD, ``em_min``/``em_max`` in µm;
            ``cutout_index`` numbers the rows from 1; ``release`` is ``'qr2'``/``'qr3'`` (the
            data release of the file's path), ``version`` its processing tag. With
            ``get_query_payload=True`` the request parameters.
        """
        dets = parse_bandpasses(bandpass)
        rel = parse_release(release)
        collections = parse_collection(collection, rel)
        cut = parse_size(size)
        mjd = parse_time(time)
        mode = str(via).strip().lower() if isinstance(via, str) else None
        if mode not in ("tap", "sia"):
            raise SpherexInputError(f"via {str(via)!r} is not accepted; give tap or sia")
        keep = str(versions).strip().lower() if isinstance(versions, str) else None
        if keep not in ("newest", "all"):
            raise SpherexInputError(f"versions {str(versions)!r} is not accepted; give newest "
                                    "or all")
        coord = resolve_target(coordinates)
        ra, dec = float(coord.ra.deg), float(coord.dec.deg)
        if get_query_payload:
            if mode == "tap":
                return {"REQUEST": "doQuery", "LANG": "ADQL",
                        "QUERY": build_adql(ra, dec, dets, collections, mjd)}
            return dict(pyvo.dal.sia2.SIA2Query("", **_sia_params(ra, dec, collections, mjd)))
        cfg = self.settings
        session = make_session(cfg.timeout)
        try:
            with _gc_paused():
                if mode == "tap":
                    adql = build_adql(ra, dec, dets, collections, mjd)
                    cols = self._tap_rows(cfg.tap_url, cfg.archive_url, session, adql)
                else:
                    cols = self._sia_rows(cfg.sia_url, session, ra, dec, dets, collections, mjd)
                table = _make_table(cols, ra, dec, cut, rel, keep == "newest")
        finally:
            session.close()
        table.meta.update(target_ra=ra, target_dec=dec, size=str(cut), via=mode,
                          collection=str(collection).lower(), release=rel, versions=keep,
                          bandpass=",".join(f"D{d}" for d in dets))
        table.meta["archive_url"] = cfg.archive_url  # the fetcher follows rows on its host only
        return table

    # -- services --

    @staticmethod
    def _tap_rows(url, archive_url, session, adql):
        data = _service_table(pyvo.dal.TAPService(url, session=session).search, (adql,), {},
                              f"TAP query to {url}", "TAP")
        return tap_columns(data, archive_url, f"TAP service {url}")

    @staticmethod
    def _sia_rows(url, session, ra, dec, dets, collections, mjd):
        service = _service_table(
            lambda: pyvo.dal.SIA2Service(url, session=session), (), {}, f"SIA query to {url}",
            None)
        data = _service_table(service.search, (), _sia_params(ra, dec, collections, mjd),
                              f"SIA query to {url}", "SIA")
        what = f"SIA service {url}"
        _require(data, ("access_url", "obs_id", "energy_bandpassname", "obs_collection",
                         "t_min", "t_max", "em_min", "em_max"), what)
        names = _texts(data, "energy_bandpassname", what)
        colls = _texts(data, "obs_collection", what)
        wanted = {f"SPHEREx-D{d}" for d in dets}
        # SIA2 has no bandpass-name parameter; BAND ranges of D1-D6 overlap
        keep = np.array([n in wanted and c in collections for n, c in zip(names, colls)],
                        dtype=bool)
        idx = np.flatnonzero(keep)

        def pick(values):
            return [values[i] for i in idx]

        cloud = (_texts(data, "cloud_access", what, limit=4 * MAX_TEXT)
                 if "cloud_access" in data.colnames else [""] * len(names))
        return dict(
            access_url=pick(_texts(data, "access_url", what)),
            obs_id=pick(_texts(data, "obs_id", what)),
            detector=np.array([int(names[i][-1]) for i in idx], dtype=int),
            t_min=_numbers(data, "t_min", what)[idx], t_max=_numbers(data, "t_max", what)[idx],
            em_min=_numbers(data, "em_min", what)[idx] * 1e6,
            em_max=_numbers(data, "em_max", what)[idx] * 1e6,
            collection=pick(colls), cloud_access=pick(cloud))


def tap_columns(data, archive_url, what):
    """Columns of a TAP answer of :func:`build_adql` (or :func:`build_upload_adql`): the
    values checked (a bad one is a SpherexServiceError naming column and row), URLs made
    absolute, obs id and detector taken from ``obs_publisher_did``."""
    need = ("uri", "obs_publisher_did", "time_bounds_lower", "time_bounds_upper",
            "energy_bounds_lower", "energy_bounds_upper")
    _require(data, need, what)
    dids = _texts(data, "obs_publisher_did", what)
    matches = [_PUBLISHER_DID.match(d) for d in dids]
    bad = next((i for i, m in enumerate(matches) if m is None), None)
    if bad is not None:
        raise SpherexServiceError(
            f"{what} returned an unexpected obs_publisher_did {_show_text(dids[bad])} "
            f"(row {bad + 1})")
    collection = (_texts(data, "collection", what) if "collection" in data.colnames
                  else [m["collection"] for m in matches])
    return dict(
        access_url=[_absolute(archive_url, v) for v in _texts(data, "uri", what)],
        obs_id=[m["obs_id"] for m in matches],
        detector=np.array([int(m["det"]) for m in matches], dtype=int),
        t_min=_numbers(data, "time_bounds_lower", what),
        t_max=_numbers(data, "time_bounds_upper", what),
        em_min=_numbers(data, "energy_bounds_lower", what) * 1e6,
        em_max=_numbers(data, "energy_bounds_upper", what) * 1e6,
        collection=collection, cloud_access=[""] * len(matches))


def _sia_params(ra, dec, collections, mjd):
    """pyvo SIA2 search arguments: a tiny circle at the target, the collections, the time."""
    time = None if mjd is None else (Time(mjd[0], format="mjd"), Time(mjd[1], format="mjd"))
    return dict(pos=(ra, dec, SIA_RADIUS_DEG), collection=list(collections), time=time)


@contextlib.contextmanager
def _gc_paused():
    """Millions of new strings trigger Python's cyclic collector again and again (they hold no
    cycles): pause it while the columns are built."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _service_table(call, args, kwargs, what, overflow_name):
    """Run a pyvo call; its errors (and an unreadable answer) as one SpherexServiceError."""
    try:
        result = call(*args, **kwargs)
        if overflow_name is None:
            return result
        _warn_overflow(result, overflow_name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")       # astropy's VOTable warnings on bad cells
            return result.to_table()
    except (pyvo.dal.DALServiceError, pyvo.dal.DALQueryError, pyvo.dal.DALFormatError,
            requests.RequestException, ValueError, TypeError, KeyError, IndexError,
            OverflowError, UnicodeError) as exc:
        raise SpherexServiceError(f"{what} failed: {_one_line(exc)}") from None


def _require(data, names, what):
    missing = [n for n in names if n not in data.colnames]
    if missing:
        raise SpherexServiceError(f"{what} returned no column {', '.join(missing)}")


def _numbers(data, name, what):
    """A column as finite float64 values, or SpherexServiceError naming the first bad row."""
    col = data[name]
    mask = np.ma.getmaskarray(col) if np.ma.isMaskedArray(col) else np.zeros(len(col), bool)
    try:
        values = np.array(np.ma.getdata(col), dtype=float)
    except (TypeError, ValueError):
        values = np.empty(len(col))
        for i, v in enumerate(np.ma.getdata(col)):
            try:
                values[i] = float(_text(v))
            except (TypeError, ValueError, UnicodeError):
                raise SpherexServiceError(
                    f"{what} returned a non-numeric {name} {_show_text(_text(v))} "
                    f"(row {i + 1})") from None
    bad = mask | ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        shown = "an empty or NaN value" if mask[i] else f"{values[i]!r}"
        raise SpherexServiceError(f"{what} returned {shown} for {name} (row {i + 1}); "
                                  "expected a finite number")
    return values


def _texts(data, name, what, limit=MAX_TEXT):
    """A column as stripped strings without control characters, at most ``limit`` long."""
    col = data[name]
    mask = np.ma.getmaskarray(col) if np.ma.isMaskedArray(col) else None
    out = [v.strip() if type(v) is str else _text(v)            # plain values: fast
           for v in np.asarray(np.ma.getdata(col)).tolist()]
    if mask is not None and mask.any():
        for i in np.flatnonzero(mask).tolist():
            out[i] = ""
    # one scan of the whole column; the row is looked for only when something is wrong
    if out and (max(map(len, out)) > limit or _CONTROL.search("".join(out))):
        for i, v in enumerate(out):
            if len(v) > limit or _CONTROL.search(v):
                problem = (f"{len(v)} characters long (at most {limit} accepted)"
                           if len(v) > limit else "with control characters")
                raise SpherexServiceError(f"{what} returned a {name} {problem} (row {i + 1}): "
                                          f"{_show_text(v)}")
    return out


def _show_text(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _tag_of(url):
    m = _TAG.search(url.split("?", 1)[0])
    return m.group(1) if m else ""


def _release_of(url, collection):
    m = _RELEASE_IN_PATH.search(url)
    if m:
        return m.group(1)
    return "qr3" if "qr3" in collection else "qr2"


def select_versions(cols, release="qr2", newest=True, groups=None):
    """Rows of :func:`tap_columns` output kept for ``release`` (``'qr2'``/``'qr3'``/``'all'``)
    and, with ``newest``, only the newest processing version (:func:`version_key`) of each
    exposure and detector (within each of ``groups``, e.g. the source of a catalog row).

    Returns ``(indices, releases, tags)``: kept row numbers (ascending) and every row's release
    and processing tag.
    """
    urls = cols["access_url"]
    tags = [_tag_of(u_) for u_ in urls]
    rels = [_release_of(u_, c) for u_, c in zip(urls, cols["collection"])]
    keys = [version_key(t) for t in tags]
    p7 = np.array([k[0] >= PIPELINE7_MIN_VERSION or (k[0] < 0 and r == "qr3")
                   for k, r in zip(keys, rels)], dtype=bool)
    keep = np.ones(len(urls), dtype=bool)
    if release == "qr2":
        keep &= ~p7
    elif release == "qr3":
        keep &= p7
    obs_id, det = cols["obs_id"], cols["detector"]
    if newest:
        best = {}
        for i in np.flatnonzero(keep).tolist():
            group = (obs_id[i], int(det[i]), None if groups is None else groups[i])
            j = best.get(group)
            if j is None or keys[i] > keys[j]:
                best[group] = i
        keep[:] = False
        keep[list(best.values())] = True
    return np.flatnonzero(keep), rels, tags


def _make_table(cols, ra, dec, size, release="qr2", newest=True):
    """The result table, built column-wise (linear time): release selection, dedupe, order."""
    urls = cols["access_url"]
    obs_id, det = cols["obs_id"], cols["detector"]
    idx, rels, tags = select_versions(cols, release, newest)
    t_min = np.asarray(cols["t_min"], float)[idx]
    dets = np.asarray(det, int)[idx]
    obs = np.array([obs_id[i] for i in idx], dtype=str)
    order = idx[np.lexsort((obs, dets, t_min))] if len(idx) else idx

    def texts(values):
        return np.array([values[i] for i in order], dtype=str) if len(order) \
            else np.array([], dtype=str)

    access = texts(urls)
    param = size.param
    centre = f"?center={ra:.8f},{dec:.8f}&size={param}"
    out = {
        "cutout_index": np.arange(1, len(order) + 1, dtype=int),
        "access_url": access,
        "cutout_url": np.array([a + centre for a in access.tolist()], dtype=str)
        if len(order) else np.array([], dtype=str),
        "obs_id": texts(obs_id),
        "detector": np.asarray(det, int)[order],
        "bandpass": np.array([f"SPHEREx-D{d}" for d in np.asarray(det, int)[order].tolist()],
                             dtype=str) if len(order) else np.array([], dtype=str),
        "t_min": np.asarray(cols["t_min"], float)[order],
        "t_max": np.asarray(cols["t_max"], float)[order],
        "em_min": np.asarray(cols["em_min"], float)[order],
        "em_max": np.asarray(cols["em_max"], float)[order],
        "collection": texts(cols["collection"]),
        "cloud_access": texts(cols["cloud_access"]),
        "release": texts(rels),
        "version": texts(tags),
    }
    table = Table(out, names=COLUMNS, copy=False)
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


#: Module-level archive that follows ``glue_spherex.irsa.config.conf`` at every call.
Spherex = SpherexClass()
