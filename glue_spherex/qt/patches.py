"""The changes glue-spherex makes to glue-qt (listed with the glue-core ones in
:mod:`glue_spherex.plugin.patches`).

* ``batched-tree`` -- glue-qt's data-collection views use
  :class:`~glue_spherex.qt.collection_model.BatchedDataCollectionModel`;
* ``restored-grids`` -- ``GlueApplication.__setgluestate__`` makes the viewers of a session
  holding SPHEREx cutouts one per event-loop turn
  (:class:`~glue_spherex.qt.session_restore.ViewerRestore`), links the panels of restored
  wavelength grids again (:func:`~glue_spherex.qt.compare.reattach_wavelength_grids`) and
  gives every viewer its saved limits and the active subsets back
  (:func:`~glue_spherex.qt.compare.restore_view`);
* ``saved-view`` -- ``GlueApplication.__gluestate__`` saves those limits and subsets.

:func:`apply` and :func:`undo` are what the Qt plugin's ``setup`` and ``teardown`` call.
"""

from __future__ import annotations

from ..plugin.patches import Patch, register
from ..plugin.patches import apply as _apply_patches
from ..plugin.patches import undo as _undo_patches
from ..plugin.patches.registry import replace_attribute

__all__ = ["apply", "undo", "PATCHES"]


def _batched_tree():
    from glue_qt.core import data_collection_model

    from .collection_model import BatchedDataCollectionModel

    # the view looks the class up in its module each time it is given a data collection
    return replace_attribute(data_collection_model, "DataCollectionModel",
                             BatchedDataCollectionModel)


def _restored_grids():
    from glue_qt.app import GlueApplication

    from ..plugin import cutouts_in
    from .compare import (
        VIEW_KEY,
        apply_limits,
        reattach_wavelength_grids,
        restore_view,
        restore_view_when_shown,
        saved_limits,
    )
    from .session_restore import ViewerRestore

    glue_method = GlueApplication.__dict__["__setgluestate__"]  # a classmethod

    def __setgluestate__(cls, rec, context):
        saved = [list(tab) for tab in rec.get("viewers", [])]
        # glue makes the tabs (and names them) but no viewer yet
        app = glue_method.__func__(cls, dict(rec, viewers=[[] for _ in saved]), context)
        pending = [(i, v) for i, tab in enumerate(saved) for v in tab]
        record = rec.get(VIEW_KEY)
        has_cutouts = bool(cutouts_in(app.data_collection))

        def finish(app):
            if has_cutouts:
                reattach_wavelength_grids(app)
            if record:  # saved by the saved-view patch
                restore_view(app, record)
                # glue lays the viewers out (and fits their aspect) once the window is shown
                app._spherex_view_timer = restore_view_when_shown(app, record)

        if has_cutouts and sum(len(tab) for tab in app.viewers) == 0:
            def prepare(viewer, tab, index):  # its saved zoom before its first draw
                if record:
                    apply_limits(viewer, saved_limits(record, tab, index))

            ViewerRestore(app, pending, context, done=finish, prepare=prepare)  # one per turn
            return app
        if sum(len(tab) for tab in app.viewers) == 0:  # glue's own loop, as it runs it
            for i, v in pending:
                app.add_widget(context.object(v), tab=i, hold_position=True)
        finish(app)
        return app

    return replace_attribute(GlueApplication, "__setgluestate__", classmethod(__setgluestate__))

def _saved_view():
    from glue_qt.app import GlueApplication

    from .compare import VIEW_KEY, view_record

    glue_method = GlueApplication.__dict__["__gluestate__"]

    def __gluestate__(self, context):
        state = glue_method(self, context)
        state[VIEW_KEY] = view_record(self)
        return state

    return replace_attribute(GlueApplication, "__gluestate__", __gluestate__)


PATCHES = [
    register(Patch(
        name="batched-tree",
        package="glue-qt",
        versions=">=0.3,<1",
        changes="glue_qt.core.data_collection_model.DataCollectionModel is "
                "BatchedDataCollectionModel: one tree rebuild per batch of SPHEREx datasets "
                "or subsets and of the live spectrum's table (other data: glue's immediate "
                "rebuild); row icons made once per marker and colour",
        why="glue-qt rebuilds and re-expands the whole tree per dataset and per subset: "
            "O(N^2); adding 700 cutouts took 5.5-8.6 s and one subset group 12-18 s",
        verified_by="tests/qt/test_qt_collection_model.py (refresh counts, what the tree shows, "
                    "screenshot), tests/qt/test_glue_entry.py (every entry path)",
        drop_when="glue-qt batches its model refreshes (e.g. inside hub.delay_callbacks)",
        apply=_batched_tree,
    )),
    register(Patch(
        name="restored-grids",
        package="glue-qt",
        versions=">=0.3,<1",
        changes="GlueApplication.__setgluestate__: the viewers of a session holding SPHEREx "
                "cutouts are made one per event-loop turn after the window exists (other "
                "sessions: glue's loop); then the wavelength grids' shared pan/zoom is "
                "reattached",
        why="glue saves the grid's viewers and limits but not the Python callbacks that keep "
            "the panels in step; making every viewer in the one restore call held the GUI "
            "thread ~2 s of the ~5 s restore of 274 cutouts",
        verified_by="tests/qt/test_qt_actions.py (grid restored from a .glu pans together; "
                    "viewers arrive one per turn), bench/bench_gui.py",
        drop_when="glue can save linked viewer limits itself and restores viewers "
                  "incrementally",
        apply=_restored_grids,
    )),
    register(Patch(
        name="saved-view",
        package="glue-qt",
        versions=">=0.3,<1",
        changes="GlueApplication.__gluestate__ also saves every viewer's limits and the "
                "active subsets (record 'spherex_view'); restored-grids applies them",
        why="glue resets image limits as layers come back and does not save the active "
            "subset, so a restored session lost its zoom and active subset",
        verified_by="tests/qt/test_qt_actions.py (grid restored from a .glu keeps its zoom and "
                    "active subset), bench/bench_gui.py",
        drop_when="glue restores viewer limits and the active subset itself",
        apply=_saved_view,
    )),
]


def apply():
    """Apply the glue-qt patches (those for the installed glue-qt); returns their names."""
    return _apply_patches("glue-qt")


def undo():
    """Undo the glue-qt patches; returns their names."""
    return _undo_patches("glue-qt")
