"""The deterministic synthetic sky that every synthetic frame sees, with exact truth.

:func:`default_sky` (identical in every process) puts around each target of :data:`TARGETS`
a handful of bright point sources with analytic SEDs and ~30 fainter field stars, and at M101
a face-on galaxy (nucleus plus exponential disc, each with its own SED); :func:`zodi` is the
zodiacal light. Flux densities are in µJy, surface brightness in MJy/sr, a pixel is
``OMEGA_PIX_SR``, and shapes are circular Gaussians, so the truth
(``true_flux_density(name, λ)``, aperture fluxes) is analytic -- the conventions the
spectrum extractor and the tests rely on are in ``docs/archive.rst``, "How the synthetic
data are made".
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import numpy as np

from ...errors import SpherexInputError
from .geometry import unit_vector

__all__ = ["TARGETS", "Source", "SkyModel", "default_sky", "zodi", "BANDS"]

#: Targets of the local archive: name -> (ra, dec) in degrees.
TARGETS = {
    "M101": (210.80227, 54.34895),
    "M31": (10.68470833, 41.26875),
    "RA0": (0.2, -1.0),
    "NEP": (270.0, 66.56),
}

#: Wavelength coverage (µm) of each detector, from IRSA's em_min/em_max.
BANDS = {1: (0.7455, 1.1167), 2: (1.1033, 1.6499), 3: (1.6301, 2.4346),
         4: (2.4027, 3.8473), 5: (3.8113, 4.4300), 6: (4.4115, 5.0096)}

_HC_K = 14387.77  # h c / k in µm K
_FWHM_TO_SIGMA = 1.0 / np.sqrt(8.0 * np.log(2.0))


def _bnu(wl, temp):
    """Planck B_nu shape (arbitrary units) at wavelength ``wl`` µm."""
    wl = np.asarray(wl, float)
    return wl**-3 / np.expm1(_HC_K / (wl * temp))


def _gauss(x, mu, sigma):
    return np.exp(-0.5 * ((x - mu) / sigma) ** 2)


# --- SEDs: callables wavelength (µm) -> flux density (µJy) ------------------------------------


@dataclass(frozen=True)
class StellarSED:
    """Photosphere: blackbody x (1 + H⁻ bump at 1.6 µm) x CO absorption at 2.3 and 4.6 µm."""

    f_16: float  # µJy at 1.6 µm
    temp: float
    bump: float = 0.25
    co: float = 0.10

    def _shape(self, wl):
        wl = np.asarray(wl, float)
        hminus = 1.0 + self.bump * np.exp(-0.5 * (np.log(wl / 1.6) / 0.16) ** 2)
        co = (1.0 - self.co * _gauss(wl, 2.36, 0.06)) * (1.0 - 0.8 * self.co * _gauss(wl, 4.65, 0.12))
        return _bnu(wl, self.temp) * hminus * co

    @cached_property
    def _norm(self):
        return self.f_16 / float(self._shape(1.6))

    def __call__(self, wl):
        return self._norm * self._shape(wl)


@dataclass(frozen=True)
class BlackbodySED:
    f_ref: float  # µJy at wl_ref
    temp: float
    wl_ref: float = 2.0

    @cached_property
    def _norm(self):
        return self.f_ref / float(_bnu(self.wl_ref, self.temp))

    def __call__(self, wl):
        return self._norm * _bnu(wl, self.temp)


@dataclass(frozen=True)
class LineSED:
    """Power-law continuum F ∝ λ**slope plus Gaussian emission lines.

    ``lines`` holds (observed centre µm, peak µJy above the continuum, FWHM µm).
    """

    f_ref: float
    slope: float
    lines: tuple = ()
    wl_ref: float = 2.0

    def __call__(self, wl):
        wl = np.asarray(wl, float)
        out = self.f_ref * (wl / self.wl_ref) ** self.slope
        for centre, peak, fwhm in self.lines:
            out = out + peak * _gauss(wl, centre, fwhm * _FWHM_TO_SIGMA)
        return out


@dataclass(frozen=True)
class SumSED:
    parts: tuple

    def __call__(self, wl):
        return sum(p(wl) for p in self.parts)


@dataclass(frozen=True)
class GalaxyDiscSED:
    """Stellar disc (bump at 1.6 µm) + 3.3/3.4 µm PAH + 700 K dust + Paα and Brα lines."""

    f_16: float

    @cached_property
    def _stars(self):
        return StellarSED(self.f_16, 4000.0, bump=0.35, co=0.08)

    @cached_property
    def _dust_norm(self):
        return 0.06 * self.f_16 / float(_bnu(4.5, 700.0))

    def __call__(self, wl):
        wl = np.asarray(wl, float)
        pah = (0.40 * _gauss(wl, 3.29, 0.05 * _FWHM_TO_SIGMA)
               + 0.10 * _gauss(wl, 3.40, 0.04 * _FWHM_TO_SIGMA))
        lines = 0.20 * _gauss(wl, 1.8751, 0.012) + 0.25 * _gauss(wl, 4.0512, 0.02)
        return (self._stars(wl) + self._dust_norm * _bnu(wl, 700.0)
                + self.f_16 * (pah + lines))


# --- Sources -------------------------------------------------------------------------------

#: Exponential disc of unit scale length as a mixture of circular Gaussians (weight, sigma).
_EXP_MOG = ((0.000532, 0.078578), (0.008347, 0.230498), (0.060224, 0.498797),
            (0.248085, 0.938687), (0.472038, 1.623347), (0.210774, 2.67112))


@dataclass(frozen=True)
class Component:
    """One circular Gaussian of a source: ``weight * sed`` spread with ``sigma_arcsec``
    (0 for a point)."""

    sigma_arcsec: float
    weight: float
    sed: object


@dataclass(frozen=True)
class Source:
    """A source of the synthetic sky. ``kind`` is ``'point'`` or ``'galaxy'``."""

    name: str
    ra: float
    dec: float
    kind: str
    components: tuple = field(repr=False)
    description: str = ""

    @cached_property
    def _sed_groups(self):
        groups = {}
        for c in self.components:
            w, _ = groups.get(id(c.sed), (0.0, None))
            groups[id(c.sed)] = (w + c.weight, c.sed)
        return tuple(groups.values())

    def flux_density(self, wl):
        """Total flux density (µJy) at wavelength ``wl`` (µm)."""
        return sum(w * sed(wl) for w, sed in self._sed_groups)

    def enclosed_fraction(self, component, radius_arcsec, fwhm_arcsec=None):
        """Fraction of one component's flux within ``radius_arcsec`` of the centre."""
        var = component.sigma_arcsec**2
        if fwhm_arcsec is not None:
            var += (fwhm_arcsec * _FWHM_TO_SIGMA) ** 2
        if var == 0:
            return 1.0
        return 1.0 - np.exp(-0.5 * radius_arcsec**2 / var)

    @cached_property
    def extent_arcsec(self):
        """Largest component sigma (0 for a point source)."""
        return max(c.sigma_arcsec for c in self.components)


