"""Every change glue-spherex makes to glue-core and glue-qt, in one list.

glue-core patches are registered here, one module each: ``indexed-link-manager``
(:mod:`.link_manager`), ``component-lookup`` (:mod:`.component_lookup`), ``session-names``
(:mod:`.session_names`), ``wcs-autolinker`` (:mod:`.wcs_autolinker`) and
``link-added-cutouts`` (:mod:`.add_datasets_links`); the glue-qt ones (``batched-tree``,
``restored-grids``, ``saved-view``) by :mod:`glue_spherex.qt.patches`. Each :class:`Patch`
says what it changes, why, for which versions, how it is verified and when it can go;
:func:`apply`/:func:`undo` apply and take back those for the installed versions. No patch
changes what glue does for a collection without SPHEREx data. The table, with the costs
measured behind each, is ``docs/glue_changes.rst``.
"""

from __future__ import annotations

from . import add_datasets_links, component_lookup, link_manager, session_names, wcs_autolinker
from .registry import (
    Patch,
    applied,
    apply,
    installed_version,
    is_applied,
    register,
    registered,
    supported,
    undo,
    unregister,
    without,
)

__all__ = ["Patch", "register", "unregister", "registered", "apply", "undo", "applied", "is_applied",
           "supported", "installed_version", "without"]

for _module in (link_manager, component_lookup, session_names, wcs_autolinker,
                add_datasets_links):
    register(_module.PATCH)
del _module
