"""Write SPHEREx datasets back to SPHEREx files.

* :func:`export_combined` -- many cutouts as one combined file (IRSA's cutouts-tutorial
  layout, written by :class:`~glue_spherex.products.combined.CombinedWriter` under a hidden
  staging name renamed onto the path when complete), in wavelength or time order.
* :func:`export_cutout` -- one dataset (or a subset of one) as a single spectral-image file,
  the glue data exporter 'SPHEREx spectral image (FITS)' (glue's dialog exports one dataset).

Each cutout's own extensions are used (headers, PSF cube or EPSF table, WCS-WAVE), byte for
byte while the dataset still holds the file's arrays; replaced ``flux``, ``variance``,
``flags`` or ``zodi`` values are written instead. A dataset whose source file is gone becomes
a failed CUTOUT_INFO row with the reason, not an aborted export.
"""

from __future__ import annotations

import math
import os

import numpy as np
from astropy.io import fits
from glue.config import data_exporter
from glue.core.subset import Subset

from ..errors import SpherexCancelled, SpherexError, SpherexInputError, SpherexOutputError
from ..fitsbytes.atomic import atomic_path
from ..products.combined import CombinedWriter
from ..products.spectral_image import SpectralImage
from .datasets import HDU_OF_COMPONENT, is_spherex_data, source_product

__all__ = ["export_combined", "export_cutout", "EXPORTER_LABEL"]

EXPORTER_LABEL = "SPHEREx spectral image (FITS)"
ORDERS = ("wavelength", "time")


def _source(data):
    """The SpectralImage behind ``data``: the one it was made from, or reopened from meta."""
    product = source_product(data, reopen=True)
    if product is not None:
        return product
    path = data.meta.get("source_path")
    if not path:
        raise SpherexInputError(f"{data.label!r}: the file it was read from is not known")
    if not os.path.isfile(path):
        raise SpherexInputError(f"{data.label!r}: its source file {path} no longer exists")
    return SpectralImage.open(path, data.meta.get("source_index"))  # says what is wrong


def _modified(data, product, mask=None):
    """``{extension: array}`` for the arrays ``data`` holds that differ from the file's."""
    out = {}
    for name, kind in HDU_OF_COMPONENT.items():
        held = data.get_component(name).data
        original = product.image if kind == "IMAGE" else getattr(product, name)
        if mask is None and _same_array(held, original):
            continue
        if np.shape(held) != tuple(product.shape):
            raise SpherexInputError(
                f"{data.label!r}: {name} has shape {np.shape(held)}, the file {product.shape}")
        values = np.array(held, dtype=original.dtype)
        if mask is not None and kind != "FLAGS":
            values[~mask] = np.nan
        out[kind] = values
    return out


def _same_array(held, original):
    """True when ``held`` is a view of exactly the file's bytes ``original`` (the product
    hands out a new view object each time, so identity says nothing)."""
    if held is original:
        return True
    if not (isinstance(held, np.ndarray) and isinstance(original, np.ndarray)):
        return False
    return (held.__array_interface__["data"][0] == original.__array_interface__["data"][0]
            and held.shape == original.shape and held.strides == original.strides
            and held.dtype == original.dtype)


def _hdulist(product, replace, suffix=""):
    """PRIMARY + the six extensions of ``product``, with ``replace`` {EXTNAME: array}."""
    primary = fits.PrimaryHDU()
    if product.version:
        primary.header["VERSION"] = product.version
    hdus = product.hdulist(suffix)
    for kind, values in replace.items():
        hdus[kind + suffix].data = values
    return fits.HDUList([primary, *hdus])


def _sort_key(order):
    def key(item):
        position, data = item
        wl = data.meta.get("central_wavelength", math.nan)
        mjd = data.meta.get("mjd_beg", math.nan)
        wl = wl if math.isfinite(wl) else math.inf
        mjd = mjd if math.isfinite(mjd) else math.inf
        return (wl, mjd, position) if order == "wavelength" else (mjd, wl, position)
    return key


