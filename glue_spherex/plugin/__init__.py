"""The glue plugin for SPHEREx spectral images (non-Qt part; Qt lives in ``glue_spherex.qt``).

``setup()`` is the ``glue.plugins`` entry point.  It registers

* the data factory for SPHEREx files (:mod:`.factory`) -- full frames, IRSA cutouts and
  combined cutout files (a list of datasets, one per cutout);
* the data exporter writing one dataset as a SPHEREx cutout file (:mod:`.exporter`);
* the 'SPHEREx sky' autolinker, and the wrapping of glue's 'Astronomy WCS' autolinker so
  it skips cutouts (:mod:`.links`);
* :class:`~.linkmanager.IndexedLinkManager` as the link manager of new data collections,
  which keeps linking hundreds of cutouts linear (:mod:`.linkmanager`).

Public helpers for other code (e.g. the Qt importer)::

    product_to_data(product) -> Data           products_to_data(products) -> list[Data]
    link_cutouts(data_collection, datasets=None) -> list of links added
    sky_subset(dc, ra, dec, radius) / wavelength_subset(dc, lo, hi) -> SubsetGroup
    export_combined(datasets, path, order='wavelength', target=None) -> path
    is_spherex_data(data) -> bool
"""

from __future__ import annotations

from .datasets import is_spherex_data, product_to_data, products_to_data
from .links import link_cutouts, reference_cutout
from .subsets import (
    SkyCircleSubsetState,
    WavelengthRangeSubsetState,
    sky_subset,
    wavelength_subset,
)

__all__ = ["setup", "teardown", "product_to_data", "products_to_data", "is_spherex_data",
           "link_cutouts", "reference_cutout", "SkyCircleSubsetState",
           "WavelengthRangeSubsetState", "sky_subset", "wavelength_subset", "export_combined"]

_done = False


def setup():
    """Register the SPHEREx reader, exporter, autolinker, link manager and session naming.

    glue may call this more than once (``load_plugins`` and ``GlueApplication()`` both do);
    only the first call has an effect.
    """
    global _done
    if _done:
        return
    # Registers glue's 'Astronomy WCS' autolinker if glue has not yet (we wrap it below).
    import glue.plugins.wcs_autolinking.wcs_autolinking  # noqa: F401

    from . import exporter, factory, linkmanager, links, serializer

    factory.register()
    exporter.register()
    links.register_autolinker()
    links.exclude_cutouts_from_wcs_autolinker()
    linkmanager.install()
    serializer.install()
    _done = True


def teardown():
    """Undo the global changes of :func:`setup`: glue's link manager, WCS autolinker and
    session serializer's naming.

    The factory, exporter and 'SPHEREx sky' autolinker stay registered (glue's registries
    have no removal API); the next :func:`setup` call re-applies everything.
    """
    global _done
    from . import linkmanager, links, serializer

    links.restore_wcs_autolinker()
    linkmanager.uninstall()
    serializer.uninstall()
    _done = False


def export_combined(datasets, path, order="wavelength", target=None, progress=None,
                    cancel=None):
    """Write SPHEREx datasets as one combined cutout file (see :mod:`.exporter`)."""
    from .exporter import export_combined as _export

    return _export(datasets, path, order=order, target=target, progress=progress,
                   cancel=cancel)
