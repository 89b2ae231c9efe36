"""``data.get_object(Spectrum)`` for the live-spectrum dataset, through glue's translators.

glue-astronomy's ``specutils.Spectrum`` translator needs spectral ``coords``; the live-spectrum
table (:mod:`glue_spherex.plugin.live_spectrum`) and the SPHEREx cube
(:func:`glue_spherex.plugin.build_cube`) have none. :class:`SpherexSpectrumHandler` handles
those two (and their subsets: rows or pixels outside are masked; a cube gives its mean
spectrum, or itself with ``statistic=None``) and passes everything else to the next handler,
glue-astronomy's, unchanged. :func:`register` puts it ahead of glue-astronomy's for
``Spectrum`` (and ``Spectrum1D`` where specutils has it); :func:`unregister` removes only
our entries. glue-astronomy is not imported here.
"""

from __future__ import annotations

import numpy as np

__all__ = ["register", "unregister", "is_spectrum_table", "is_spherex_cube"]

PRIORITY = 10  # glue-astronomy registers its handlers with the default 0

_registered = []


def is_spectrum_table(data):
    """True for the table dataset a :class:`~glue_spherex.plugin.live_spectrum.LiveSpectrum` keeps."""
    return bool((getattr(data, "meta", None) or {}).get("spherex_spectrum"))


def is_spherex_cube(data):
    """True for the 3-D dataset :func:`glue_spherex.plugin.build_cube` makes."""
    return bool((getattr(data, "meta", None) or {}).get("spherex_cube"))


def _cube_spectrum(data, selected, statistic):
    """The cube (``statistic=None``) or its mean spectrum over the (selected) pixels."""
    import astropy.units as u
    from astropy.nddata import VarianceUncertainty
    from specutils import Spectrum

    wavelength = np.asarray(data.meta.get("slice_wavelength", []), float)
    if data.meta.get("order") != "wavelength" or not np.all(np.diff(wavelength) > 0):
        raise ValueError(f"{data.label!r} is not ordered by wavelength (a Spectrum needs a "
                         "strictly increasing spectral axis); build the cube with "
                         "order='wavelength'")
    flux_c, var_c = _column(data, "flux"), _column(data, "variance")
    unit = u.Unit(flux_c.units or "MJy/sr")
    flux = np.asarray(flux_c.data, float)
    var = np.asarray(var_c.data, float)
    excluded = ~np.isfinite(flux) | (False if selected is None else ~np.asarray(selected, bool))
    meta = {k: v for k, v in data.meta.items() if k != "spherex_cube"}
    if statistic is None:
        return Spectrum(flux=flux * unit, spectral_axis=wavelength * u.um, spectral_axis_index=0,
                        uncertainty=VarianceUncertainty(var * unit ** 2), mask=excluded,
                        meta=meta)
    if statistic != "mean":
        raise ValueError(f"statistic {statistic!r} is not offered for SPHEREx cubes; give "
                         "'mean' (the mean spectrum, variance propagated) or None (the cube)")
    use = ~excluded
    n = use.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(use, flux, 0.0).sum(axis=(1, 2)) / n
        var_mean = np.where(use, var, 0.0).sum(axis=(1, 2)) / n ** 2
    return Spectrum(flux=mean * unit, spectral_axis=wavelength * u.um,
                    uncertainty=VarianceUncertainty(var_mean * unit ** 2), mask=n == 0,
                    meta=meta)


def _column(data, name):
    for cid in data.main_components:
        if cid.label == name:
            return data.get_component(cid)
    raise ValueError(f"the SPHEREx spectrum dataset {data.label!r} has no {name!r} component")


def _spectrum(data, rows=None):
    """The table rows of ``data`` (those in ``rows`` unmasked) as a specutils Spectrum."""
    import astropy.units as u
    from astropy.table import QTable

    from ..analysis.spectrum import to_spectrum

    wavelength = _column(data, "wavelength")
    flux, error = _column(data, "flux"), _column(data, "error")
    table = QTable({
        "wavelength": np.asarray(wavelength.data, float) * u.Unit(wavelength.units or "um"),
        "flux": np.asarray(flux.data, float) * u.Unit(flux.units or "uJy"),
        "flux_err": np.asarray(error.data, float) * u.Unit(error.units or "uJy"),
    }, meta={k: v for k, v in data.meta.items() if k != "spherex_spectrum"})
    keep = np.isfinite(table["wavelength"].value)
    spectrum = to_spectrum(table)
    if rows is not None:
        spectrum.mask = spectrum.mask | ~np.asarray(rows, bool)[keep]
    return spectrum


class SpherexSpectrumHandler:
    """Translator for ``target_cls``: SPHEREx spectrum tables here, the rest passed on."""

    def __init__(self, target_cls):
        self.target_cls = target_cls

    def _next(self):
        """The handler glue would use without this one (glue-astronomy's, when loaded)."""
        from glue.config import data_translator

        for item in data_translator:
            if item.target_cls is self.target_cls and not isinstance(item.handler, type(self)):
                return item.handler
        raise TypeError(f"no translator between glue Data and {self.target_cls.__name__} "
                        "besides SPHEREx spectrum tables (is glue-astronomy's plugin loaded?)")

    def to_data(self, obj):
        return self._next().to_data(obj)

    def to_object(self, data_or_subset, attribute=None, **kwargs):
        from glue.core import Subset

        data = data_or_subset.data if isinstance(data_or_subset, Subset) else data_or_subset
        mask = data_or_subset.to_mask() if isinstance(data_or_subset, Subset) else None
        if attribute is None and is_spectrum_table(data):
            return _spectrum(data, mask)
        if attribute is None and is_spherex_cube(data):
            return _cube_spectrum(data, mask, kwargs.get("statistic", "mean"))
        return self._next().to_object(data_or_subset, attribute=attribute, **kwargs)


def register():
    """Put the handlers in glue's ``data_translator`` registry (once)."""
    if _registered:
        return
    import specutils
    from glue.config import data_translator

    seen = set()
    for name in ("Spectrum", "Spectrum1D"):
        cls = getattr(specutils, name, None)
        if cls is None or cls in seen:
            continue
        seen.add(cls)
        item = data_translator.item(cls, SpherexSpectrumHandler(cls), PRIORITY)
        data_translator.add(item)
        _registered.append(item)


def unregister():
    """Remove only the entries :func:`register` added (glue-astronomy's stay)."""
    from glue.config import data_translator

    while _registered:
        item = _registered.pop()
        if item in data_translator.members:
            data_translator.members.remove(item)
