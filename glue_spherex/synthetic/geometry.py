"""Where a synthetic frame looks: its TAN-SIP WCS, footprint and cutout windows.

Every frame uses the real header's spatial WCS (``CRPIX = 1020.5``, the real order-3 SIP with
its non-zero ``A_0_0``/``B_0_0``) re-pointed to the spec's ``(ra, dec)`` and rotated by its
``pa``: ``PC = Rot(pa) @ PC_real`` where ``Rot`` turns north towards east, so ``pa = 0``
reproduces the real PC matrix exactly.

:class:`FrameGeometry` evaluates that WCS with numpy (the gnomonic projection as vectors, SIP
forward, Newton-inverted SIP), which is what the renderer needs for a few points per frame;
it agrees with astropy's ``all_pix2world`` to ~1e-10 deg. :func:`frame_wcs` gives the astropy
object for everything else.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from astropy.wcs import WCS, Sip

from ._real import real_sip

__all__ = [
    "NPIX", "CRPIX", "PIXEL_SCALE_ARCSEC", "OMEGA_PIX_SR", "REAL_PC",
    "FrameGeometry", "frame_geometry", "frame_wcs", "footprint", "cutout_window",
    "pc_matrix", "unit_vector", "radec", "ecliptic_latitude", "ecliptic_lonlat",
    "ARRAY_SPACING_DEG", "array_index", "move_along_x", "boresight",
]

NPIX = 2040
CRPIX = 1020.5
#: Nominal pixel scale (arcsec) and solid angle (sr) used for all flux bookkeeping.
PIXEL_SCALE_ARCSEC = 6.153
OMEGA_PIX_SR = float(np.deg2rad(PIXEL_SCALE_ARCSEC / 3600.0) ** 2)
#: PC matrix of the real file 2025W51_1A_0684_2 D3 (degrees per pixel, CDELT = 1).
REAL_PC = np.array([[0.00157606681598, 0.000724894672199],
                    [0.000663788690562, -0.00154821102653]])
REAL_PC.setflags(write=False)
#: IRSA's s_fov: 2040 px times s_pixel_scale = 6.15 arcsec.
S_FOV = round(NPIX * 6.15 / 3600.0, 3)
_OBLIQUITY = np.deg2rad(23.4392911)


def pc_matrix(pa):
    """The real PC matrix rotated by ``pa`` degrees (north through east).

    Rounded to 12 significant digits like the real header, so that the matrix written to the
    header is exactly the one used everywhere.
    """
    if pa == 0:
        return REAL_PC.copy()
    c, s = np.cos(np.deg2rad(pa)), np.sin(np.deg2rad(pa))
    pc = np.array([[c, s], [-s, c]]) @ REAL_PC
    return np.array([[float(f"{v:.12g}") for v in row] for row in pc])


def unit_vector(ra, dec):
    """ICRS unit vector(s), stacked on the last axis, for ``ra``/``dec`` in degrees."""
    a, d = np.deg2rad(ra), np.deg2rad(dec)
    cd = np.cos(d)
    return np.stack(np.broadcast_arrays(cd * np.cos(a), cd * np.sin(a), np.sin(d)), axis=-1)


def radec(vec):
    """``(ra, dec)`` in degrees, ra in [0, 360), of vectors stacked on the last axis."""
    vec = np.asarray(vec, float)
    x, y, z = vec[..., 0], vec[..., 1], vec[..., 2]
    ra = np.rad2deg(np.arctan2(y, x)) % 360.0
    dec = np.rad2deg(np.arctan2(z, np.hypot(x, y)))
    return ra, dec


def ecliptic_latitude(ra, dec):
    """Ecliptic latitude (deg, J2000 mean obliquity) of ICRS positions."""
    v = unit_vector(ra, dec)
    z = -np.sin(_OBLIQUITY) * v[..., 1] + np.cos(_OBLIQUITY) * v[..., 2]
    return np.rad2deg(np.arcsin(np.clip(z, -1.0, 1.0)))


def ecliptic_lonlat(ra, dec):
    """Ecliptic longitude and latitude (deg, J2000 mean obliquity) of ICRS positions."""
    v = unit_vector(ra, dec)
    ce, se = np.cos(_OBLIQUITY), np.sin(_OBLIQUITY)
    x, y, z = v[..., 0], ce * v[..., 1] + se * v[..., 2], -se * v[..., 1] + ce * v[..., 2]
    return np.rad2deg(np.arctan2(y, x)) % 360.0, np.rad2deg(np.arcsin(np.clip(z, -1.0, 1.0)))


def local_basis(ra, dec):
    """Unit vectors (centre, east, north) at a sky position."""
    a, d = np.deg2rad(ra), np.deg2rad(dec)
    c = np.array([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)])
    east = np.array([-np.sin(a), np.cos(a), 0.0])
    north = np.array([-np.sin(d) * np.cos(a), -np.sin(d) * np.sin(a), np.cos(d)])
    return c, east, north


def _powers(u):
    """``[1, u, u², u³]`` and its derivative, stacked on a new first axis."""
    u2 = u * u
    return np.array([np.ones_like(u), u, u2, u2 * u]), np.array([np.zeros_like(u), np.ones_like(u), 2 * u, 3 * u2])


def _poly(m, pu, pv):
    """``sum m[p, q] u**p v**q`` from the stacked powers of ``u`` and ``v``."""
    return np.einsum("p...,pq,q...->...", pu, m, pv)


class FrameGeometry:
    """The TAN-SIP WCS of one frame, evaluated with numpy (0-based pixels, degrees)."""

    def __init__(self, ra, dec, pa):
        self.crval = (float(ra) % 360.0, float(dec))
        self.pc = pc_matrix(pa)
        self._pcinv = np.linalg.inv(self.pc)
        self._c, self._e, self._n = local_basis(*self.crval)
        self._a, self._b, self._ap, self._bp = real_sip()

    def pix2world(self, x, y):
        """Sky position (deg) of 0-based pixel positions, SIP applied (``all_pix2world``)."""
        x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
        u = x + 1.0 - CRPIX
        v = y + 1.0 - CRPIX
        (pu, _), (pv, _) = _powers(u), _powers(v)
        uf = u + _poly(self._a, pu, pv)
        vf = v + _poly(self._b, pu, pv)
        xi = np.deg2rad(self.pc[0, 0] * uf + self.pc[0, 1] * vf)
        eta = np.deg2rad(self.pc[1, 0] * uf + self.pc[1, 1] * vf)
        vec = (self._c + xi[..., None] * self._e + eta[..., None] * self._n)
        return radec(vec)

    def world2pix(self, ra, dec):
        """0-based pixel positions of sky positions; NaN on the far hemisphere."""
        s = unit_vector(ra, dec)
        w = s @ self._c
        with np.errstate(divide="ignore", invalid="ignore"):
            xi = np.rad2deg(np.where(w > 0, (s @ self._e) / w, np.nan))
            eta = np.rad2deg(np.where(w > 0, (s @ self._n) / w, np.nan))
        uf = self._pcinv[0, 0] * xi + self._pcinv[0, 1] * eta
        vf = self._pcinv[1, 0] * xi + self._pcinv[1, 1] * eta
        # AP/BP give a first guess good to ~0.01 px; Newton on the forward SIP finishes.
        (pu, _), (pv, _) = _powers(uf), _powers(vf)
        u = uf + _poly(self._ap, pu, pv)
        v = vf + _poly(self._bp, pu, pv)
        for _ in range(3):
            (pu, du), (pv, dv) = _powers(u), _powers(v)
            fu = u + _poly(self._a, pu, pv) - uf
            fv = v + _poly(self._b, pu, pv) - vf
            j11, j12 = 1 + _poly(self._a, du, pv), _poly(self._a, pu, dv)
            j21, j22 = _poly(self._b, du, pv), 1 + _poly(self._b, pu, dv)
            det = j11 * j22 - j12 * j21
            u = u - (j22 * fu - j12 * fv) / det
            v = v - (-j21 * fu + j11 * fv) / det
        return u + CRPIX - 1.0, v + CRPIX - 1.0

    def xaxis_direction(self):
        """Unit vector on the sky along +x (detector NAXIS1) at the reference point."""
        d = self.pc[0, 0] * self._e + self.pc[1, 0] * self._n
        return d / np.linalg.norm(d)


# --- The focal plane --------------------------------------------------------------------------
#
# D1, D2, D3 sit side by side along detector x (D1 at -x); D4, D5, D6 see the same sky as
# D1, D2, D3 through the dichroic, with the same WCS.

#: Centre-to-centre spacing (deg) of neighbouring arrays on the sky.
ARRAY_SPACING_DEG = 3.75


def array_index(detector):
    """Position of a detector's array across the focal plane: 0 (D1/D4), 1 (D2/D5), 2 (D3/D6)."""
    return (int(detector) - 1) % 3


