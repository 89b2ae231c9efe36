"""The glue plugin for SPHEREx spectral images (non-Qt part; Qt lives in ``glue_spherex.qt``).

``setup()``, the ``glue.plugins`` entry point, registers the data factory (:mod:`.factory`),
the single-cutout exporter (:mod:`.exporter`), the 'SPHEREx sky' autolinker (:mod:`.links`)
and the ``specutils.Spectrum`` translator (:mod:`.translators`), and applies the glue-core
patches of :mod:`.patches`; :func:`teardown` undoes the patches and the translator (glue's
registries cannot remove the others). Importing the package registers where classes of older
session files moved (:mod:`.session_paths`). Public helpers for other code (e.g. the Qt
importer) are listed in ``__all__``: conversion to glue ``Data``, :func:`link_cutouts`, sky and
wavelength subsets, :func:`build_cube`, :func:`export_combined`, :func:`fetch_into` and
:func:`add_cutouts`.
"""

from __future__ import annotations

from .cube_data import build_cube
from .datasets import cutouts_in, is_spherex_data, product_to_data, products_to_data
from .into_session import SessionFetch, add_cutouts, fetch_into
from .links import link_cutouts, reference_cutout
from .session_paths import register as _register_session_paths
from .subsets import (
    SkyCircleSubsetState,
    WavelengthRangeSubsetState,
    sky_subset,
    wavelength_subset,
)

__all__ = ["setup", "teardown", "build_cube", "product_to_data", "products_to_data", "is_spherex_data",
           "cutouts_in", "link_cutouts", "reference_cutout", "SkyCircleSubsetState",
           "WavelengthRangeSubsetState", "sky_subset", "wavelength_subset", "export_combined",
           "fetch_into", "SessionFetch", "add_cutouts"]

_register_session_paths()  # older session files name classes by their old paths

_done = False
_declined = False  # switched off in the Plugin Manager (read once)


def setup():
    """Register the SPHEREx reader, exporter and autolinker; apply the glue-core patches.

    glue may call this more than once (``load_plugins`` and ``GlueApplication()`` both do);
    registering happens once, patches undone by :func:`teardown` are applied again.
    """
    global _done
    from . import patches

    if not _done:
        from . import exporter, factory, links

        factory.register()
        exporter.register()
        links.register_autolinker()
        _done = True
    from . import translators

    translators.register()  # idempotent; teardown takes it out
    patches.apply("glue-core")


def teardown():
    """Undo the glue-core patches of :func:`setup` (:mod:`.patches`) and take the
    Spectrum translator out of glue's registry.

    The factory, exporter and 'SPHEREx sky' autolinker stay registered (glue's registries
    have no removal API); the next :func:`setup` call applies the patches again.
    """
    from . import patches, translators

    translators.unregister()
    patches.undo("glue-core")


#: The plugin's entry-point name: its key in glue's plugins.cfg (the Plugin Manager).
ENTRY_POINT = "glue_spherex"


def setup_unless_disabled():
    """:func:`setup`, unless it ran before or the user switched the plugin off in glue's
    Plugin Manager.

    glue restores a session's data collection before it loads plugins
    (``GlueApplication.restore_session`` from a script), so the first SPHEREx object glue
    restores calls this: the collection then gets the glue-core patches as it fills, as it
    would had glue loaded the plugin first.
    """
    global _declined
    if _done or _declined:
        return
    from glue._plugin_helpers import PluginConfig  # what glue's load_plugins reads

    if PluginConfig.load().plugins[ENTRY_POINT]:
        setup()
    else:
        _declined = True


def export_combined(datasets, path, order="wavelength", target=None, progress=None,
                    cancel=None):
    """Write SPHEREx datasets as one combined cutout file (see :mod:`.exporter`)."""
    from .exporter import export_combined as _export

    return _export(datasets, path, order=order, target=target, progress=progress,
                   cancel=cancel)
