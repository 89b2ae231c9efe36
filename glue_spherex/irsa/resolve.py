"""Turn what a user types as a target into an ICRS :class:`~astropy.coordinates.SkyCoord`.

Accepted: a scalar ``SkyCoord``; an ``(ra, dec)`` pair in degrees (numbers or angle
Quantities); a coordinate string (``'210.80227 54.34895'``, ``'14h03m12.5s +54d20m56s'``);
or an object name, resolved by CDS Sesame through :meth:`SkyCoord.from_name` with a short
timeout. There is deliberately no built-in table of names: if Sesame cannot be reached the
user is told so and asked for coordinates, rather than silently given a guess.
"""

from __future__ import annotations

import math
import re

import astropy.units as u
from astropy.coordinates import Angle, SkyCoord
from astropy.coordinates.name_resolve import NameResolveError
from astropy.utils.data import conf as data_conf

from ..errors import SpherexInputError, SpherexServiceError

__all__ = ["resolve_target", "check_radec", "RESOLVER_TIMEOUT", "parse_coordinates"]

#: Seconds allowed per Sesame mirror before the resolver is declared unreachable.
RESOLVER_TIMEOUT = 5.0

_MAX_NAME = 100
_NUMERIC_START = re.compile(r"[+-]?\d")


def resolve_target(target, *, timeout=RESOLVER_TIMEOUT):
    """ICRS position of ``target`` (see the module docstring for what is accepted).

    Raises
    ------
    SpherexInputError
        Malformed coordinates, or a name Sesame does not know.
    SpherexServiceError
        A name was given but Sesame could not be reached.
    """
    if isinstance(target, SkyCoord):
        if not target.isscalar:
            raise SpherexInputError("target must be a single position, not an array SkyCoord")
        return target.icrs
    if isinstance(target, (tuple, list)) and len(target) == 2:
        return check_radec(*target)
    if not isinstance(target, str) or not target.strip():
        raise SpherexInputError(
            f"target {target!r} is not understood; give a name (e.g. 'M101'), "
            "'ra dec' in degrees, an (ra, dec) pair or a SkyCoord")
    text = target.strip()
    coord = parse_coordinates(text)
    return coord if coord is not None else _resolve_name(text, timeout)


def check_radec(ra, dec):
    """A SkyCoord from RA/Dec (degrees or angle Quantities); one-line error when out of range."""
    values = []
    for name, value, lo, hi in (("RA", ra, -360.0, 360.0), ("Dec", dec, -90.0, 90.0)):
        try:
            deg = Angle(value).deg if isinstance(value, u.Quantity) else float(value)
        except (TypeError, ValueError, u.UnitsError):
            raise SpherexInputError(f"{name} {value!r} is not an angle in degrees") from None
        if not (math.isfinite(deg) and lo <= deg <= hi):
            raise SpherexInputError(
                f"{name} {_fmt(value)} is outside [{lo:g}, {hi:g}] deg")
        values.append(deg)
    return SkyCoord(values[0] % 360.0, values[1], unit="deg", frame="icrs")


def _fmt(value):
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def parse_coordinates(text):
    """A SkyCoord if ``text`` is a coordinate pair, else None (it is then taken as a name)."""
    parts = text.replace(",", " ").split()
    if len(parts) != 2:
        return None
    try:
        ra, dec = float(parts[0]), float(parts[1])
    except ValueError:
        pass
    else:
        return check_radec(ra, dec)
    if not all(_NUMERIC_START.match(p) for p in parts):
        return None  # e.g. 'NGC 5457', 'Messier 101'
    try:
        return SkyCoord(parts[0], parts[1], unit=(u.hourangle, u.deg), frame="icrs")
    except ValueError:
        raise SpherexInputError(
            f"coordinates {text!r} are not valid; e.g. '210.80227 54.34895' (deg) or "
            "'14h03m12.5s +54d20m56s'") from None


def _resolve_name(name, timeout):
    if len(name) > _MAX_NAME or not name.isprintable():
        raise SpherexInputError(f"target name {name[:40]!r}... is not a valid object name")
    try:
        with data_conf.set_temp("remote_timeout", timeout):
            return SkyCoord.from_name(name, frame="icrs", cache=False).icrs
    except NameResolveError as exc:
        if "Unable to find coordinates" in str(exc):
            raise SpherexInputError(
                f"unknown target {name!r}: the name resolver (Sesame) does not know it; "
                "check the name or give --ra/--dec") from None
        raise SpherexServiceError(
            f"could not resolve {name!r}: name resolver unreachable; give --ra/--dec "
            "(or a SkyCoord)") from None
