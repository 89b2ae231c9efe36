"""Patch: ``Data.find_component_id`` looks at a dataset's own components before the ones it
can derive through links.

glue's version lists every externally derivable component before anything else; with the
lazy mapping of :class:`~glue_spherex.plugin.linkmanager.IndexedLinkManager` that would
resolve the whole connected link graph on every ``data.id['flux']`` or ``data['flux']``.
The replacement gives the same result with the same precedence (own main, derived, then
coordinate components, then derivable ones), and hands datasets holding glue's own eager
dict -- every dataset of a collection without SPHEREx data -- to glue's method.
"""

from __future__ import annotations

from glue.core.component_id import ComponentID
from glue.core.data import Data

from ..linkmanager import LazyDerivableComponents
from .registry import Patch, replace_attribute

__all__ = ["PATCH"]


def _apply():
    glue_find = Data.__dict__["find_component_id"]

    def find_component_id(self, label):
        derivable = self._externally_derivable_components
        if not isinstance(derivable, LazyDerivableComponents):
            return glue_find(self, label)
        by_cid = isinstance(label, ComponentID)
        for cid_set in (self.main_components, self.derived_components,
                        self.coordinate_components):
            found = [cid for cid in cid_set if (cid is label if by_cid else cid.label == label)]
            if found:
                return found[0] if len(found) == 1 else None
        if by_cid:
            return label if label in derivable else None
        found = [cid for cid in derivable if cid.label == label]
        return found[0] if len(found) == 1 else None

    find_component_id.__doc__ = glue_find.__doc__
    find_component_id.__wrapped__ = glue_find
    return replace_attribute(Data, "find_component_id", find_component_id)


PATCH = Patch(
    name="component-lookup",
    package="glue-core",
    versions=">=1.21,<2",
    changes="Data.find_component_id: own components first, derivable ones only if needed "
            "(only for datasets with IndexedLinkManager's lazy derivable components)",
    why="glue lists every derivable component first: with lazy derivation each lookup would "
        "resolve the whole star of N cutouts (O(N) per lookup, O(N^2) objects kept)",
    verified_by="tests/glue/test_plugin_linkmanager.py (lookups resolve only what is asked; same "
                "answers as glue)",
    drop_when="glue's find_component_id consults derivable components only when the own "
              "ones do not match (or the indexed-link-manager patch is dropped)",
    apply=_apply,
)
