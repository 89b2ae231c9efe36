"""SPHEREx spectral images as glue datasets: one :class:`~glue.core.data.Data` per cutout.

Each dataset has the components ``flux`` (IMAGE), ``variance``, ``flags``, ``zodi``,
``wavelength`` and ``bandwidth`` (per-pixel central wavelength and bandwidth in µm, from the
``W`` spectral WCS), the celestial WCS (TAN-SIP, 2-D only) as ``coords``, and ``meta`` with
the exposure's identity, times and provenance (``version``, ``pipeline``, ``release``,
``processing``).  The pixel arrays stay memory-mapped from the file (a pipeline-7 FLAGS
stored tile-compressed is decompressed once); the PSF cube or EPSF table is not read.

The product a dataset came from is kept on the dataset (:func:`source_product`) for the
exporter; ``meta['source_path']`` and ``meta['source_index']`` record where it was read, so
a dataset restored from a session saved with its data can still find its file.
"""

from __future__ import annotations

import datetime as _dt
import math
import os

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from glue.core import Data
from glue.core.component import Component

from ..errors import SpherexError, SpherexFormatError
from ..products.celestial import build_celestial_wcs
from ..products.spectral_image import SpectralImage
from ..products.spectral_image import celestial_wcs as _celestial_wcs

__all__ = ["SPHEREX_COMPONENTS", "CelestialWCS", "celestial_wcs", "product_to_data",
           "products_to_data", "is_spherex_data", "cutouts_in", "source_product", "data_label",
           "identity"]

#: Component labels of a SPHEREx dataset, in order; the first four are the image HDUs.
SPHEREX_COMPONENTS = ("flux", "variance", "flags", "zodi", "wavelength", "bandwidth")
#: Image extension behind each array component.
HDU_OF_COMPONENT = {"flux": "IMAGE", "variance": "VARIANCE", "flags": "FLAGS", "zodi": "ZODI"}

#: BUNIT of each image extension, as the SPHEREx Level-2 format defines them.
_UNITS = {"IMAGE": "MJy / sr", "VARIANCE": "MJy2 / sr2", "FLAGS": "", "ZODI": "MJy / sr"}
_MJD0 = _dt.datetime(1858, 11, 17)
#: Axis names, so glue labels the axes without re-serialising the WCS.
_CNAME = ("Right Ascension", "Declination")


class CelestialWCS(WCS):
    """The celestial (TAN-SIP) WCS of a cutout, saved in glue sessions with its SIP terms.

    glue saves a plain :class:`~astropy.wcs.WCS` with ``to_header_string()``, which drops
    the SIP distortion.  This subclass saves its keyword values and SIP matrices instead
    (and is rebuilt from them without astropy's slow header parser).
    """

    def __gluestate__(self, context):
        c = self.wcs
        state = {"ctype": list(c.ctype), "crval": c.crval.tolist(), "crpix": c.crpix.tolist(),
                 "cunit": [str(u) for u in c.cunit], "radesys": c.radesys,
                 "equinox": _finite_or_none(c.equinox), "lonpole": _finite_or_none(c.lonpole),
                 "latpole": _finite_or_none(c.latpole), "pixel_shape": self.pixel_shape}
        if c.has_cd():
            state["cd"] = c.cd.tolist()
        else:
            state["pc"], state["cdelt"] = c.get_pc().tolist(), c.cdelt.tolist()
        if self.sip is not None:
            state["sip"] = {name: getattr(self.sip, name.lower()).tolist()
                            for name in ("A", "B", "AP", "BP")
                            if getattr(self.sip, name.lower()) is not None}
        return state

    @classmethod
    def __setgluestate__(cls, rec, context):
        from . import setup_unless_disabled

        setup_unless_disabled()  # a session with cutouts may be restored before glue loads plugins
        if "header" in rec:  # written before the keyword form
            return cls(fits.Header.fromstring(rec["header"]))
        sip = {name: np.array(m) for name, m in (rec.get("sip") or {}).items()}
        return build_celestial_wcs(rec, sip, cls, cname=_CNAME)


def celestial_wcs(keywords):
    """The 2-D celestial WCS (TAN with SIP) of an image, as a :class:`CelestialWCS`.

    ``keywords`` is a SpectralImage's :attr:`~glue_spherex.products.spectral_image.SpectralImage.keywords`
    (or a Header). The axes are named (``CNAME``) so that glue labels them without
    re-serialising the WCS.
    """
    return _celestial_wcs(keywords, CelestialWCS, cname=_CNAME)


def _finite_or_none(value):
    return float(value) if value is not None and math.isfinite(value) else None


def is_spherex_data(data):
    """True for a dataset made by :func:`product_to_data` (also after a session restore):
    the package's one answer to "is this a SPHEREx cutout"."""
    meta = getattr(data, "meta", None)
    return (bool(meta) and meta.get("spherex") is True and getattr(data, "ndim", 0) == 2
            and getattr(data, "coords", None) is not None)


def cutouts_in(layers):
    """The SPHEREx cutouts among ``layers`` (Data, or Subsets whose Data is a cutout; a
    DataCollection is a sequence of Data), in order and without repeats."""
    out = []
    for layer in layers:
        data = getattr(layer, "data", layer)  # a Subset's .data is its Data
        if is_spherex_data(data) and not any(data is d for d in out):
            out.append(data)
    return out


