"""The IRSA client: SPHEREx image queries (TAP/SIA2), target-name resolution, configuration.

Public names, as in astroquery (``IrsaClass``/``Irsa``): :class:`SpherexClass` (the query
class), :data:`Spherex` (its default instance) and :data:`conf`. Importing reads no
configuration; it is validated when a query is made.
:func:`plan_catalog`: which images cover which sources of a catalog (one TAP upload query
per batch).
"""

from importlib import import_module

# Loaded on first use: the local archive imports cutout_params from here and must not pull in
# astropy and pyvo (tests/integration/test_archive_command.py).
_EXPORTS = {"Spherex": "core", "SpherexClass": "core", "conf": "config",
            "plan_catalog": "catalog_plan"}

__all__ = ["Spherex", "SpherexClass", "conf", "plan_catalog"]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
