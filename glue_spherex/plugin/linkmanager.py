"""Link bookkeeping that stays linear in the number of datasets (issue #6).

glue-core's :class:`~glue.core.link_manager.LinkManager` recomputes every derivable component
of every dataset after each change: O(N^3) to star-link N images, O(N^2) objects.
:class:`IndexedLinkManager` is a drop-in subclass with the same results (same components,
same minimal link depth) computed from an index of the links and a union-find, with each
dataset's derivable components resolved lazily (:class:`LazyDerivableComponents`). It is
installed by the ``indexed-link-manager`` patch (:mod:`.patches`) or
:func:`use_indexed_link_manager`, and only used while the collection holds a SPHEREx cutout.
The algorithm is described in ``docs/glue_changes.rst`` ("The indexed link manager"), the
profile and timings in ``docs/performance.rst``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from glue.core.component import DerivedComponent
from glue.core.data import BaseCartesianData
from glue.core.link_helpers import LinkCollection
from glue.core.link_manager import LinkManager, equivalent_pixel_cids
from glue.core.message import ExternallyDerivableComponentsChangedMessage

from .datasets import is_spherex_data

__all__ = ["IndexedLinkManager", "LazyDerivableComponents", "use_indexed_link_manager",
           "adding_unlinked"]

#: Depth up to which a component is looked up by iterative deepening before the full
#: closure of the dataset is computed instead.  Star-linked cutouts need at most 3
#: (own pixels -> reference pixels or world -> other cutout pixels -> its world).
_MAX_LOOKUP_DEPTH = 4


class _UnionFind:
    def __init__(self):
        self.parent = {}

    def find(self, x):
        parent = self.parent
        root = parent.get(x)
        if root is None:
            return None
        while root is not parent[root]:
            root = parent[root]
        while x is not root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def add(self, x):
        if x not in self.parent:
            self.parent[x] = x

    def union(self, a, b):
        self.add(a)
        self.add(b)
        ra, rb = self.find(a), self.find(b)
        if ra is not rb:
            self.parent[ra] = rb


class _LinkGraph:
    """Index of one snapshot of the link set: producers, consumers, connected parts."""

    def __init__(self, links, own_by_data):
        self.producers = {}
        # the producers of a component whose inputs all belong to one dataset, by dataset:
        # the one-step check of a lookup is then O(1) even for a component that hundreds of
        # links produce (the reference cutout's, in a star)
        self.producers_by_parent = {}
        self.consumers = {}
        self.sourceless = []
        parts = _UnionFind()
        for link in links:
            to = link.get_to_id()
            sources = set(link.get_from_ids())
            self.producers.setdefault(to, []).append(link)
            parents = {cid.parent for cid in sources}
            if len(parents) == 1:
                (parent,) = parents
                self.producers_by_parent.setdefault(to, {}).setdefault(
                    id(parent), []).append(link)
            parts.add(to)
            if not sources:
                self.sourceless.append(link)
            entry = (link, to, len(sources))
            for cid in sources:
                self.consumers.setdefault(cid, []).append(entry)
                parts.union(cid, to)
        for own in own_by_data.values():
            first = None
            for cid in own:
                if first is None:
                    first = cid
                    parts.add(cid)
                else:
                    parts.union(first, cid)
        self.parts = parts

        # A signature per connected part: its links and the components datasets own in it.
        members = {}
        for link in links:
            members.setdefault(parts.find(link.get_to_id()), []).append(link)
        for own in own_by_data.values():
            for cid in own:
                members.setdefault(parts.find(cid), []).append(cid)
        self._mixed = {}
        self.signatures = {root: frozenset(items) for root, items in members.items()}
        self.linked_parts = {parts.find(link.get_to_id()) for link in links}

    def mixed_producers(self, cid):
        """Producers of ``cid`` whose inputs come from several datasets (or none)."""
        mixed = self._mixed.get(cid)
        if mixed is None:
            single = {id(link) for links in self.producers_by_parent.get(cid, {}).values()
                      for link in links}
            mixed = self._mixed[cid] = [link for link in self.producers.get(cid, ())
                                        if id(link) not in single]
        return mixed

    def part_of(self, own):
        for cid in own:
            return self.parts.find(cid)
        return None


class LazyDerivableComponents(Mapping):
    """The externally derivable components of one dataset, resolved on first access.

    Behaves like the dict glue's link manager stores in
    ``BaseCartesianData._externally_derivable_components``: keys are component IDs of
    other datasets (or this dataset's own derived components), values DerivedComponents
    whose link is the last link of a minimum-depth chain from the dataset's own main and
    coordinate components.
    """

    def __init__(self, data, graph, own):
        self._data = data
        self._graph = graph
        self._own = own
        self._part = graph.part_of(own)
        # (almost always just this dataset; a component can be shared with another one)
        self._own_parents = {id(cid.parent) for cid in own}
        self.signature = graph.signatures.get(self._part, frozenset())
        self.has_links = self._part in graph.linked_parts or bool(graph.sourceless)
        self._links = {}        # cid -> link, exact (minimum depth)
        self._within = {}       # cid -> (depth, link): derivable within depth
        self._not_within = {}   # cid -> depth: not derivable within depth
        self._components = {}
        self._complete = False

    # -- resolution ----------------------------------------------------------------

    def link_for(self, cid):
        """The link glue would use to derive ``cid`` in this dataset, or None."""
        link = self._links.get(cid)
        if link is not None or self._complete:
            return link
        graph = self._graph
        if cid in self._own or cid not in graph.producers:
            return None
        if self._part is not None and graph.parts.find(cid) is not self._part \
                and not graph.sourceless:
            return None
        for depth in range(1, _MAX_LOOKUP_DEPTH + 1):
            found = self._reach(cid, depth)
            if found is not None:
                self._links[cid] = found
                return found
        self._close()
        return self._links.get(cid)

    def _reach(self, cid, depth):
        """A link deriving ``cid`` within ``depth`` steps, True if own, else None."""
        if cid in self._own:
            return True
        known = self._within.get(cid)
        if known is not None and known[0] <= depth:
            return known[1]
        if depth <= 0 or self._not_within.get(cid, 0) >= depth:
            return None
        if depth == 1:  # only links fed by this dataset's own components can do it
            by_parent = self._graph.producers_by_parent.get(cid, {})
            candidates = [link for parent in self._own_parents
                          for link in by_parent.get(parent, ())]
            for link in (*candidates, *self._graph.mixed_producers(cid)):
                if all(f in self._own for f in link.get_from_ids()):
                    self._within[cid] = (1, link)
                    return link
            self._not_within[cid] = 1
            return None
        for link in self._graph.producers.get(cid, ()):
            if all(self._reach(f, depth - 1) is not None for f in link.get_from_ids()):
                self._within[cid] = (depth, link)
                return link
        self._not_within[cid] = depth
        return None

    def _close(self):
        """Compute every derivable component (breadth-first by depth, like glue)."""
        if self._complete:
            return
        graph = self._graph
        own = self._own
        depth = dict.fromkeys(own, 0)
        found = {}
        remaining = {}
        level = list(own)
        nxt = []
        for link in graph.sourceless:
            to = link.get_to_id()
            if to not in depth:
                depth[to] = 1
                found[to] = link
                nxt.append(to)
        d = 0
        consumers = graph.consumers
        while level or nxt:
            for cid in level:
                for link, to, inputs in consumers.get(cid, ()):
                    if inputs > 1:  # wait for the link's other inputs
                        key = id(link)
                        inputs = remaining.get(key, inputs) - 1
                        remaining[key] = inputs
                        if inputs:
                            continue
                    if to not in depth:
                        depth[to] = d + 1
                        found[to] = link
                        nxt.append(to)
            level, nxt = nxt, []
            d += 1
        for cid, link in found.items():
            self._links.setdefault(cid, link)
        # keep the closure's (depth) order for iteration
        self._links = {cid: self._links[cid] for cid in found}
        self._complete = True

    # -- Mapping interface ---------------------------------------------------------

    def __contains__(self, cid):
        try:
            return self.link_for(cid) is not None
        except TypeError:  # unhashable key
            return False

    def __getitem__(self, cid):
        component = self._components.get(cid)
        if component is None:
            link = self.link_for(cid)
            if link is None:
                raise KeyError(cid)
            component = self._components[cid] = DerivedComponent(self._data, link)
        return component

    def __iter__(self):
        self._close()
        return iter(list(self._links))

    def __len__(self):
        self._close()
        return len(self._links)

    def __repr__(self):
        state = f"{len(self._links)} resolved" + (", complete" if self._complete else "")
        return f"<LazyDerivableComponents of {self._data.label!r}: {state}>"


def _own_components(data):
    return frozenset(data.main_components + data.coordinate_components)


class IndexedLinkManager(LinkManager):
    """glue's LinkManager with indexed, lazy derivation (see the module docstring)."""

    #: datasets being appended by :func:`adding_unlinked` (a class default: no state added)
    _unlinked_additions = ()

    @staticmethod
    def applies_to(data_collection):
        """Whether to use the indexed algorithm for ``data_collection``."""
        return any(is_spherex_data(d) for d in data_collection)

    def update_externally_derivable_components(self, data=None):
        collection = self.data_collection
        if collection is None or not self.applies_to(collection):
            return super().update_externally_derivable_components(data)

        if self._unlinked_additions and self._only_unlinked_added():
            return
        datasets = [d for d in collection if isinstance(d, BaseCartesianData)]
        links = self._links
        links |= {link.inverse for link in links if link.inverse is not None}
        own_by_data = {d: _own_components(d) for d in datasets}
        graph = _LinkGraph(links, own_by_data)

        same = {}
        for d in datasets:
            new = LazyDerivableComponents(d, graph, own_by_data[d])
            old = getattr(d, "_externally_derivable_components", {})
            if isinstance(old, LazyDerivableComponents):
                key = (id(old.signature), id(new.signature))
                if key not in same:
                    same[key] = old.signature == new.signature
                if same[key]:
                    continue  # nothing this dataset can reach has changed
                changed = True
            else:
                # glue's eager dict: changed unless both are empty
                changed = len(old) > 0 or new.has_links
            try:
                d._externally_derivable_components = new
            except AttributeError:  # not a glue Data (e.g. a test double): use its setter
                d._set_externally_derivable_components(new)
                continue
            hub = getattr(d, "hub", None)
            if changed and hub is not None:
                hub.broadcast(ExternallyDerivableComponentsChangedMessage(d))

        self._update_pixel_alignment(datasets, links)

    # -- adding and removing links in O(#links) -----------------------------------
    # glue checks each new link against the whole list (list.__contains__), and removes
    # the links of a deleted dataset one at a time with a full update after each.

    def add_link(self, link, update_external=True):
        if not isinstance(link, list) or not self._indexed():
            return super().add_link(link, update_external=update_external)
        present = {id(x) for x in self._external_links}
        for item in link:
            if isinstance(item, list) or _compares_by_value(item):
                super().add_link(item, update_external=False)
                present = {id(x) for x in self._external_links}
                continue
            if isinstance(item, LinkCollection):
                new = id(item) not in present
            else:  # a ComponentLink is skipped if its inverse is there (as glue)
                new = item.inverse is None or id(item.inverse) not in present
            if new:
                self._external_links.append(item)
                present.add(id(item))
        if update_external:
            self.update_externally_derivable_components()

    def remove_link(self, link, update_external=True):
        if not isinstance(link, list) or not self._indexed():
            return super().remove_link(link, update_external=update_external)
        self._remove_links(link, update_external)

    def _remove_links(self, links, update_external=True):
        plain = {id(x) for x in links if not _compares_by_value(x)}
        for item in links:
            if _compares_by_value(item):  # JoinLink: glue also undoes the join
                super().remove_link(item, update_external=False)
        self._external_links[:] = [x for x in self._external_links if id(x) not in plain]
        if update_external:
            self.update_externally_derivable_components()

    def _data_removed(self, msg):
        if not self._indexed():
            return super()._data_removed(msg)
        data = msg.data
        cids = {cid for cid in data.components if cid.parent is data}
        remove = [link for link in self._external_links if _uses_any(link, cids)]
        if remove:
            self._remove_links(remove)

    def _component_removed(self, msg):
        if not self._indexed():
            return super()._component_removed(msg)
        remove = [link for link in self._external_links if _uses_any(link, {msg.component_id})]
        if remove:
            self._remove_links(remove)

    def _only_unlinked_added(self):
        """True if the update is for the datasets of :func:`adding_unlinked` only: the link
        list is the one of the block's start and none of its links uses them."""
        expected, added = self._unlinked_additions
        if len(self._external_links) != expected:
            return False
        added = [d for d in added if d in self.data_collection]
        cids = {cid for d in added for cid in d.components}
        return not any(_uses_any(link, cids) for link in self._external_links)

    def _indexed(self):
        return self.data_collection is not None and self.applies_to(self.data_collection)

    @staticmethod
    def _update_pixel_alignment(datasets, links):
        # Two datasets can only be pixel-aligned if each pixel component of one is joined
        # to a pixel component of the other by identity links.
        identical = _UnionFind()
        for link in links:
            if link.identity:
                identical.union(link.get_from_ids()[0], link.get_to_id())
        holders = {}
        for d in datasets:
            for cid in d.pixel_component_ids:
                root = identical.find(cid)
                if root is not None:
                    holders.setdefault(root, set()).add(d)
        for target in datasets:
            candidates = None
            for cid in target.pixel_component_ids:
                root = identical.find(cid)
                found = holders.get(root, set()) if root is not None else set()
                candidates = set(found) if candidates is None else candidates & found
                if not candidates:
                    break
            equivalent = {}
            for reference in datasets:  # dataset order, as glue
                if candidates and reference in candidates and reference is not target:
                    order = equivalent_pixel_cids(reference, target)
                    if order is not None:
                        equivalent[reference] = order
            target._set_pixel_aligned_data(equivalent)


def _compares_by_value(link):
    """True for links with their own ``__eq__`` (glue's JoinLink)."""
    return type(link).__eq__ is not object.__eq__


def _uses_any(link, cids):
    for sub in (link if isinstance(link, LinkCollection) else (link,)):
        if sub.get_to_id() in cids or any(f in cids for f in sub.get_from_ids()):
            return True
    return False


@contextlib.contextmanager
def adding_unlinked(data_collection, *datasets):
    """``with adding_unlinked(dc, table): dc.append(table)`` -- ``datasets`` join with no
    link, so the full link update that ``append`` triggers is skipped.

    A dataset no link uses can derive nothing from the others and adds nothing they can
    derive: its own empty derivable components (what glue gives a new ``Data``) and those of
    every other dataset are already what the update would compute. The skip applies only
    while the collection's link list is the one the block started with and no link uses
    one of ``datasets`` (otherwise the update runs as usual); with glue's own manager
    nothing changes. Adding the live spectrum's table to 274 linked cutouts cost 0.15 s
    of the GUI thread in that update.
    """
    manager = data_collection._link_manager
    if not isinstance(manager, IndexedLinkManager):
        yield
        return
    manager._unlinked_additions = (len(manager._external_links), datasets)
    try:
        yield
    finally:
        del manager._unlinked_additions


def use_indexed_link_manager(data_collection):
    """Give ``data_collection`` the indexed algorithm; returns its link manager.

    glue's own :class:`~glue.core.link_manager.LinkManager` of the collection becomes an
    :class:`IndexedLinkManager` in place (the same object, its links kept; the subclass adds
    no state), and is subscribed again to the collection's hub so that its handlers are
    used. Nothing is done to a manager that already is one, to another subclass some other
    code chose, or on a glue-core version the ``indexed-link-manager`` patch is not for.
    Derived components are recomputed on the collection's next link update.
    """
    from .patches import supported

    manager = data_collection._link_manager
    if type(manager) is not LinkManager or not supported("indexed-link-manager"):
        return manager
    manager.__class__ = IndexedLinkManager
    if manager.hub is not None:
        manager.register_to_hub(manager.hub)  # bound to the subclass's handlers now
    return manager
