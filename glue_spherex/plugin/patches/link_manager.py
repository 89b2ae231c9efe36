"""Patch: a data collection gets the indexed link manager when its first SPHEREx dataset
arrives, however the collection was made.

glue creates a collection's :class:`~glue.core.link_manager.LinkManager` in
``DataCollection.__init__``; a GlueApplication creates its collection before it loads
plugins, and a script or a restored session may make one before glue-spherex is set up.
Wrapping ``DataCollection.append`` (which ``extend``, ``DataCollection(data)``, glue's
``add_datasets``, drag-and-drop, ``load_data`` and session restore all go through) makes
the upgrade happen at the one point every dataset passes, before glue's link bookkeeping
runs over it (:func:`~glue_spherex.plugin.linkmanager.use_indexed_link_manager`: same
object, links kept). Adding any other dataset costs one dictionary look-up more.
"""

from __future__ import annotations

from glue.core.data_collection import DataCollection

from ..datasets import is_spherex_data
from ..linkmanager import use_indexed_link_manager
from .registry import Patch, replace_attribute

__all__ = ["PATCH"]


def _apply():
    glue_append = DataCollection.__dict__["append"]

    def append(self, data):
        if is_spherex_data(data):  # (a list goes through extend, which calls this per item)
            use_indexed_link_manager(self)
        return glue_append(self, data)

    append.__doc__ = glue_append.__doc__
    append.__wrapped__ = glue_append
    return replace_attribute(DataCollection, "append", append)


PATCH = Patch(
    name="indexed-link-manager",
    package="glue-core",
    versions=">=1.21,<2",
    changes="DataCollection.append: before the first SPHEREx dataset joins a collection, the "
            "collection's LinkManager becomes an IndexedLinkManager (same object, links kept)",
    why="glue's LinkManager is O(N^2) to add N images and O(N^3) to link them in a star: "
        "546 cutouts added to GlueApplication() took 28-32 s (297,570 pair checks)",
    verified_by="tests/glue/test_plugin_linkmanager.py (differential against glue's LinkManager), "
                "tests/qt/test_glue_entry.py (every entry path: class and pair checks)",
    drop_when="glue's LinkManager indexes links (no per-update rescan of the whole graph) "
              "and skips the all-pairs pixel-alignment check",
    apply=_apply,
)
