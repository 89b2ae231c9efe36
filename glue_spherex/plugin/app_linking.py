"""Link SPHEREx cutouts added through any glue application, not only the Qt one.

glue-qt's ``GlueApplication.add_datasets`` runs the autolinkers (and so the 'SPHEREx sky'
autolinker, :func:`~.links.spherex_autolink`); glue-core's ``Application.add_datasets``,
which glue-jupyter's ``JupyterApplication`` uses for ``app.load_data`` and ``app.add_data``,
runs none, so cutouts loaded in a notebook would arrive unlinked. :func:`install` wraps
``Application.add_datasets`` to link the SPHEREx datasets it added, exactly as the 'SPHEREx
sky' autolinker does (and obeying its ``settings.AUTOLINK`` switch). Collections without
SPHEREx data are not touched; in glue-qt the autolinker then finds them linked already.
"""

from __future__ import annotations

from glue.config import settings
from glue.core.application_base import Application
from glue.core.data_collection import DataCollection

from .datasets import is_spherex_data
from .links import AUTOLINKER_LABEL, link_cutouts

__all__ = ["install", "uninstall", "installed"]

_glue_add_datasets = Application.__dict__["add_datasets"]


def _add_datasets(self, *args, **kwargs):
    result = _glue_add_datasets(self, *args, **kwargs)
    dc = args[0] if args and isinstance(args[0], DataCollection) else self.data_collection
    if (settings.AUTOLINK.get(AUTOLINKER_LABEL) != "always_ignore"
            and any(is_spherex_data(d) for d in dc)):
        link_cutouts(dc)
    return result


_add_datasets.__doc__ = _glue_add_datasets.__doc__
_add_datasets.__wrapped__ = _glue_add_datasets


def install():
    """Link SPHEREx datasets added by ``Application.add_datasets`` (idempotent)."""
    Application.add_datasets = _add_datasets


def uninstall():
    """Give ``Application.add_datasets`` back glue's own behaviour."""
    Application.add_datasets = _glue_add_datasets


def installed():
    return Application.__dict__["add_datasets"] is _add_datasets
