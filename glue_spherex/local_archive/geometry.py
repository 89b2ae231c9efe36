"""ADQL geometry on the unit sphere, registered as SQLite functions for the archive's engine.

Geometries travel through SQLite as the STC-S-like strings IRSA uses for ``s_region``
(``'POINT ICRS 210.8 54.3'``, ``'CIRCLE ICRS ra dec r'``, ``'POLYGON ICRS ra1 dec1 ...'``), so a
table column such as ``spherex.plane.poly`` and an ADQL literal such as ``POINT('ICRS', ra, dec)``
are the same kind of value.  Each distinct string is parsed once (LRU cache).

Polygons are :class:`spherical_geometry.polygon.SphericalPolygon` objects (great-circle edges,
correct across RA=0 and around the poles); circles are exact caps.  A bounding cap per polygon
rejects most rows with one dot product before the polygon test runs.

``COORDRANGE('ICRS', ra1, ra2, dec1, dec2)`` is this engine's own shape for SIA2's ``POS=RANGE``:
an RA interval (wrapping through 0 when ra1 > ra2) times a Dec interval, whose Dec edges are
parallels, not great circles.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

import numpy as np
from spherical_geometry import great_circle_arc
from spherical_geometry.polygon import SphericalPolygon

__all__ = [
    "GeometryError", "Point", "Circle", "Polygon", "CoordRange", "parse", "register",
    "contains", "intersects", "distance_deg",
]

_FRAMES = {"ICRS", "J2000", "FK5", "GEOCENTER", ""}
_EPS = 1e-12


class GeometryError(ValueError):
    """A geometry literal or argument is malformed (the message says what is accepted)."""


def _vec(ra, dec):
    r, d = math.radians(ra), math.radians(dec)
    cd = math.cos(d)
    return (cd * math.cos(r), cd * math.sin(r), math.sin(d))


def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cross(a, b):
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _norm(a):
    n = math.sqrt(_dot(a, a))
    return (a[0] / n, a[1] / n, a[2] / n)


def _angle(a, b):
    """Angle between two unit vectors in degrees, accurate at all separations."""
    c = _cross(a, b)
    return math.degrees(math.atan2(math.sqrt(_dot(c, c)), _dot(a, b)))


def _check_dec(dec):
    if not -90.0 <= dec <= 90.0:
        raise GeometryError(f"dec value {dec:g} lies outside valid interval [-90, 90]")


def _fmt(x):
    return repr(float(x))


class Point:
    kind = "POINT"

    def __init__(self, ra, dec):
        ra, dec = float(ra), float(dec)
        _check_dec(dec)
        self.ra, self.dec = ra % 360.0, dec
        self.vec = _vec(ra, dec)

    def stcs(self):
        return f"POINT ICRS {_fmt(self.ra)} {_fmt(self.dec)}"


class Circle:
    kind = "CIRCLE"

    def __init__(self, ra, dec, radius):
        ra, dec, radius = float(ra), float(dec), float(radius)
        _check_dec(dec)
        if not 0.0 <= radius <= 180.0:
            raise GeometryError(f"circle radius {radius:g} deg lies outside [0, 180]")
        self.ra, self.dec, self.r = ra % 360.0, dec, radius
        self.vec = _vec(ra, dec)

    def stcs(self):
        return f"CIRCLE ICRS {_fmt(self.ra)} {_fmt(self.dec)} {_fmt(self.r)}"


class Polygon:
    kind = "POLYGON"

    def __init__(self, ras, decs):
        ras, decs = [float(x) for x in ras], [float(x) for x in decs]
        if len(ras) > 3 and ras[0] == ras[-1] and decs[0] == decs[-1]:
            ras, decs = ras[:-1], decs[:-1]            # IRSA's s_region repeats the first vertex
        if len(ras) < 3:
            raise GeometryError("a polygon needs at least 3 vertices (ra, dec pairs)")
        for d in decs:
            _check_dec(d)
        self.ras, self.decs = [r % 360.0 for r in ras], decs
        self.vecs = [_vec(r, d) for r, d in zip(ras, decs)]
        s = tuple(sum(v[i] for v in self.vecs) for i in range(3))
        if _dot(s, s) < _EPS:
            raise GeometryError("polygon vertices are degenerate (they span a great circle)")
        self.cap_center = _norm(s)
        # Bounding cap over the vertices; it bounds the whole polygon when smaller than a hemisphere.
        self.cap_radius = max(_angle(self.cap_center, v) for v in self.vecs) + 1e-9
        self._cos_cap = math.cos(math.radians(self.cap_radius)) if self.cap_radius < 90 else -2.0
        self._cos_inner = None
        self._sph = None

    @property
    def sph(self):
        if self._sph is None:
            sph = SphericalPolygon.from_radec(self.ras, self.decs)
            if any(p._degenerate for p in sph):
                raise GeometryError("polygon is degenerate (repeated or collinear vertices)")
            self._sph = sph
        return self._sph

    @property
    def edges(self):
        n = len(self.vecs)
        return [(self.vecs[i], self.vecs[(i + 1) % n]) for i in range(n)]

    def may_contain(self, vec, margin=0.0):
        """Cheap bounding-cap test: False means certainly outside (by more than ``margin`` deg)."""
        return self.cap_radius >= 90.0 or _angle(self.cap_center, vec) <= self.cap_radius + margin

    def _inner_cos(self):
        """Cosine of the radius of a cap around ``cap_center`` lying inside the polygon (its
        distance to the nearest edge), or 2 when the centre is not inside."""
        if self._cos_inner is None:
            if self.sph.contains_point(np.asarray(self.cap_center)):
                r = _edge_distance(self.cap_center, self) - 1e-9
                self._cos_inner = math.cos(math.radians(r)) if r > 0 else 2.0
            else:
                self._cos_inner = 2.0
        return self._cos_inner

    def contains_vec(self, vec):
        """Point in polygon: the bounding cap rejects and the inner cap accepts most points
        cheaply; spherical_geometry decides the rest."""
        d = _dot(self.cap_center, vec)
        if d < self._cos_cap:
            return False
        if d > self._inner_cos():
            return True
        return bool(self.sph.contains_point(np.asarray(vec)))

    def stcs(self):
        coords = " ".join(f"{_fmt(r)} {_fmt(d)}" for r, d in zip(self.ras, self.decs))
        return f"POLYGON ICRS {coords}"


class CoordRange:
    """RA interval x Dec interval (SIA2 ``POS=RANGE``); RA wraps through 0 when ra1 > ra2."""

    kind = "RANGE"

    def __init__(self, ra1, ra2, dec1, dec2):
        ra1, ra2, dec1, dec2 = (float(x) for x in (ra1, ra2, dec1, dec2))
        dec1, dec2 = max(dec1, -90.0), min(dec2, 90.0)
        if dec1 > dec2:
            raise GeometryError(f"empty Dec range [{dec1:g}, {dec2:g}]")
        if math.isinf(ra1) or math.isinf(ra2) or ra2 - ra1 >= 360.0:
            ra1, width = 0.0, 360.0
        else:
            width = (ra2 - ra1) % 360.0 if ra2 != ra1 else 0.0
        self.ra1, self.width, self.dec1, self.dec2 = ra1 % 360.0, width, dec1, dec2

    def stcs(self):
        return (f"RANGE ICRS {_fmt(self.ra1)} {_fmt(self.ra1 + self.width)} "
                f"{_fmt(self.dec1)} {_fmt(self.dec2)}")

    def contains_radec(self, ra, dec):
        if not self.dec1 <= dec <= self.dec2:
            return False
        return self.width >= 360.0 or (ra - self.ra1) % 360.0 <= self.width or abs(dec) == 90.0

    def intersects_polygon(self, poly):
        """Exact test for a polygon no larger than a hemisphere.

        Clip the polygon to the RA lune (half-space cuts through the origin keep great-circle
        edges), then compare the clipped polygon's Dec extent with the Dec interval: the clipped
        polygon is connected, so its Dec values fill that extent.
        """
        pieces = [poly.vecs]
        if self.width < 360.0:
            lunes = ([(self.ra1, self.width)] if self.width <= 180.0 else
                     [(self.ra1, self.width / 2), (self.ra1 + self.width / 2, self.width / 2)])
            pieces = []
            for start, w in lunes:
                a, b = math.radians(start), math.radians(start + w)
                clipped = _clip(poly.vecs, (-math.sin(a), math.cos(a), 0.0))
                clipped = _clip(clipped, (math.sin(b), -math.cos(b), 0.0))
                if clipped:
                    pieces.append(clipped)
        lo, hi = math.sin(math.radians(self.dec1)), math.sin(math.radians(self.dec2))
        for vecs in pieces:
            zmin, zmax = _z_extent(vecs)
            if zmin <= hi + _EPS and zmax >= lo - _EPS:
                return True
        return False


def _clip(vecs, n):
    """Sutherland-Hodgman clip of a spherical polygon to the hemisphere n . x >= 0."""
    out = []
    k = len(vecs)
    for i in range(k):
        p, q = vecs[i], vecs[(i + 1) % k]
        sp, sq = _dot(n, p), _dot(n, q)
        if sp >= 0:
            out.append(p)
        if (sp >= 0) != (sq >= 0):
            x = (sp * q[0] - sq * p[0], sp * q[1] - sq * p[1], sp * q[2] - sq * p[2])
            if sp < 0:
                x = (-x[0], -x[1], -x[2])
            out.append(_norm(x))
    return out if len(out) >= 3 else ([out[0]] if out else [])


def _z_extent(vecs):
    """Min and max of z over a convex spherical polygon (vertices, edge extrema, poles)."""
    zs = [v[2] for v in vecs]
    zmin, zmax = min(zs), max(zs)
    k = len(vecs)
    if k < 3:
        return zmin, zmax
    normals = []
    for i in range(k):
        a, b = vecs[i], vecs[(i + 1) % k]
        m = _cross(a, b)
        if _dot(m, m) < _EPS:
            continue
        normals.append(m)
        # The z extremes of the edge's great circle are +-(zhat - (zhat.m) m) normalised.
        mm = _norm(m)
        t = (-mm[2] * mm[0], -mm[2] * mm[1], 1.0 - mm[2] * mm[2])
        if _dot(t, t) < _EPS:
            continue
        t = _norm(t)
        for e in (t, (-t[0], -t[1], -t[2])):
            if _dot(_cross(a, e), m) >= 0 and _dot(_cross(e, b), m) >= 0:
                zmin, zmax = min(zmin, e[2]), max(zmax, e[2])
    centre = _norm(tuple(sum(v[i] for v in vecs) for i in range(3)))
    signs = [1.0 if _dot(m, centre) >= 0 else -1.0 for m in normals]
    for pole in ((0.0, 0.0, 1.0), (0.0, 0.0, -1.0)):
        if all(s * _dot(m, pole) >= -_EPS for s, m in zip(signs, normals)):
            zmin, zmax = min(zmin, pole[2]), max(zmax, pole[2])
    return zmin, zmax


# --- parsing -------------------------------------------------------------------------------------

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf(?:inity)?"


@lru_cache(maxsize=200_000)
def parse(text):
    """Parse an STC-S-like geometry string (as stored in the tables) into a shape object."""
    if not isinstance(text, str):
        raise GeometryError(f"not a geometry: {text!r}")
    parts = text.split()
    if not parts:
        raise GeometryError("empty geometry string")
    kind = parts[0].upper()
    rest = parts[1:]
    if rest and not re.fullmatch(_NUM, rest[0], flags=re.IGNORECASE):
        frame = rest.pop(0).upper()
        if frame not in _FRAMES:
            raise GeometryError(f"coordinate system {frame!r} is not supported; use ICRS")
    try:
        nums = [float(x) for x in rest]
    except ValueError:
        raise GeometryError(f"malformed {kind} geometry: {text!r}") from None
    if kind == "POINT" and len(nums) == 2:
        return Point(*nums)
    if kind == "CIRCLE" and len(nums) == 3:
        return Circle(*nums)
    if kind == "POLYGON" and len(nums) >= 6 and len(nums) % 2 == 0:
        return Polygon(nums[0::2], nums[1::2])
    if kind == "RANGE" and len(nums) == 4:
        return CoordRange(*nums)
    raise GeometryError(f"malformed geometry {text!r}: expected POINT ra dec, CIRCLE ra dec r "
                        "or POLYGON ra1 dec1 ra2 dec2 ra3 dec3 ...")


def _shape(value):
    return parse(value) if isinstance(value, str) else value


# --- predicates ----------------------------------------------------------------------------------

def _arc_distance(p, a, b):
    """Angular distance (deg) from unit vector p to the minor great-circle arc a-b."""
    m = _cross(a, b)
    if _dot(m, m) > _EPS:
        m = _norm(m)
        if _dot(_cross(a, p), m) >= 0 and _dot(_cross(p, b), m) >= 0:
            return math.degrees(math.asin(min(1.0, abs(_dot(p, m)))))
    return min(_angle(p, a), _angle(p, b))


def _edge_distance(vec, poly):
    return min(_arc_distance(vec, a, b) for a, b in poly.edges)


def _edges_cross(pa, pb):
    a = np.array(pa.vecs)
    b = np.array(pb.vecs)
    a2, b2 = np.roll(a, -1, axis=0), np.roll(b, -1, axis=0)
    return any(np.any(great_circle_arc.intersects(a, a2, b[i], b2[i])) for i in range(len(b)))


def contains(a, b):
    """ADQL CONTAINS: True when shape ``a`` lies wholly within shape ``b``."""
    a, b = _shape(a), _shape(b)
    ka, kb = a.kind, b.kind
    if ka == "POINT":
        if kb == "POINT":
            return _angle(a.vec, b.vec) < 1e-10
        if kb == "CIRCLE":
            return _angle(a.vec, b.vec) <= b.r
        if kb == "POLYGON":
            return b.contains_vec(a.vec)
        if kb == "RANGE":
            return b.contains_radec(a.ra, a.dec)
    elif ka == "CIRCLE":
        if kb == "CIRCLE":
            return _angle(a.vec, b.vec) + a.r <= b.r
        if kb == "POLYGON":
            return b.contains_vec(a.vec) and _edge_distance(a.vec, b) >= a.r
        if kb == "POINT":
            return a.r == 0 and _angle(a.vec, b.vec) < 1e-10
    elif ka == "POLYGON":
        if kb == "CIRCLE":
            return b.r <= 90.0 and all(_angle(v, b.vec) <= b.r for v in a.vecs)
        if kb == "POLYGON":
            if not all(b.contains_vec(v) for v in a.vecs):
                return False
            return not _edges_cross(a, b)
        if kb == "POINT":
            return False
    raise GeometryError(f"CONTAINS({ka}, {kb}) is not supported")


def intersects(a, b):
    """ADQL INTERSECTS: True when the two shapes share at least one point."""
    a, b = _shape(a), _shape(b)
    if a.kind == "POINT":
        return contains(a, b)
    if b.kind == "POINT":
        return contains(b, a)
    if a.kind == "POLYGON" and b.kind != "POLYGON":
        a, b = b, a
    ka, kb = a.kind, b.kind
    if ka == "CIRCLE" and kb == "CIRCLE":
        return _angle(a.vec, b.vec) <= a.r + b.r
    if ka == "CIRCLE" and kb == "POLYGON":
        if not b.may_contain(a.vec, margin=a.r):
            return False
        return b.contains_vec(a.vec) or _edge_distance(a.vec, b) <= a.r
    if ka == "POLYGON" and kb == "POLYGON":
        if b.cap_radius < 90.0 and a.cap_radius < 90.0 and \
                _angle(a.cap_center, b.cap_center) > a.cap_radius + b.cap_radius:
            return False
        return bool(a.sph.intersects_poly(b.sph))
    if ka == "RANGE" and kb == "POLYGON":
        if b.cap_radius > 90.0:
            raise GeometryError("INTERSECTS(RANGE, POLYGON) needs a polygon smaller than a "
                                "hemisphere")
        return a.intersects_polygon(b)
    raise GeometryError(f"INTERSECTS({ka}, {kb}) is not supported")


def distance_deg(a, b):
    a, b = _shape(a), _shape(b)
    if a.kind != "POINT" or b.kind != "POINT":
        raise GeometryError("DISTANCE takes two POINTs (or ra1, dec1, ra2, dec2)")
    return _angle(a.vec, b.vec)


def area_deg2(a):
    a = _shape(a)
    sr_to_deg2 = (180.0 / math.pi) ** 2
    if a.kind == "CIRCLE":
        return 2 * math.pi * (1 - math.cos(math.radians(a.r))) * sr_to_deg2
    if a.kind == "POLYGON":
        return float(a.sph.area()) * sr_to_deg2
    if a.kind == "POINT":
        return 0.0
    raise GeometryError(f"AREA({a.kind}) is not supported")


# --- ADQL constructors, as SQLite functions ------------------------------------------------------

def _strip_frame(args, name):
    """ADQL 2.0 puts a coordinate system string first; ADQL 2.1 allows leaving it out."""
    args = list(args)
    if args and isinstance(args[0], str) and args[0].split()[0].upper() not in \
            ("POINT", "CIRCLE", "POLYGON"):
        frame = args.pop(0).strip().upper()
        if frame not in _FRAMES:
            raise GeometryError(f"{name}: coordinate system {frame!r} is not supported; use 'ICRS'")
    return args


def _number(x, name):
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise GeometryError(f"{name} expects numbers, got {x!r}")
    return float(x)


def sql_point(*args):
    args = _strip_frame(args, "POINT")
    if any(x is None for x in args):
        return None
    if len(args) != 2:
        raise GeometryError("POINT takes ('ICRS', ra, dec)")
    return Point(_number(args[0], "POINT"), _number(args[1], "POINT")).stcs()


def sql_circle(*args):
    args = _strip_frame(args, "CIRCLE")
    if any(x is None for x in args):
        return None
    if len(args) == 2 and isinstance(args[0], str):
        p = _shape(args[0])
        if p.kind != "POINT":
            raise GeometryError("CIRCLE(point, radius) needs a POINT")
        return Circle(p.ra, p.dec, _number(args[1], "CIRCLE")).stcs()
    if len(args) != 3:
        raise GeometryError("CIRCLE takes ('ICRS', ra, dec, radius) or (POINT(...), radius)")
    return Circle(*(_number(x, "CIRCLE") for x in args)).stcs()


def sql_polygon(*args):
    args = _strip_frame(args, "POLYGON")
    if any(x is None for x in args):
        return None
    if args and all(isinstance(x, str) for x in args):
        pts = [_shape(x) for x in args]
        if any(p.kind != "POINT" for p in pts):
            raise GeometryError("POLYGON(point, point, point, ...) needs POINTs")
        ras, decs = [p.ra for p in pts], [p.dec for p in pts]
    else:
        nums = [_number(x, "POLYGON") for x in args]
        if len(nums) < 6 or len(nums) % 2:
            raise GeometryError("POLYGON takes ('ICRS', ra1, dec1, ra2, dec2, ra3, dec3, ...)")
        ras, decs = nums[0::2], nums[1::2]
    return Polygon(ras, decs).stcs()


def sql_box(*args):
    """ADQL 2.0 BOX(frame, ra, dec, width, height): a polygon whose great-circle edges pass
    through the tangent-plane points (+-width/2, +-height/2) around the centre."""
    args = _strip_frame(args, "BOX")
    if any(x is None for x in args):
        return None
    if len(args) != 4:
        raise GeometryError("BOX takes ('ICRS', ra, dec, width, height)")
    ra0, dec0, w, h = (_number(x, "BOX") for x in args)
    _check_dec(dec0)
    if w <= 0 or h <= 0 or w >= 180 or h >= 180:
        raise GeometryError("BOX width and height must lie in (0, 180) deg")
    xi, eta = math.tan(math.radians(w / 2)), math.tan(math.radians(h / 2))
    d0 = math.radians(dec0)
    ras, decs = [], []
    for x, y in ((-xi, -eta), (xi, -eta), (xi, eta), (-xi, eta)):
        denom = math.cos(d0) - y * math.sin(d0)
        ras.append(ra0 + math.degrees(math.atan2(x, denom)))
        decs.append(math.degrees(math.atan2(math.sin(d0) + y * math.cos(d0), math.hypot(x, denom))))
    return Polygon(ras, decs).stcs()


def sql_coordrange(*args):
    args = _strip_frame(args, "COORDRANGE")
    if len(args) != 4:
        raise GeometryError("COORDRANGE takes ('ICRS', ra1, ra2, dec1, dec2)")
    return CoordRange(*(_number(x, "COORDRANGE") for x in args)).stcs()


def _predicate(fn):
    def wrapped(a, b):
        if a is None or b is None:
            return None
        return 1 if fn(a, b) else 0
    return wrapped


def sql_distance(*args):
    if any(x is None for x in args):
        return None
    if len(args) == 4:
        a = Point(_number(args[0], "DISTANCE"), _number(args[1], "DISTANCE"))
        b = Point(_number(args[2], "DISTANCE"), _number(args[3], "DISTANCE"))
        return _angle(a.vec, b.vec)
    if len(args) == 2:
        return distance_deg(args[0], args[1])
    raise GeometryError("DISTANCE takes (POINT, POINT) or (ra1, dec1, ra2, dec2)")


def _coord(index):
    def fn(p):
        if p is None:
            return None
        s = _shape(p)
        if s.kind != "POINT":
            raise GeometryError(f"COORD{index + 1} takes a POINT, not a {s.kind}")
        return (s.ra, s.dec)[index]
    return fn


def sql_coordsys(g):
    return None if g is None else "ICRS"


def sql_area(g):
    return None if g is None else area_deg2(g)


#: name -> (python function, number of arguments or -1), registered on every connection.
FUNCTIONS = {
    "POINT": (sql_point, -1),
    "CIRCLE": (sql_circle, -1),
    "POLYGON": (sql_polygon, -1),
    "BOX": (sql_box, -1),
    "COORDRANGE": (sql_coordrange, -1),
    "CONTAINS": (_predicate(contains), 2),
    "INTERSECTS": (_predicate(intersects), 2),
    "DISTANCE": (sql_distance, -1),
    "COORD1": (_coord(0), 1),
    "COORD2": (_coord(1), 1),
    "COORDSYS": (sql_coordsys, 1),
    "AREA": (sql_area, 1),
}


def register(con, wrap=lambda f: f):
    """Register the geometry functions on an sqlite3 connection; ``wrap`` may decorate each
    (the engine uses it to keep the message of an exception raised inside a function)."""
    for name, (fn, nargs) in FUNCTIONS.items():
        con.create_function(name, nargs, wrap(fn), deterministic=True)