def move_along_x(ra, dec, pa, delta_deg):
    """Pointing ``(ra, dec, pa)`` of an array ``delta_deg`` further along +x of a rigid focal plane.

    The centre moves along the great circle of the detector x axis; ``pa`` is re-measured from
    the local north at the new centre.
    """
    c, e, n = local_basis(ra, dec)
    pc = pc_matrix(pa)
    dx = pc[0, 0] * e + pc[1, 0] * n
    dx /= np.linalg.norm(dx)
    d = np.deg2rad(delta_deg)
    c2 = np.cos(d) * c + np.sin(d) * dx
    dx2 = -np.sin(d) * c + np.cos(d) * dx
    ra2, dec2 = radec(c2)
    _, e2, n2 = local_basis(ra2, dec2)
    theta0 = np.arctan2(REAL_PC[0, 0], REAL_PC[1, 0])
    pa2 = np.rad2deg(np.arctan2(dx2 @ e2, dx2 @ n2) - theta0)
    return float(ra2), float(dec2), float((pa2 + 180.0) % 360.0 - 180.0)


def boresight(spec):
    """``(ra, dec, pa)`` of the focal-plane centre (the D2/D5 array) for a frame."""
    return move_along_x(spec.ra, spec.dec, spec.pa,
                        (1 - array_index(spec.detector)) * ARRAY_SPACING_DEG)