def _offset(ra, dec, east_arcsec, north_arcsec):
    """Position offset by a tangent-plane vector (arcsec) from (ra, dec)."""
    d = np.deg2rad(dec)
    dra = east_arcsec / 3600.0 / np.cos(d)
    return (ra + dra) % 360.0, dec + north_arcsec / 3600.0


def _point(name, ra, dec, sed, description):
    return Source(name, float(ra), float(dec), "point", (Component(0.0, 1.0, sed),), description)


def _build_sources():
    z = 1.2  # 1 + z of the quasar
    qso = LineSED(20_000.0, 0.6, lines=(
        (0.65628 * z, 30_000.0, 0.65628 * z * 0.02), (1.09381 * z, 6_000.0, 1.09381 * z * 0.02),
        (1.28181 * z, 10_000.0, 1.28181 * z * 0.02), (1.87510 * z, 18_000.0, 1.87510 * z * 0.02),
        (4.05120 * z, 9_000.0, 4.05120 * z * 0.02)))
    bright = {
        # name suffix: (east", north", SED, description)
        "S1": (95.0, 40.0, StellarSED(300_000.0, 4200.0), "K giant: H- bump at 1.6 um, CO bands"),
        "S2": (-70.0, 110.0, BlackbodySED(150_000.0, 2500.0), "2500 K blackbody"),
        "S3": (-120.0, -60.0, qso, "z = 0.2 quasar, broad H I lines"),
        "S4": (60.0, -130.0, SumSED((StellarSED(40_000.0, 6500.0, bump=0.1, co=0.0),
                                     BlackbodySED(120_000.0, 900.0, wl_ref=4.5))),
               "dusty young star: photosphere + 900 K dust"),
    }
    sources = []
    for tname, (ra, dec) in TARGETS.items():
        if tname == "M101":
            h = 30.0  # disc scale length, arcsec
            disc = GalaxyDiscSED(400_000.0)
            nucleus = StellarSED(60_000.0, 4000.0, bump=0.30, co=0.12)
            comps = (Component(0.0, 1.0, nucleus),) + tuple(
                Component(s * h, w, disc) for w, s in _EXP_MOG)
            sources.append(Source("M101", ra, dec, "galaxy", comps,
                                  "face-on galaxy: nucleus + exponential disc (h = 30\"), "
                                  "1.6 um bump, 3.3 um PAH"))
        elif tname == "M31":
            sources.append(_point("M31", ra, dec, StellarSED(250_000.0, 4300.0, bump=0.3),
                                  "compact old stellar population"))
        elif tname == "RA0":
            sources.append(_point("RA0", ra, dec, qso, "z = 0.2 quasar, broad H I lines"))
        else:
            sources.append(_point(tname, ra, dec, StellarSED(200_000.0, 5200.0), "G star"))
        scale = 1.6 if tname == "M101" else 1.0  # keep companions off the disc
        for suffix, (de, dn, sed, desc) in bright.items():
            r, d = _offset(ra, dec, de * scale, dn * scale)
            sources.append(_point(f"{tname}-{suffix}", r, d, sed, desc))
        # Field stars: deterministic per target, 250" - 1 deg from it.
        rng = np.random.default_rng(hash_name(tname))
        n = 30
        rad = np.sqrt(rng.uniform((250 / 3600) ** 2, 1.0, n)) * 3600.0
        ang = rng.uniform(0, 2 * np.pi, n)
        f16 = 10 ** rng.uniform(2.7, 4.3, n)  # 0.5 - 20 mJy
        temps = rng.uniform(3500.0, 8000.0, n)
        for k in range(n):
            r, d = _offset(ra, dec, rad[k] * np.sin(ang[k]), rad[k] * np.cos(ang[k]))
            sources.append(_point(f"{tname}-F{k + 1:02d}", r, d,
                                  StellarSED(float(f16[k]), float(temps[k]), bump=0.2, co=0.05),
                                  "field star"))
    return tuple(sources)


