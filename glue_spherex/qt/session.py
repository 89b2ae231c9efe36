"""Find the running glue application and the SPHEREx cutouts in a session.

glue calls importers with no arguments and layer actions with only the data collection, so
the actions look the application up among Qt's top-level windows.
"""

from __future__ import annotations

from qtpy import QtWidgets

from ..errors import SpherexError

__all__ = ["find_application", "central_wavelength"]


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


def central_wavelength(data):
    return float(data.meta["central_wavelength"])