def source_product(data, reopen=False):
    """The :class:`~glue_spherex.products.spectral_image.SpectralImage` ``data`` was made from, or None.

    With ``reopen``, a dataset that no longer holds it (restored from a session) gets it
    back from ``meta['source_path']``/``meta['source_index']`` if that file still opens.
    """
    product = getattr(data, "_spherex_product", None)
    if product is not None and not getattr(product, "_closed", False):
        return product
    if not reopen:
        return product
    path = (getattr(data, "meta", None) or {}).get("source_path")
    if not path or not os.path.isfile(path):
        return None
    try:
        product = SpectralImage.open(path, data.meta.get("source_index"))
    except SpherexError:
        return None
    data._spherex_product = product
    return product


def _date(mjd, minutes=False):
    if not math.isfinite(mjd):
        return "unknown date"
    return (_MJD0 + _dt.timedelta(days=mjd)).strftime("%Y-%m-%d %H:%M" if minutes else "%Y-%m-%d")


def data_label(meta):
    """A short label a person can read: band, central wavelength, and the date with the
    cutout's index in its combined file (``'D2 1.342 µm 2025-05-03 #17'``) or, for a cutout
    on its own, the UTC time of the exposure to the minute (``'D2 1.342 µm 2025-05-03
    14:07'``). The observation id and the rest of the identity are in ``meta``."""
    mjd = meta["mjd_avg"] if math.isfinite(meta["mjd_avg"]) else meta["mjd_beg"]
    head = f"D{meta['detector']} {meta['central_wavelength']:.3f} µm"
    if meta["cutout_index"] is not None:
        return f"{head} {_date(mjd)} #{meta['cutout_index']}"
    return f"{head} {_date(mjd, minutes=True)}"


def identity(data):
    """The full identity of a SPHEREx dataset in one line, for a tooltip: observation id,
    detector, processing version, release, time and file, e.g. ``'2025W23_2A_0173_4 D1
    (6.4+psffix1, QR2), MJD 60832.58018, cutout #3 of m101.fits'``."""
    meta = data.meta
    text = f"{meta.get('obs_id') or 'unknown observation'} D{meta.get('detector')}"
    provenance = [str(v) for v in (meta.get("version"), (meta.get("release") or "").upper())
                  if v]
    if provenance:
        text += f" ({', '.join(provenance)})"
    mjd = meta.get("mjd_avg")
    if isinstance(mjd, float) and math.isfinite(mjd):
        text += f", MJD {mjd:.5f}"
    path = meta.get("source_path")
    if meta.get("cutout_index") is not None:
        text += f", cutout #{meta['cutout_index']}"
        if path:
            text += f" of {os.path.basename(path)}"
    elif path:
        text += f", {os.path.basename(path)}"
    return text


def _source_path(product):
    label = getattr(getattr(product, "_backing", None), "label", None)
    if isinstance(label, str) and os.path.isfile(label):
        return os.path.abspath(label)
    return None


def product_to_data(product, label=None):
    """One glue dataset from a :class:`~glue_spherex.products.spectral_image.SpectralImage`."""
    try:
        ny, nx = product.shape
        wl_c, bw_c = product.pixel_to_wave((nx - 1) / 2.0, (ny - 1) / 2.0)
        coords = celestial_wcs(product.keywords)
        meta = {
            "spherex": True,
            "obs_id": product.obsid,
            "detector": product.detector,
            "bandpass": product.bandpass,
            "mjd_beg": product.mjd_beg,
            "mjd_avg": product.mjd_avg,
            "mjd_end": product.mjd_end,
            "exptime": product.exptime,
            "psf_fwhm": product.psf_fwhm if math.isfinite(product.psf_fwhm) else None,
            "central_wavelength": float(wl_c),
            "central_bandwidth": float(bw_c),
            "access_url": product.access_url,
            "cutout_index": product.cutout_index,
            "version": product.version,
            "pipeline": product.pipeline,
            "release": product.release,
            "processing": product.processing,
            "source_path": _source_path(product),
            "source_index": product.cutout_index,
        }
        data = Data(label=label or data_label(meta), coords=coords)
        flux_units = str(product.keywords.get("BUNIT", _UNITS["IMAGE"])).strip()
        for name in SPHEREX_COMPONENTS[:4]:
            kind = HDU_OF_COMPONENT[name]
            # the format fixes the other extensions' units; reading their headers for them
            # would cost more than the rest of this function
            units = flux_units if kind == "IMAGE" else _UNITS[kind]
            data.add_component(Component(getattr(product, name if name != "flux" else "image"),
                                         units=units), name)
        data.add_component(Component(product.wavelength(), units="um"), "wavelength")
        data.add_component(Component(product.bandwidth(), units="um"), "bandwidth")
    except SpherexError:
        raise
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise SpherexFormatError(f"{product!r}: cannot make a glue dataset ({exc})") from None
    data.meta.update(meta)
    data._spherex_product = product
    return data


def products_to_data(products):
    """:func:`product_to_data` for each product, in order."""
    return [product_to_data(p) for p in products]
