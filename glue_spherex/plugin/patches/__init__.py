"""Every change glue-spherex makes to glue-core and glue-qt, in one list.

glue-core (registered here, one module each):

* ``indexed-link-manager`` (:mod:`.link_manager`) -- a collection gets the indexed link
  manager when its first SPHEREx dataset arrives;
* ``component-lookup`` (:mod:`.component_lookup`) -- ``Data.find_component_id`` without
  resolving every derivable component;
* ``session-names`` (:mod:`.session_names`) -- linear-time names in saved sessions;
* ``wcs-autolinker`` (:mod:`.wcs_autolinker`) -- glue's WCS autolinker sees the cutouts as
  one image.

glue-qt (registered by :mod:`glue_spherex.qt.patches`): ``batched-tree`` and
``restored-grids``.

Each :class:`Patch` says what it changes, why, which versions it is for, how it is
verified and when it can go; :func:`apply` applies those for the installed versions,
:func:`undo` takes them back. ``glue_spherex.plugin.setup``/``teardown`` apply and undo the
glue-core ones, ``glue_spherex.qt.setup``/``teardown`` the glue-qt ones. No patch changes
what glue does for a collection without SPHEREx data. The costs measured behind each are in
the documentation (Changes to glue).
"""

from __future__ import annotations

from . import component_lookup, link_manager, session_names, wcs_autolinker
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

for _module in (link_manager, component_lookup, session_names, wcs_autolinker):
    register(_module.PATCH)
del _module