def export_combined(datasets, path, order="wavelength", target=None, progress=None,
                    cancel=None):
    """Write the SPHEREx cutouts among ``datasets`` as one combined file at ``path``.

    Parameters
    ----------
    datasets : iterable of glue Data
        Non-SPHEREx datasets are skipped; at least one must be a SPHEREx cutout.
    path : str or PathLike
        Output file; an existing file is replaced (atomically).
    order : {'wavelength', 'time'}
        cutout_index 1, 2, ... follow the central wavelength or the exposure start.
    target : SkyCoord or (ra, dec) in degrees, optional
        Where CUTOUT_INFO's central wavelength is evaluated (default: each cutout's centre).
    progress : callable, optional
        ``progress(done, total)`` after each cutout.
    cancel : threading.Event, optional
        When set, the export stops, nothing is left at ``path`` (an existing file there is
        kept) and :class:`~glue_spherex.errors.SpherexCancelled` is raised.

    Returns
    -------
    str
        ``path``.
    """
    if order not in ORDERS:
        raise SpherexInputError(f"order must be one of {ORDERS}, got {order!r}")
    cutouts = [d for d in datasets if is_spherex_data(d)]
    if not cutouts:
        raise SpherexInputError("none of the datasets is a SPHEREx cutout; nothing to export")
    ordered = [d for _, d in sorted(enumerate(cutouts), key=_sort_key(order))]
    planned = [{"cutout_index": i, "access_url": d.meta.get("access_url") or "",
                "obs_id": d.meta.get("obs_id"), "detector": d.meta.get("detector"),
                "bandpass": d.meta.get("bandpass"), "observation_date": d.meta.get("mjd_beg"),
                "mjd_end": d.meta.get("mjd_end")}
               for i, d in enumerate(ordered, start=1)]
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    # built under a hidden name, renamed over ``path`` only when complete (not if cancelled)
    staging = os.path.join(directory, f".{name}.{os.getpid()}.export")
    try:
        with CombinedWriter(staging, planned, target=target, overwrite=True) as writer:
            for index, data in enumerate(ordered, start=1):
                if cancel is not None and cancel.is_set():
                    raise SpherexCancelled(f"export cancelled after {index - 1} of "
                                           f"{len(ordered)} cutouts; nothing was written")
                try:
                    product = _source(data)
                    replace = _modified(data, product)
                    writer.add(index, _hdulist(product, replace) if replace else product)
                except SpherexError as exc:
                    if writer.statuses[index] != "failed":  # add() records its own failures
                        writer.add_failure(index, str(exc))
                if progress is not None:
                    progress(index, len(ordered))
        os.replace(staging, path)
    except BaseException:
        for leftover in (staging, staging + ".part"):
            if os.path.exists(leftover):
                os.unlink(leftover)
        raise
    return path


def export_cutout(filename, data, components=None):
    """glue data exporter: one SPHEREx dataset, or a subset of one, as a spectral-image file.

    For a subset, ``flux``, ``variance`` and ``zodi`` are NaN outside it.  All extensions are
    always written (``components`` is ignored: the format has a fixed layout).
    """
    mask = None
    if isinstance(data, Subset):
        mask, data = np.asarray(data.to_mask(), bool), data.data
    if not is_spherex_data(data):
        raise SpherexInputError(
            f"{data.label!r} is not a SPHEREx cutout; this exporter writes SPHEREx datasets only")
    product = _source(data)
    hdul = _hdulist(product, _modified(data, product, mask))
    try:
        with atomic_path(filename) as tmp:
            hdul.writeto(tmp)
    except OSError as exc:
        if isinstance(exc, SpherexOutputError):
            raise
        raise SpherexOutputError(f"cannot write {filename}: {exc.strerror or exc}") from None
    return filename


def register():
    """Add the single-dataset exporter to glue's registry (once)."""
    if not any(member[0] is export_cutout for member in data_exporter.members):
        data_exporter(EXPORTER_LABEL, extension=["fits"])(export_cutout)
