"""The spectrum (SED) of one sky position, measured on every SPHEREx cutout that covers it.

Each SPHEREx exposure samples one narrow band at each pixel, so a source's spectrum is one
aperture measurement per cutout, at the wavelength the detector sees at the source.
:func:`extract_spectrum` measures each cutout on its own pixel grid: a sky circle placed
with the cutout's WCS, bad-flag pixels masked, ZODI subtracted, a PSF aperture correction
(or a mirror fill for extended sources), VARIANCE propagated; one row per cutout, sorted by
wavelength, with a ``status`` for cutouts that gave no flux. Spectra can be written as
ECSV/FITS tables and plotted. The method, step by step, is in the documentation
(``docs/methods.rst``, "Methods: spectra, wavelengths and the PSF correction").
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.stats import sigma_clipped_stats
from astropy.table import QTable
from scipy.special import ndtr

from ..errors import SpherexInputError
from ..fitsbytes.atomic import atomic_path
from ..products.celestial import separation_deg
from ..products.epsf import point_fractions
from ..products.flags import DEFAULT_BAD_FLAGS, mask_from_names

__all__ = [
    "Frame",
    "extract_spectrum",
    "measure_frames",
    "write_ecsv",
    "to_spectrum",
    "write_spectrum",
    "plot_spectrum",
    "STATUS",
    "MixedPipelineWarning",
    "GaussianPSFWarning",
    "load_products",
    "product_psf",
    "pixel_geometry",
    "check_options",
    "measure_point",
    "flag_bits_for",
]


class MixedPipelineWarning(UserWarning):
    """A spectrum holds points from pipeline < 7 and from pipeline 7 cutouts."""


class GaussianPSFWarning(UserWarning):
    """Aperture corrections of some points used a Gaussian of the header's PSF_FWHM: their
    cutouts had no PSF extension (a file fetched with ``psf='none'``, a restored session)."""

#: Meaning of the ``status`` column.
STATUS = {
    "ok": "measured",
    "off_image": "the aperture does not overlap the cutout",
    "masked": "every aperture pixel is flagged or invalid",
    "too_masked": "the kept pixels hold less than min_unmasked_fraction of the expected light "
                  "(psf) or of the aperture area (none)",
    "unfillable": "aperture_correction='none': a flagged or off-image aperture pixel whose "
                  "point-symmetric counterpart is unusable too",
    "no_background": "fewer than 5 usable annulus pixels for the local background",
    "no_psf": "aperture_correction='psf' needs a PSF extension or PSF_FWHM; this cutout "
              "has neither",
}

APERTURE_CORRECTIONS = ("psf", "none")
_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
_UJY_PER_MJY = 1e12
_MIN_ANNULUS_PIXELS = 5


@dataclass
class Frame:
    """The pixels of one cutout, ready for aperture photometry.

    Attributes
    ----------
    image : ndarray
        Surface brightness (MJy/sr), zodi already subtracted if wanted.
    variance : ndarray
        Variance of ``image`` ((MJy/sr)^2).
    bad : ndarray of bool
        Pixels to leave out.
    wcs : astropy.wcs.WCS
        Celestial WCS of the cutout (SIP included).
    wave : callable
        ``wave(x, y) -> (wavelength, bandwidth)`` in µm at 0-based pixel positions.
    psf : callable or None
        ``psf(x, y) -> (image, step)`` or ``(image, step, 'effective')``: the PSF at 0-based
        pixel (x, y), an oversampled image centred on its middle pixel, and its sampling
        step in detector pixels; ``'effective'`` marks an effective PSF (pipeline 7's EPSF),
        point-sampled rather than integrated over each pixel.
    psf_fwhm : float
        PSF FWHM in arcsec (NaN if unknown); the Gaussian used when ``psf`` is None.
    info : dict
        ``obs_id``, ``detector``, ``bandpass``, ``mjd``, ``cutout_index``, and ``pipeline``
        (major pipeline version, 0 if unknown).
    geometry : tuple or None
        ``(solid angle in sr, side in arcsec)`` of a pixel, if known (:func:`pixel_geometry`
        of ``wcs`` otherwise).
    """

    image: np.ndarray
    variance: np.ndarray
    bad: np.ndarray
    wcs: object
    wave: object
    psf: object = None
    psf_fwhm: float = np.nan
    info: dict = field(default_factory=dict)
    geometry: tuple = None

    @classmethod
    def from_product(cls, product, bad_flags=DEFAULT_BAD_FLAGS, subtract_zodi=True):
        """A frame from a :class:`glue_spherex.products.spectral_image.SpectralImage`."""
        image = np.asarray(product.image)  # float32; windows become float64 when measured
        if subtract_zodi:
            image = image - np.asarray(product.zodi)
        bad = mask_from_names(product.flags, bad_flags, bits=flag_bits_for(product, bad_flags))
        index = product.cutout_index
        return cls(
            image=image,
            variance=np.asarray(product.variance),
            bad=bad,
            wcs=product.wcs,
            wave=lambda x, y: tuple(_as_um(v) for v in product.pixel_to_wave(x, y)),
            psf=(lambda x, y: product_psf(product, x, y)) if product.has_psf else None,
            psf_fwhm=float(product.psf_fwhm),
            info=dict(obs_id=str(product.obsid), detector=int(product.detector),
                      bandpass=str(product.bandpass), mjd=float(product.mjd_avg),
                      cutout_index=-1 if index is None else int(index),
                      pipeline=int(product.pipeline or 0)),
        )


def flag_bits_for(product, names):
    """``{name: bit}`` of the named flags from the product's FLAGS header.

    Looks up only the ``MP_<NAME>`` keywords asked for (a few dictionary look-ups) and falls
    back to parsing every card (``product.flag_bits``, ~10 ms a header) when one is missing,
    e.g. in QR3's ``MSKNnnnn`` style.
    """
    header = product.keywords_of("FLAGS")  # no astropy Header: ~6 ms a cutout saved
    bits = {}
    for name in [names] if isinstance(names, str) else names:
        key = str(name).strip().upper().removeprefix("MP_")
        value = header.get(f"MP_{key}")
        if not isinstance(value, int) or isinstance(value, bool):
            return product.flag_bits
        bits[key] = value
    return bits


def product_psf(product, x, y):
    """``(image, step[, "effective"])``: the PSF of ``product`` at pixel (x, y), sampled ``step`` pixels apart."""
    # The PSF planes sample the detector grid OVERSAMP times finer (0.615" = 1/10 pixel);
    # the EPSF arrays OVSMPX = 5 times, and are effective PSFs.
    step = 1.0 / float(product.psf_oversampling)
    image = np.asarray(product.psf_at(x, y), dtype=float)
    return (image, step, "effective") if product.psf_kind == "epsf" else (image, step)


def _as_um(value):
    return np.asarray(u.Quantity(value, u.um).value, dtype=float)


def _check_angle(value, what):
    try:
        q = u.Quantity(value)
        q = q.to(u.arcsec)
    except (TypeError, ValueError, u.UnitsError):
        raise SpherexInputError(
            f"{what} must be an angle such as 6 arcsec, got {value!r}") from None
    if not (q.isscalar and np.isfinite(q.value) and q.value > 0):
        raise SpherexInputError(f"{what} must be a positive finite angle, got {value!r}")
    return q


def _check_coord(coord):
    if not isinstance(coord, SkyCoord) or not coord.isscalar:
        raise SpherexInputError(
            f"the position must be a scalar astropy SkyCoord, got {type(coord).__name__}")
    return coord.icrs


def load_products(products_or_path):
    """A list of products or :class:`Frame` objects from a path (opened) or an iterable."""
    if isinstance(products_or_path, (str, os.PathLike)):
        from ..products.spectral_image import open_products

        return list(open_products(products_or_path))
    if hasattr(products_or_path, "image") and hasattr(products_or_path, "wcs"):
        return [products_or_path]
    try:
        products = list(products_or_path)
    except TypeError:
        raise SpherexInputError(
            "products must be a file path, a SpectralImage or a list of SpectralImage "
            f"objects, got {type(products_or_path).__name__}") from None
    return products


def extract_spectrum(products_or_path, coord, radius=6 * u.arcsec, *,
                     bad_flags=DEFAULT_BAD_FLAGS, subtract_zodi=True, annulus=None,
                     aperture_correction="psf", min_unmasked_fraction=0.5):
    """Aperture spectrum at ``coord`` from every cutout; one row per cutout.

    Parameters
    ----------
    products_or_path : path, SpectralImage, or list of SpectralImage / Frame
        A combined or single-product MEF file, or products already opened.
    coord : SkyCoord
        Aperture centre.
    radius : angle
        Aperture radius (default 6 arcsec, about one pixel and one PSF FWHM).
    bad_flags : sequence of str
        FLAGS names whose pixels are masked (default ``DEFAULT_BAD_FLAGS``; ``()`` masks
        only non-finite pixels).
    subtract_zodi : bool
        Subtract the ZODI model from IMAGE first (default True).
    annulus : (angle, angle) or None
        Inner and outer radius of a local-background annulus (inner >= ``radius``).
    aperture_correction : {'psf', 'none'}
        ``'psf'``: total flux of a point source (Gaussian PSF of FWHM ``PSF_FWHM``);
        ``'none'``: flux inside the aperture (extended sources).
    min_unmasked_fraction : float
        Minimum fraction (0-1] of the expected aperture light in kept pixels.

    Returns
    -------
    QTable
        Columns ``wavelength``, ``wavelength_mean`` (aperture mean), ``bandwidth`` (µm),
        ``flux``, ``flux_err`` (µJy), ``mjd``, ``detector``, ``bandpass``, ``obs_id``,
        ``cutout_index``, ``n_pixels``, ``n_masked``, ``unmasked_fraction``, ``x``, ``y``
        (0-based pixel of the centre), ``background`` (MJy/sr), ``pixel_area`` (arcsec2),
        ``product_index`` (position in the input), ``status``, ``pipeline`` (major pipeline
        version of the cutout, 0 if unknown); sorted by wavelength.
    """
    options = check_options(coord, radius, annulus, aperture_correction,
                             min_unmasked_fraction)
    names = [bad_flags] if isinstance(bad_flags, str) else list(bad_flags)
    mask_from_names(np.zeros(1, np.int32), names)  # unknown flag names fail before any I/O
    opened = isinstance(products_or_path, (str, os.PathLike))
    products = load_products(products_or_path)
    try:
        frames = [p if isinstance(p, Frame)
                  else Frame.from_product(p, bad_flags=names, subtract_zodi=subtract_zodi)
                  for p in products]
        table = _measure_all(frames, *options)
    finally:
        if opened:
            for p in products:
                p.close()
    table.meta.update(bad_flags=names, subtract_zodi=bool(subtract_zodi))
    if opened:
        table.meta["source"] = os.fspath(products_or_path)
    return table


def measure_frames(frames, coord, radius=6 * u.arcsec, *, annulus=None,
                   aperture_correction="psf", min_unmasked_fraction=0.5):
    """The photometry of :func:`extract_spectrum` on prepared :class:`Frame` objects."""
    return _measure_all(frames, *check_options(coord, radius, annulus, aperture_correction,
                                                min_unmasked_fraction))


def check_options(coord, radius, annulus, aperture_correction, min_unmasked_fraction):
    """The options of :func:`extract_spectrum`, checked: ``(coord, radius, annulus,
    aperture_correction, min_unmasked_fraction)`` as :func:`measure_point` takes them."""
    coord = _check_coord(coord)
    radius = _check_angle(radius, "the aperture radius")
    if annulus is not None:
        try:
            r_in, r_out = annulus
        except (TypeError, ValueError):
            raise SpherexInputError(
                "the annulus must be a pair of angles (inner, outer)") from None
        r_in = _check_angle(r_in, "the annulus inner radius")
        r_out = _check_angle(r_out, "the annulus outer radius")
        if not radius <= r_in < r_out:
            raise SpherexInputError(
                f"the annulus must lie outside the aperture: need radius ({radius}) <= "
                f"inner ({r_in}) < outer ({r_out})")
        annulus = (r_in, r_out)
    if aperture_correction not in APERTURE_CORRECTIONS:
        raise SpherexInputError(
            f"aperture_correction must be one of {APERTURE_CORRECTIONS}, "
            f"got {aperture_correction!r}")
    try:
        fraction = float(min_unmasked_fraction)
    except (TypeError, ValueError):
        fraction = float("nan")
    if not 0 < fraction <= 1:
        raise SpherexInputError(
            f"min_unmasked_fraction must be in (0, 1], got {min_unmasked_fraction!r}")
    return coord, radius, annulus, aperture_correction, fraction


def _measure_all(frames, coord, radius, annulus, aperture_correction, min_unmasked_fraction):
    if not frames:
        raise SpherexInputError("no cutouts to measure")
    ra, dec = float(coord.ra.deg), float(coord.dec.deg)
    rows = [measure_point(i, f, ra, dec, radius, annulus, aperture_correction,
                          min_unmasked_fraction)
            for i, f in enumerate(frames)]
    table = _rows_to_table(rows)
    _flag_mixed_pipelines(table)
    _flag_gaussian_psf(table, rows)
    table.meta.update(
        ra=float(coord.ra.deg), dec=float(coord.dec.deg), radius_arcsec=float(radius.value),
        annulus_arcsec=None if annulus is None else [float(a.value) for a in annulus],
        aperture_correction=aperture_correction,
        min_unmasked_fraction=min_unmasked_fraction,
        pixel_solid_angle="pixel of each cutout's linear WCS (PC matrix), no SIP",
        status_meanings=dict(STATUS),
    )
    return table


def _flag_mixed_pipelines(table):
    """Warn (and say so in ``meta``) if measured points come from pipeline < 7 and 7."""
    pipeline = np.asarray(table["pipeline"])
    ok = np.asarray(table["status"]) == "ok"
    old, new = int(np.sum(ok & (pipeline > 0) & (pipeline < 7))), int(np.sum(ok & (pipeline >= 7)))
    table.meta["mixed_pipelines"] = bool(old and new)
    if old and new:
        message = (f"this spectrum mixes {old} points from pipeline < 7 cutouts with {new} "
                   "from pipeline 7 (QR3 / reprocessed) cutouts, whose absolute calibrations "
                   "differ by up to a few per cent; see the 'pipeline' column")
        table.meta.setdefault("warnings", []).append(message)
        warnings.warn(message, MixedPipelineWarning, stacklevel=4)


def _flag_gaussian_psf(table, rows):
    """Say (``meta['gaussian_psf']``: the cutout_index of each such point, a warning) which
    measured points were corrected with the Gaussian of PSF_FWHM for want of a PSF."""
    used = sorted(int(r["cutout_index"]) for r in rows
                  if r.get("gaussian_psf") and r["status"] == "ok")
    table.meta["gaussian_psf"] = used
    if used:
        message = (f"{len(used)} points have aperture corrections from a Gaussian of the "
                   "header's PSF_FWHM, not the cutout's PSF (it has no PSF extension: a file "
                   "fetched with psf='none', or a restored session); see meta['gaussian_psf']")
        table.meta.setdefault("warnings", []).append(message)
        warnings.warn(message, GaussianPSFWarning, stacklevel=4)


_COLUMNS = (
    ("wavelength", u.um, float), ("wavelength_mean", u.um, float), ("bandwidth", u.um, float),
    ("flux", u.uJy, float), ("flux_err", u.uJy, float), ("mjd", None, float),
    ("detector", None, int), ("bandpass", None, str), ("obs_id", None, str),
    ("cutout_index", None, int), ("n_pixels", None, int), ("n_masked", None, int),
    ("unmasked_fraction", None, float), ("x", u.pix, float), ("y", u.pix, float),
    ("background", u.MJy / u.sr, float), ("pixel_area", u.arcsec ** 2, float),
    ("product_index", None, int), ("status", None, "U16"), ("pipeline", None, int),
)


def _rows_to_table(rows):
    wl = np.array([r["wavelength"] for r in rows], dtype=float)
    order = np.argsort(wl, kind="stable")  # NaN wavelengths last
    cols = {}
    for name, unit, kind in _COLUMNS:
        values = np.array([rows[i][name] for i in order], dtype=kind)
        cols[name] = values * unit if unit is not None else values
    return QTable(cols)


def _empty_row(index, frame):
    info = frame.info
    return dict(wavelength=np.nan, wavelength_mean=np.nan, bandwidth=np.nan, flux=np.nan,
                flux_err=np.nan, mjd=float(info.get("mjd", np.nan)),
                detector=int(info.get("detector", 0)), bandpass=str(info.get("bandpass", "")),
                obs_id=str(info.get("obs_id", "")), cutout_index=int(info.get("cutout_index", -1)),
                n_pixels=0, n_masked=0, unmasked_fraction=0.0, x=np.nan, y=np.nan,
                background=0.0, pixel_area=np.nan, product_index=index, status="off_image",
                pipeline=int(info.get("pipeline") or 0))


def pixel_geometry(wcs):
    """Solid angle (sr) and side (arcsec) of a pixel of the WCS's linear part (PC matrix)."""
    from astropy.wcs.utils import proj_plane_pixel_area

    area_deg2 = float(proj_plane_pixel_area(getattr(wcs, "celestial", wcs)))
    return area_deg2 * (np.pi / 180.0) ** 2, float(np.sqrt(area_deg2) * 3600.0)


def _local_scale(wcs, x, y):
    """Mean sky scale (arcsec per pixel, sqrt of the Jacobian determinant) at pixel (x, y)."""
    ra, dec = wcs.pixel_to_world_values(np.array([x - 0.5, x + 0.5, x, x]),
                                        np.array([y, y, y - 0.5, y + 0.5]))
    dra = (ra - ra[0] + 180.0) % 360.0 - 180.0
    east, north = dra * np.cos(np.radians(dec)) * 3600.0, (dec - dec[0]) * 3600.0
    det = (east[1] - east[0]) * (north[3] - north[2]) - (east[3] - east[2]) * (north[1] - north[0])
    return float(np.sqrt(abs(det)))


def _gaussian_fractions(x0, y0, xs, ys, sigma_px):
    """Fraction of a unit Gaussian centred at (x0, y0) in each pixel of the grid xs x ys."""
    fx = ndtr((xs + 0.5 - x0) / sigma_px) - ndtr((xs - 0.5 - x0) / sigma_px)
    fy = ndtr((ys + 0.5 - y0) / sigma_px) - ndtr((ys - 0.5 - y0) / sigma_px)
    return fy[:, None] * fx[None, :]


@lru_cache(maxsize=8)
def _unit_spline(n):
    """Cubic spline through the identity on knots 0..n-1, clamped (flat) ends.

    A spline is linear in the values it interpolates, so evaluating this one at some points
    gives the interpolation weights of those points, for any values on the same knots.
    """
    from scipy.interpolate import CubicSpline

    return CubicSpline(np.arange(n, dtype=float), np.eye(n), axis=0, bc_type="clamped")


def _sampled_fractions(x0, y0, xs, ys, image, step_px):
    """Fraction of an oversampled PSF image centred at (x0, y0) in each pixel of xs x ys.

    The light in a rectangle is four values of the PSF's 2-D cumulative distribution, known
    exactly at sub-pixel corners and interpolated between them with separable cubic splines
    (linear interpolation would smear the PSF by a sub-pixel: 0.3-0.9 % at a 6" radius).
    """
    image = np.where(np.isfinite(image), image, 0.0)
    image = image / image.sum()
    ny, nx = image.shape
    cdf = np.zeros((ny + 1, nx + 1))
    cdf[1:, 1:] = image.cumsum(0).cumsum(1)
    # pixel edges in units of sub-pixel corners (corner k at offset (k - n/2) * step)
    ux = np.append(xs - 0.5, xs[-1] + 0.5) - x0
    uy = np.append(ys - 0.5, ys[-1] + 0.5) - y0
    wx = _unit_spline(nx + 1)(np.clip(ux / step_px + nx / 2.0, 0, nx))
    wy = _unit_spline(ny + 1)(np.clip(uy / step_px + ny / 2.0, 0, ny))
    return np.diff(np.diff(wy @ cdf @ wx.T, axis=0), axis=1)


def _mirror_fill(weights, missing, bbox, window, good, data, x, y):
    """Effective weights that replace each missing aperture pixel by its point mirror.

    A flagged or off-image pixel p of the aperture takes the value at 2c - p (c the aperture
    centre), bilinearly interpolated from the four usable pixels around it -- SExtractor's
    ``MASK_TYPE CORRECT`` for a symmetric source. Next to an unresolved peak the bilinear
    value is poor, so each fill carries an uncertainty: its difference from the value of the
    nearest of the four pixels. Returns the weights to add on the window, the summed variance
    of the fills (aperture-weighted) and the aperture weight of pixels that could not be
    filled (their mirror is unusable).
    """
    wx0, wy0 = window
    extra = np.zeros(good.shape)
    fill_var = 0.0
    lost = 0.0
    gy, gx = np.nonzero(missing)
    for iy, ix in zip(gy, gx):
        w = weights[iy, ix]
        mx, my = 2 * x - (bbox.ixmin + ix) - wx0, 2 * y - (bbox.iymin + iy) - wy0
        i0, j0 = int(np.floor(mx)), int(np.floor(my))
        fx, fy = mx - i0, my - j0
        inside = 0 <= i0 < good.shape[1] - 1 and 0 <= j0 < good.shape[0] - 1
        if not (inside and good[j0:j0 + 2, i0:i0 + 2].all()):
            lost += w
            continue
        b = np.array([[(1 - fy) * (1 - fx), (1 - fy) * fx], [fy * (1 - fx), fy * fx]])
        around = data[j0:j0 + 2, i0:i0 + 2]
        nearest = around[int(fy >= 0.5), int(fx >= 0.5)]
        fill_var += (w * (np.sum(b * around) - nearest)) ** 2
        extra[j0:j0 + 2, i0:i0 + 2] += w * b
    return extra, fill_var, lost


def measure_point(index, frame, ra, dec, radius, annulus, correction, min_fraction):
    """One row of :func:`extract_spectrum`: the photometry of ``frame`` at (``ra``, ``dec``).

    ``ra``, ``dec`` are ICRS degrees; the options are those :func:`check_options` returns;
    ``index`` is the row's ``product_index``. The row is a dict of the table's columns (and
    ``gaussian_psf``).
    """
    from photutils.aperture import CircularAnnulus, CircularAperture

    row = _empty_row(index, frame)
    ny, nx = frame.image.shape
    omega, scale = frame.geometry or pixel_geometry(frame.wcs)
    # Skip cutouts far from the position before inverting SIP there (it may diverge).
    ra0, dec0 = frame.wcs.pixel_to_world_values((nx - 1) / 2.0, (ny - 1) / 2.0)
    reach = (np.hypot(nx, ny) / 2 + 3) * scale + radius.to_value(u.arcsec)
    if separation_deg(ra0, dec0, ra, dec) * 3600.0 > reach:
        return row
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x, y = (float(v) for v in frame.wcs.world_to_pixel_values(ra, dec))
    except Exception:  # no convergence of the SIP inverse
        return row
    margin = radius.to_value(u.arcsec) / 3.0 + 2  # radius in pixels is ~radius / 6.15"
    if not (np.isfinite(x) and np.isfinite(y)) or not (
            -margin < x < nx - 1 + margin and -margin < y < ny - 1 + margin):
        return row
    row.update(x=x, y=y)
    wl, bw = frame.wave(np.array([x]), np.array([y]))
    row.update(wavelength=float(wl[0]), bandwidth=float(bw[0]))

    local = _local_scale(frame.wcs, x, y)  # arcsec per pixel at the position
    amask = CircularAperture((x, y), r=radius.to_value(u.arcsec) / local).to_mask(method="exact")
    bbox, weights = amask.bbox, amask.data
    # Work on a window of the image: the aperture box plus a 2-pixel margin (mirror points).
    wx0, wx1 = max(bbox.ixmin - 2, 0), min(bbox.ixmax + 2, nx)
    wy0, wy1 = max(bbox.iymin - 2, 0), min(bbox.iymax + 2, ny)
    if wx0 >= wx1 or wy0 >= wy1:
        return row
    data = np.asarray(frame.image[wy0:wy1, wx0:wx1], dtype=float)
    var = np.asarray(frame.variance[wy0:wy1, wx0:wx1], dtype=float)
    good = ~np.asarray(frame.bad[wy0:wy1, wx0:wx1], bool) & np.isfinite(data) & np.isfinite(var)
    # aperture weights on the window (zero where the aperture box is off the image)
    w_win = np.zeros(data.shape)
    by0, bx0 = max(bbox.iymin, wy0), max(bbox.ixmin, wx0)
    by1, bx1 = min(bbox.iymax, wy1), min(bbox.ixmax, wx1)
    if by0 < by1 and bx0 < bx1:
        w_win[by0 - wy0:by1 - wy0, bx0 - wx0:bx1 - wx0] = \
            weights[by0 - bbox.iymin:by1 - bbox.iymin, bx0 - bbox.ixmin:bx1 - bbox.ixmin]
    in_ap = w_win > 0
    row.update(n_pixels=int(in_ap.sum()), n_masked=int((in_ap & ~good).sum()))
    if row["n_pixels"] == 0:
        return row

    yy, xx = np.nonzero(in_ap)
    wl_map, _ = frame.wave((xx + wx0).astype(float), (yy + wy0).astype(float))
    ok = np.isfinite(wl_map)
    if ok.any():
        ww = w_win[yy, xx][ok]
        row["wavelength_mean"] = float(np.sum(ww * wl_map[ok]) / np.sum(ww))

    row["pixel_area"] = omega * (180.0 / np.pi * 3600.0) ** 2
    kept_w = np.where(good, w_win, 0.0)
    if not kept_w.any():
        row["status"] = "masked"
        return row

    # Effective weights E on the window: flux = sum(E * (data - background)) * omega.
    fill_var = 0.0
    if correction == "psf":
        gx = np.arange(bbox.ixmin, bbox.ixmax, dtype=float)
        gy = np.arange(bbox.iymin, bbox.iymax, dtype=float)
        if frame.psf is not None:
            psf_image, step, *kind = frame.psf(x, y)
            if kind == ["effective"]:
                over = int(round(1.0 / step))
                profile = point_fractions(psf_image, (over, over), x, y, gx, gy)
            else:
                profile = _sampled_fractions(x, y, gx, gy, psf_image, step)
        elif np.isfinite(frame.psf_fwhm) and frame.psf_fwhm > 0:
            profile = _gaussian_fractions(x, y, gx, gy, frame.psf_fwhm * _FWHM_TO_SIGMA / scale)
            row["gaussian_psf"] = True  # said in the table's meta (not a column)
        else:
            row["status"] = "no_psf"
            return row
        p_win = np.zeros(data.shape)
        if by0 < by1 and bx0 < bx1:
            p_win[by0 - wy0:by1 - wy0, bx0 - wx0:bx1 - wx0] = \
                profile[by0 - bbox.iymin:by1 - bbox.iymin, bx0 - bbox.ixmin:bx1 - bbox.ixmin]
        kept = float(np.sum(kept_w * p_win))  # light of a unit point source in kept pixels
        row["unmasked_fraction"] = kept / float(np.sum(weights * profile))
        effective = kept_w / kept if kept > 0 else kept_w
    else:
        missing = weights > 0
        if by0 < by1 and bx0 < bx1:
            missing[by0 - bbox.iymin:by1 - bbox.iymin, bx0 - bbox.ixmin:bx1 - bbox.ixmin] &= \
                ~good[by0 - wy0:by1 - wy0, bx0 - wx0:bx1 - wx0]
        extra, fill_var, lost = _mirror_fill(weights, missing, bbox, (wx0, wy0), good, data,
                                             x, y)
        row["unmasked_fraction"] = float(kept_w.sum() / weights.sum())
        if lost > 0 and row["unmasked_fraction"] >= min_fraction:
            row["status"] = "unfillable"
            return row
        effective = kept_w + extra
    if row["unmasked_fraction"] < min_fraction:
        row["status"] = "too_masked"
        return row

    bkg, bkg_err = 0.0, 0.0
    if annulus is not None:
        ann = CircularAnnulus((x, y), r_in=annulus[0].to_value(u.arcsec) / local,
                              r_out=annulus[1].to_value(u.arcsec) / local)
        amsk = ann.to_mask(method="center")
        a_in = amsk.cutout(np.ones((ny, nx), bool), fill_value=False).astype(bool)
        a_data = amsk.cutout(frame.image, fill_value=np.nan)
        a_bad = amsk.cutout(frame.bad, fill_value=True).astype(bool)
        sel = (amsk.data > 0) & a_in & ~a_bad & np.isfinite(a_data)
        if sel.sum() < _MIN_ANNULUS_PIXELS:
            row["status"] = "no_background"
            return row
        _mean, bkg, std = sigma_clipped_stats(a_data[sel], sigma=3.0, maxiters=5)
        bkg = float(bkg)
        bkg_err = float(np.sqrt(np.pi / 2.0) * std / np.sqrt(sel.sum()))  # error of a median
        row["background"] = bkg

    to_ujy = omega * _UJY_PER_MJY
    use = effective != 0
    flux = np.sum(effective[use] * (data[use] - bkg)) * to_ujy
    err = np.sqrt(np.sum(effective[use] ** 2 * var[use]) + fill_var
                  + (np.sum(effective) * bkg_err) ** 2) * to_ujy
    row.update(flux=float(flux), flux_err=float(err), status="ok")
    return row


# --- writers -------------------------------------------------------------------------------

def write_ecsv(table, path):
    """Write the spectrum table as ECSV, atomically (temporary file, then rename)."""
    with atomic_path(path) as tmp:
        table.write(tmp, format="ascii.ecsv")
    return Path(path)


def to_spectrum(table):
    """A :class:`specutils.Spectrum` (formerly ``Spectrum1D``) of the measured rows.

    Rows without a wavelength are dropped (a spectral axis must be monotonic); rows without
    a flux are kept, masked. The uncertainty is ``flux_err`` as a standard deviation.
    """
    from astropy.nddata import StdDevUncertainty
    from specutils import Spectrum

    keep = np.isfinite(u.Quantity(table["wavelength"]).value)
    t = table[keep]
    if len(t) == 0:
        raise SpherexInputError("the spectrum has no row with a wavelength")
    flux = u.Quantity(t["flux"], u.uJy)
    err = u.Quantity(t["flux_err"], u.uJy)
    bad = ~np.isfinite(flux.value)
    return Spectrum(
        flux=flux,
        spectral_axis=u.Quantity(t["wavelength"], u.um),
        uncertainty=StdDevUncertainty(np.where(bad, np.nan, err.value) * u.uJy),
        mask=bad,
        meta={k: v for k, v in table.meta.items() if k != "status_meanings"},
    )


def write_spectrum(table, path):
    """Write :func:`to_spectrum` of the table as a specutils ``tabular-fits`` file, atomically.

    (specutils has no ECSV writer for spectra; :func:`write_ecsv` writes the full table.)
    """
    spec = to_spectrum(table)
    with atomic_path(path) as tmp:
        spec.write(tmp, format="tabular-fits")
    return Path(path)


def plot_spectrum(table, out_png, truth=None, title=None):
    """Plot flux vs wavelength with error bars, coloured by detector; write a PNG atomically.

    ``truth`` is an optional ``(wavelength_um, flux_uJy)`` pair of arrays drawn as a curve.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot(111)
    _draw_spectrum(ax, table, truth)
    ax.set_title(title or _default_title(table))
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return Path(out_png)


def _default_title(table):
    meta = table.meta
    if "ra" in meta:
        return (f"SPHEREx spectrum at RA {meta['ra']:.5f}, Dec {meta['dec']:.5f}, "
                f"r = {meta.get('radius_arcsec', float('nan')):.1f}\"")
    return "SPHEREx spectrum"


DETECTOR_COLOURS = {1: "#5e3c99", 2: "#1f78b4", 3: "#33a02c", 4: "#ff7f00", 5: "#e31a1c",
                    6: "#8c510a"}


def _draw_spectrum(ax, table, truth=None):
    """Draw a spectrum table (and an optional truth curve) on matplotlib axes."""
    wl = u.Quantity(table["wavelength"], u.um).value
    flux = u.Quantity(table["flux"], u.uJy).value
    err = u.Quantity(table["flux_err"], u.uJy).value
    det = np.asarray(table["detector"])
    if truth is not None:
        twl, tflux = (np.asarray(u.Quantity(v).value if hasattr(v, "unit") else v, float)
                      for v in truth)
        ax.plot(twl, tflux, color="0.3", lw=1.2, label="truth", zorder=1)
    for d in sorted(set(det.tolist())):
        sel = (det == d) & np.isfinite(flux)
        if sel.any():
            ax.errorbar(wl[sel], flux[sel], yerr=err[sel], fmt="o", ms=3.5, capsize=1.5,
                        color=DETECTOR_COLOURS.get(int(d), "k"), label=f"D{d}", zorder=2)
    ax.set_xlabel("wavelength [µm]")
    ax.set_ylabel("flux density [µJy]")
    ax.legend(fontsize=8, ncol=4)
    ax.grid(alpha=0.3)
