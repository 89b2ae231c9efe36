"""Patch: SPHEREx cutouts added through glue-core's ``Application.add_datasets`` are linked.

glue-qt's ``GlueApplication.add_datasets`` runs the autolinkers (and so the 'SPHEREx sky'
autolinker, :func:`~glue_spherex.plugin.links.spherex_autolink`); glue-core's
``Application.add_datasets``, which glue-jupyter's ``JupyterApplication`` uses for
``app.load_data`` and ``app.add_data``, runs none, so cutouts loaded in a notebook would
arrive unlinked. The wrapped method links the SPHEREx datasets of the collection exactly as
the 'SPHEREx sky' autolinker does, obeying its ``settings.AUTOLINK`` switch. A collection
without SPHEREx data is not touched; in glue-qt the autolinker then finds them linked.
"""

from __future__ import annotations

from glue.config import settings
from glue.core.application_base import Application
from glue.core.data_collection import DataCollection

from ..datasets import is_spherex_data
from .registry import Patch, replace_attribute

__all__ = ["PATCH"]


def _apply():
    from ..links import AUTOLINKER_LABEL, link_cutouts

    glue_add_datasets = Application.__dict__["add_datasets"]

    def add_datasets(self, *args, **kwargs):
        result = glue_add_datasets(self, *args, **kwargs)
        dc = args[0] if args and isinstance(args[0], DataCollection) else self.data_collection
        if (settings.AUTOLINK.get(AUTOLINKER_LABEL) != "always_ignore"
                and any(is_spherex_data(d) for d in dc)):
            link_cutouts(dc)
        return result

    add_datasets.__doc__ = glue_add_datasets.__doc__
    add_datasets.__wrapped__ = glue_add_datasets
    return replace_attribute(Application, "add_datasets", add_datasets)


PATCH = Patch(
    name="link-added-cutouts",
    package="glue-core",
    versions=">=1.22,<2",
    changes="Application.add_datasets (glue-core's, used by glue-jupyter): afterwards the "
            "SPHEREx datasets of the collection are linked as the 'SPHEREx sky' autolinker "
            "links them",
    why="glue-core's Application runs no autolinker, so jglue().load_data('m101_all.fits') "
        "gave unlinked cutouts (no overlay, no propagation through links)",
    verified_by="tests/glue/test_plugin_jupyter.py (jglue: load_data links N-1 CutoutLinks, image "
                "viewer overlays, subsets propagate)",
    drop_when="glue-core's Application.add_datasets runs the registered autolinkers",
    apply=_apply,
)
