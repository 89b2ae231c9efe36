"""glue-spherex: query, fetch and explore NASA SPHEREx spectral-image cutouts.

The public API, importable from here (each name is loaded on first use, so
``import glue_spherex`` stays light and never imports Qt):

- reading: :class:`SpectralImage`, :func:`open_products`, :func:`read_combined`,
  :class:`CombinedWriter`;
- querying and fetching: :data:`Spherex` (the default :class:`SpherexClass`), :data:`conf`,
  :func:`fetch_cutouts`, :func:`fetch_to_file`;
- spectra: :func:`extract_spectrum`, and of a whole catalog :func:`extract_catalog`;
- the local IRSA-compatible archive: :class:`LocalArchive`, :class:`FaultConfig`.

The glue plugin lives in :mod:`glue_spherex.plugin` (and its Qt half in
:mod:`glue_spherex.qt`); the command line is ``glue-spherex``.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "SpectralImage": "products",
    "open_products": "products",
    "read_combined": "products",
    "CombinedWriter": "products",
    "conf": "irsa",
    "Spherex": "irsa",
    "SpherexClass": "irsa",
    "fetch_cutouts": "download",
    "fetch_to_file": "download",
    "extract_spectrum": "analysis",
    "extract_catalog": "catalog",
    "LocalArchive": "local_archive",
    "FaultConfig": "local_archive",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'glue_spherex' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