@lru_cache(maxsize=8192)
def frame_geometry(spec):
    """The (cached) :class:`FrameGeometry` of a :class:`FrameSpec`."""
    return FrameGeometry(spec.ra, spec.dec, spec.pa)


def frame_wcs(spec):
    """The astropy celestial WCS of a frame: TAN-SIP with the real coefficients.

    Equivalent to ``WCS(make_frame(spec)['IMAGE'].header)``.
    """
    g = frame_geometry(spec)
    w = WCS(naxis=2)
    w.wcs.crpix = [CRPIX, CRPIX]
    w.wcs.pc = g.pc
    w.wcs.cdelt = [1.0, 1.0]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    w.wcs.crval = list(g.crval)
    w.wcs.lonpole = 180.0
    w.wcs.latpole = g.crval[1]
    w.wcs.radesys = "ICRS"
    w.wcs.mjdref = [0.0, 0.0]
    a, b, ap, bp = real_sip()
    w.sip = Sip(a, b, ap, bp, [CRPIX, CRPIX])
    w.pixel_shape = (NPIX, NPIX)
    w.wcs.set()
    return w


#: 0-based outer corners of the pixel grid, in the order IRSA writes s_region.
_CORNERS = np.array([[-0.5, -0.5], [NPIX - 0.5, -0.5], [NPIX - 0.5, NPIX - 0.5], [-0.5, NPIX - 0.5]])


@lru_cache(maxsize=8192)
def footprint(spec):
    """SIA footprint of a frame, computed from its WCS with SIP as IRSA does (§2.5).

    Returns a dict with ``s_ra``, ``s_dec`` (pixel 1019.5, 1019.5), ``corners`` (4x2 array of
    ra, dec), ``s_region`` (``'POLYGON ICRS ra1 dec1 ... ra4 dec4 ra1 dec1'``) and ``s_fov``
    (deg, the mean side of the footprint).
    """
    g = frame_geometry(spec)
    ra, dec = g.pix2world(_CORNERS[:, 0], _CORNERS[:, 1])
    s_ra, s_dec = g.pix2world(np.array((NPIX - 1) / 2), np.array((NPIX - 1) / 2))
    corners = np.column_stack([ra, dec])
    corners.setflags(write=False)
    verts = list(corners) + [corners[0]]
    region = "POLYGON ICRS " + " ".join(f"{float(r)!r} {float(d)!r}" for r, d in verts)
    return {"s_ra": float(s_ra), "s_dec": float(s_dec), "s_region": region,
            "corners": corners, "s_fov": S_FOV}


def cutout_window(spec, ra, dec, width_px, height_px):
    """The IRSA-style cutout window ``(x0, y0, nx, ny)`` around ``(ra, dec)``.

    The window is centred on the pixel nearest to the position (for even sizes the extra
    pixel goes to the high side, as in IRSA's 6x6 example where the target fell at 2.17, 2.35)
    and clipped to the frame. Returns None if it does not overlap the frame.
    """
    x, y = frame_geometry(spec).world2pix(np.array(float(ra)), np.array(float(dec)))
    if not (np.isfinite(x) and np.isfinite(y)):
        return None
    width_px, height_px = int(width_px), int(height_px)
    if width_px < 1 or height_px < 1:
        return None
    x0 = int(np.floor(x + 0.5)) - (width_px - 1) // 2
    y0 = int(np.floor(y + 0.5)) - (height_px - 1) // 2
    x1, y1 = min(x0 + width_px, NPIX), min(y0 + height_px, NPIX)
    x0, y0 = max(x0, 0), max(y0, 0)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1 - x0, y1 - y0