def hash_name(name):
    """A stable integer from a string (Python's hash() is salted per process)."""
    return zlib.crc32(name.encode())


# --- Zodiacal light --------------------------------------------------------------------------


def zodi(wavelength_um, ecl_lat, mjd=None):
    """Smooth zodiacal-light surface brightness (MJy/sr).

    Scattered sunlight (a 5778 K blackbody, 0.40 MJy/sr at 1.25 µm) plus thermal emission
    (280 K, 0.35 MJy/sr at 4.9 µm), both at the ecliptic pole, brightening towards the
    ecliptic as ``1 + 2.5 exp(-|β|/15°)``, with a ±8 % annual modulation if ``mjd`` is given.
    """
    wl = np.asarray(wavelength_um, float)
    beta = np.abs(np.asarray(ecl_lat, float))
    scattered = 0.40 * _bnu(wl, 5778.0) / _bnu(1.25, 5778.0)
    thermal = 0.35 * _bnu(wl, 280.0) / _bnu(4.9, 280.0)
    out = (scattered + thermal) * (1.0 + 2.5 * np.exp(-beta / 15.0))
    if mjd is not None:
        out = out * (1.0 + 0.08 * np.cos(2 * np.pi * (float(mjd) - 60800.0) / 365.25))
    return out


# --- The sky ---------------------------------------------------------------------------------


