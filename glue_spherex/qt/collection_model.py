"""glue's data-collection tree, refreshed once per batch when SPHEREx cutouts arrive.

glue-qt's :class:`~glue_qt.core.data_collection_model.DataCollectionModel` rebuilds and
re-expands the whole tree for every dataset added and every subset created, so adding N
cutouts or one selection on them costs O(N²) (the figures are in ``docs/performance.rst`` and
``docs/glue_changes.rst``). :class:`BatchedDataCollectionModel` keeps glue's behaviour but,
for SPHEREx datasets and their subsets, defers the rebuild to a zero-delay single-shot timer:
one rebuild shows everything added before Qt next processes events, then selects the last
item as glue does; a selection made from code first completes a pending rebuild. Other data
(and deletions) keep glue's immediate refresh; the live spectrum's table (``meta
['spherex_spectrum']``) and its subsets join the batch like a cutout. Row icons are made once
per marker and colour (glue makes one per row at every rebuild and repaint: 0.3 s of the GUI
thread per rebuild at 274 cutouts). A SPHEREx dataset's tooltip adds its full
identity (observation id, processing version, source file) to the short label. Installed by
the ``batched-tree`` patch (:mod:`glue_spherex.qt.patches`).
"""

from __future__ import annotations

from glue_qt.core import data_collection_model as _dcm
from qtpy import QtCore

from ..plugin.datasets import identity, is_spherex_data

__all__ = ["BatchedDataCollectionModel"]

_GlueModel = _dcm.DataCollectionModel
#: the tree items whose icon is glue's ``layer_icon`` of their layer (a function of the
#: layer's marker and colour only)
_ICON_ITEMS = (_dcm.DataItem, _dcm.SubsetGroupItem, _dcm.SubsetItem)


def _batched(data):
    """Whether the tree refresh for ``data`` (or a subset of it) waits for the batch: SPHEREx
    cutouts and the live spectrum's table."""
    return is_spherex_data(data) or bool(getattr(data, "meta", {}).get("spherex_spectrum"))


class BatchedDataCollectionModel(_GlueModel):
    """:class:`DataCollectionModel` that coalesces the refreshes caused by SPHEREx cutouts."""

    def __init__(self, data_collection, parent=None):
        super().__init__(data_collection, parent=parent)
        self._pending = None  # 'data' or 'subset': what the deferred refresh should select
        self._refresh_timer = QtCore.QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(0)
        self._refresh_timer.timeout.connect(self.flush)

    def _on_add_data(self, message):
        if not _batched(message.data):
            self.flush()
            return super()._on_add_data(message)
        self._defer("data")

    def _on_add_subset(self, message):
        if not _batched(getattr(message.subset, "data", None)):
            self.flush()
            return super()._on_add_subset(message)
        self._defer("subset")

    def _icon_data(self, index):
        # glue builds a new icon (file lookup, bitmap, tint) for every row at every repaint
        # and rebuild: 0.3 s of the GUI thread per rebuild of a tree of 274 cutouts
        item = self._get_item(index)
        style = getattr(item, "style", None)
        if style is None or not isinstance(item, _ICON_ITEMS):
            return super()._icon_data(index)
        key = (style.marker, str(style.color))
        cache = self.__dict__.setdefault("_spherex_icons", {})
        icon = cache.get(key)
        if icon is None:
            icon = cache[key] = super()._icon_data(index)
        return icon

    def _defer(self, kind):
        self._pending = kind
        if not self._refresh_timer.isActive():
            self._refresh_timer.start()

    def _tooltip_data(self, index):
        item = self._get_item(index)
        data = getattr(item, "glue_data", None) if isinstance(item, _dcm.DataItem) else None
        if is_spherex_data(data):
            return f"{data.label}\n{identity(data)}"
        return super()._tooltip_data(index)

    def to_indices(self, items):
        # Selecting layers programmatically (the view's set_selected_layers) must come after
        # the pending refresh, whose selection of the last item would otherwise win.
        self.flush()
        return super().to_indices(items)

    @property
    def pending(self):
        """True while a refresh is waiting for the event loop."""
        return self._pending is not None

    def flush(self):
        """Rebuild the tree now if a refresh is pending, and select the last item added."""
        kind, self._pending = self._pending, None
        self._refresh_timer.stop()
        if kind is None:
            return
        self.invalidate()
        count = len(self.data_collection if kind == "data"
                    else self.data_collection.subset_groups)
        if count:  # it may have been deleted before the refresh ran
            index = self.data_index(count - 1) if kind == "data" else self.subsets_index(count - 1)
            self.new_item.emit(index)

