"""Find the running glue application and the SPHEREx cutouts in a session.

glue calls importers with no arguments and layer actions with only the data collection, so
the actions look the application up among Qt's top-level windows.
"""

from __future__ import annotations

from qtpy import QtWidgets

from ..errors import SpherexError

__all__ = ["find_application", "is_cutout", "cutouts_in", "central_wavelength"]


def find_application(data_collection=None):
    """The GlueApplication showing ``data_collection`` (or the active/only one if None)."""
    from glue_qt.app.application import GlueApplication

    apps = [w for w in QtWidgets.QApplication.topLevelWidgets()
            if isinstance(w, GlueApplication)]
    if data_collection is not None:
        apps = [a for a in apps if a.data_collection is data_collection]
    else:
        active = [a for a in apps if a.isActiveWindow()]
        visible = [a for a in apps if a.isVisible()]
        apps = active or visible or apps
    if not apps:
        raise SpherexError("no glue application window is open")
    return apps[-1]


def is_cutout(data):
    """True for a Data made from a SPHEREx spectral image by :mod:`glue_spherex.plugin`."""
    from ..plugin import is_spherex_data

    return is_spherex_data(data)


def central_wavelength(data):
    return float(data.meta["central_wavelength"])


def cutouts_in(layers):
    """The SPHEREx cutouts among ``layers`` (Data, or Subsets whose Data is a cutout), in order
    and without repeats."""
    out = []
    for layer in layers:
        data = getattr(layer, "data", layer)  # a Subset's .data is its Data
        if is_cutout(data) and not any(data is d for d in out):
            out.append(data)
    return out