def detector_for_wavelength(wl):
    """The detector whose band contains ``wl`` µm (the nearer band centre in overlaps)."""
    best = min(BANDS, key=lambda d: abs(wl - 0.5 * sum(BANDS[d])) / (BANDS[d][1] - BANDS[d][0]))
    return best


class SkyModel:
    """Sources with analytic SEDs and shapes, and the zodiacal light."""

    def __init__(self, sources):
        self.sources = list(sources)
        self._by_name = {s.name: s for s in self.sources}
        self._vec = unit_vector([s.ra for s in self.sources], [s.dec for s in self.sources])

    def source(self, name):
        try:
            return self._by_name[name]
        except KeyError:
            raise SpherexInputError(
                f"no source {name!r} in the synthetic sky; known: {', '.join(self._by_name)}"
            ) from None

    def true_flux_density(self, name, wavelength_um, radius_arcsec=None, fwhm_arcsec=None):
        """Flux density (µJy) of a source at ``wavelength_um``.

        ``radius_arcsec=None`` gives the total. With a radius, the flux within that circle
        around the source centre: intrinsic, or after a Gaussian PSF of ``fwhm_arcsec``
        (a point source without PSF is entirely inside any circle).
        """
        src = self.source(name)
        if radius_arcsec is None:
            return src.flux_density(wavelength_um)
        return sum(c.weight * c.sed(wavelength_um)
                   * src.enclosed_fraction(c, float(radius_arcsec), fwhm_arcsec)
                   for c in src.components)

    def zodi(self, wavelength_um, ecl_lat, mjd=None):
        """Zodiacal light (MJy/sr), see :func:`zodi`."""
        return zodi(wavelength_um, ecl_lat, mjd)

    def surface_brightness(self, ra, dec, wavelength_um, fwhm_arcsec=None):
        """Surface brightness (MJy/sr) of the sources convolved with a Gaussian PSF.

        Zodiacal light excluded. ``fwhm_arcsec`` defaults to the PSF of the detector whose
        band contains the wavelength (its ``PSF_FWHM``). Arrays broadcast.
        """
        from .psf import DETECTOR_FWHM

        ra, dec, wl = np.broadcast_arrays(np.asarray(ra, float), np.asarray(dec, float),
                                          np.asarray(wavelength_um, float))
        if fwhm_arcsec is None:
            fwhm = np.vectorize(lambda w: DETECTOR_FWHM[detector_for_wavelength(w)])(wl) \
                if wl.size else wl
        else:
            fwhm = np.broadcast_to(np.asarray(fwhm_arcsec, float), wl.shape)
        psf_var = (fwhm * _FWHM_TO_SIGMA) ** 2
        pts = unit_vector(ra, dec)
        out = np.zeros(wl.shape)
        arcsec2_per_sr = (180.0 / np.pi * 3600.0) ** 2
        for src, v in zip(self.sources, self._vec):
            reach = 7.0 * np.sqrt(src.extent_arcsec**2 + np.max(psf_var, initial=0.0)) + 1.0
            cosang = np.clip(pts @ v, -1.0, 1.0)
            r2 = (np.rad2deg(np.arccos(cosang)) * 3600.0) ** 2
            near = r2 < reach**2
            if not np.any(near):
                continue
            for c in src.components:
                var = c.sigma_arcsec**2 + psf_var[near]
                # µJy/arcsec² -> MJy/sr
                sb = (c.weight * c.sed(wl[near]) * np.exp(-0.5 * r2[near] / var)
                      / (2 * np.pi * var) * 1e-12 * arcsec2_per_sr)
                out[near] += sb
        return out


@lru_cache(maxsize=1)
def default_sky():
    """The synthetic sky all frames see (cached; identical in every process)."""
    return SkyModel(_build_sources())
