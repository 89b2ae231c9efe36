"""Where a synthetic frame looks: its TAN-SIP WCS, footprint and cutout windows.

Every frame uses the real header's spatial WCS (``CRPIX = 1020.5``, the real order-3 SIP with
its non-zero ``A_0_0``/``B_0_0``) re-pointed to the spec's ``(ra, dec)`` and rotated by its
``pa``: ``PC = Rot(pa) @ PC_real`` where ``Rot`` turns north towards east, so ``pa = 0``
reproduces the real PC matrix exactly.

:class:`FrameGeometry` evaluates that WCS with numpy (the gnomonic projection as vectors, SIP
forward, Newton-inverted SIP), which is what the renderer needs for a few points per frame;
it agrees with astropy's ``all_pix2world`` to ~1e-10 deg. :func:`frame_wcs` gives the astropy
object for everything else. :func:`footprints` evaluates it at the pixel-grid corners and centre
of many frames at once: the SIP offsets of those five pixels are the same for every frame, only
the rotation and the tangent point differ.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ._real import real_sip

__all__ = [
    "NPIX", "CRPIX", "PIXEL_SCALE_ARCSEC", "OMEGA_PIX_SR", "REAL_PC",
    "FrameGeometry", "frame_geometry", "frame_wcs", "footprint", "footprints",
    "cutout_window", "pc_matrix", "pc_matrices", "unit_vector", "radec", "ecliptic_latitude",
    "ecliptic_lonlat", "ARRAY_SPACING_DEG", "array_index", "move_along_x", "boresight",
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


def pc_matrices(pa):
    """The real PC matrix rotated by ``pa`` degrees (north through east), shape ``(..., 2, 2)``.

    Rounded to 12 significant digits like the real header, so that the matrix written to the
    header is exactly the one used everywhere.
    """
    t = np.deg2rad(np.asarray(pa, float))
    c, s = np.cos(t), np.sin(t)
    (a, b), (d, e) = REAL_PC
    pc = np.stack([np.stack([c * a + s * d, c * b + s * e], -1),
                   np.stack([-s * a + c * d, -s * b + c * e], -1)], -2)
    return np.array([float(f"{v:.12g}") for v in pc.ravel().tolist()]).reshape(pc.shape)


def pc_matrix(pa):
    """The (2, 2) PC matrix of one frame rotated by ``pa`` degrees; see :func:`pc_matrices`."""
    return pc_matrices(float(pa))


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
    """Unit vectors (centre, east, north) at sky positions, stacked on the last axis."""
    a, d = np.deg2rad(ra), np.deg2rad(dec)
    ca, sa, cd, sd = np.cos(a), np.sin(a), np.cos(d), np.sin(d)
    c = np.stack(np.broadcast_arrays(cd * ca, cd * sa, sd), axis=-1)
    east = np.stack(np.broadcast_arrays(-sa, ca, np.zeros_like(sa)), axis=-1)
    north = np.stack(np.broadcast_arrays(-sd * ca, -sd * sa, cd), axis=-1)
    return c, east, north


def _powers(u):
    """``[1, u, u², u³]`` and its derivative, stacked on a new first axis."""
    u2 = u * u
    return np.array([np.ones_like(u), u, u2, u2 * u]), np.array([np.zeros_like(u), np.ones_like(u), 2 * u, 3 * u2])


def _poly(m, pu, pv):
    """``sum m[p, q] u**p v**q`` from the stacked powers of ``u`` and ``v``."""
    return np.einsum("p...,pq,q...->...", pu, m, pv)


def _sip_offsets(x, y):
    """Offsets from CRPIX of 0-based pixels ``(x, y)`` with the forward SIP applied (pixels)."""
    a, b, _, _ = real_sip()
    u = x + 1.0 - CRPIX
    v = y + 1.0 - CRPIX
    (pu, _), (pv, _) = _powers(u), _powers(v)
    return u + _poly(a, pu, pv), v + _poly(b, pu, pv)


def _deproject(c, e, n, pc, uf, vf):
    """``(ra, dec)`` of SIP-corrected offsets ``(uf, vf)`` through ``pc`` and the gnomonic
    projection at the tangent point with basis ``(c, e, n)``; all broadcast together."""
    xi = np.deg2rad(pc[..., 0, 0] * uf + pc[..., 0, 1] * vf)
    eta = np.deg2rad(pc[..., 1, 0] * uf + pc[..., 1, 1] * vf)
    return radec(c + xi[..., None] * e + eta[..., None] * n)


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
        uf, vf = _sip_offsets(x, y)
        return _deproject(self._c, self._e, self._n, self.pc, uf, vf)

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
    from astropy.wcs import WCS, Sip

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


#: 0-based outer corners of the pixel grid, in the order IRSA writes s_region, then the centre.
_FOOTPRINT_PIXELS = np.array([[-0.5, -0.5], [NPIX - 0.5, -0.5], [NPIX - 0.5, NPIX - 0.5],
                              [-0.5, NPIX - 0.5], [(NPIX - 1) / 2, (NPIX - 1) / 2]])


def footprints(specs):
    """SIA footprints of many frames at once, computed from their WCS with SIP as IRSA does (§2.5).

    Every frame shares the pixel grid, CRPIX and SIP, so the SIP offsets of the four outer
    corners and the centre pixel (1019.5, 1019.5) are evaluated once; the rotation by each
    frame's PC and the gnomonic deprojection at its CRVAL are vectorised over the frames.

    Returns a dict with ``s_ra``, ``s_dec`` (arrays, the centre pixel), ``corners`` (N x 4 x 2
    array of ra, dec), ``s_region`` (list of ``'POLYGON ICRS ra1 dec1 ... ra4 dec4 ra1 dec1'``)
    and ``s_fov`` (deg, IRSA's 2040 px x 6.15 arcsec, the same for every frame).
    """
    specs = list(specs)
    n = len(specs)
    ra = np.fromiter((s.ra for s in specs), float, n) % 360.0
    dec = np.fromiter((s.dec for s in specs), float, n)
    pa = np.fromiter((s.pa for s in specs), float, n)
    c, e, north = local_basis(ra, dec)
    uf, vf = _sip_offsets(_FOOTPRINT_PIXELS[:, 0], _FOOTPRINT_PIXELS[:, 1])
    sky_ra, sky_dec = _deproject(c[:, None], e[:, None], north[:, None], pc_matrices(pa)[:, None],
                                 uf, vf)
    corners = np.stack([sky_ra[:, :4], sky_dec[:, :4]], axis=-1)
    closed = np.concatenate([corners, corners[:, :1]], axis=1).reshape(n, 10)
    regions = ["POLYGON ICRS " + " ".join(map(repr, row)) for row in closed.tolist()]
    return {"s_ra": sky_ra[:, 4], "s_dec": sky_dec[:, 4], "corners": corners,
            "s_region": regions, "s_fov": S_FOV}


def footprint(spec):
    """SIA footprint of one frame: :func:`footprints` of ``[spec]``, with floats for ``s_ra``,
    ``s_dec``, a 4 x 2 array ``corners`` and one ``s_region`` string."""
    fp = footprints([spec])
    return {"s_ra": float(fp["s_ra"][0]), "s_dec": float(fp["s_dec"][0]),
            "s_region": fp["s_region"][0], "corners": fp["corners"][0], "s_fov": S_FOV}


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
