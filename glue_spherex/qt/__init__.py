"""The Qt half of the glue-spherex plugin: menu entries, dialogs and the wavelength grid.

glue calls :func:`setup` through the ``glue_spherex_qt`` entry point (switch it off in
Plugins ▸ Plugin Manager). It registers File ▸ Import data ▸ **SPHEREx cutouts…** (the
non-modal :class:`SpherexImportDialog`, which adds cutouts itself as they download, so the
importer returns an empty list to glue), the Plugins menu entries to export all cutouts as
one MEF and to compare them across wavelengths, and the data-collection context-menu entries
(export or compare the selected cutouts; live spectrum of a subset, :mod:`.spectrum_action`).
It applies the glue-qt patches of :mod:`.patches`; :func:`teardown` undoes them. The menus
are described in ``docs/glue.rst``.
"""

from __future__ import annotations

__all__ = ["setup", "teardown", "IMPORT_LABEL", "EXPORT_LABEL", "EXPORT_SELECTED_LABEL", "COMPARE_LABEL",
           "COMPARE_SELECTED_LABEL", "import_cutouts", "export_session_cutouts",
           "export_selected_cutouts", "compare_session_cutouts", "compare_selected_cutouts", "error_notice",
           "finish_restore", "restore_pending"]

from .session_restore import finish_restore, restore_pending

IMPORT_LABEL = "SPHEREx cutouts…"
EXPORT_LABEL = "Export SPHEREx cutouts as MEF…"
EXPORT_SELECTED_LABEL = "Export selected SPHEREx cutouts as MEF…"
COMPARE_LABEL = "Compare SPHEREx cutouts across wavelengths"
COMPARE_SELECTED_LABEL = "Compare selected SPHEREx cutouts across wavelengths"

_registered = False


def setup():
    """Register the importer, menu entries and layer actions (once per process) and apply
    the glue-qt patches (again, after :func:`teardown`)."""
    global _registered
    from . import patches

    if not _registered:
        from glue.config import importer
        from glue_qt.config import layer_action, menubar_plugin

        importer.add(IMPORT_LABEL, import_cutouts)
        menubar_plugin.add(EXPORT_LABEL, export_session_cutouts)
        menubar_plugin.add(COMPARE_LABEL, compare_session_cutouts)
        layer_action.add(layer_action.item(
            EXPORT_SELECTED_LABEL, "Write the selected SPHEREx cutouts to one FITS file",
            export_selected_cutouts, None, False, False, False, False))
        layer_action.add(layer_action.item(
            COMPARE_SELECTED_LABEL, "Show the selected SPHEREx cutouts side by side, sky-linked",
            compare_selected_cutouts, None, False, False, False, False))
        from . import spectrum_action  # noqa: F401 -- registers the live-spectrum action (#7)

        _registered = True
    patches.apply()


def teardown():
    """Undo the glue-qt patches of :func:`setup` (:mod:`.patches`); the menu entries stay
    (glue's registries have no removal API)."""
    from . import patches

    patches.undo()


def import_cutouts():
    """glue importer: open the import dialog on the running application; returns ``[]``.

    Cutouts reach the session while they download (the dialog adds and links them in
    batches), so there is nothing left for glue to add when this returns.
    """
    from .import_dialog import SpherexImportDialog
    from .session import find_application

    app = find_application()
    dialog = SpherexImportDialog(app.data_collection, parent=app)  # deletes itself on close
    dialog.show()
    dialog.raise_()
    app._spherex_import_dialog = dialog  # lets scripts and tests find it
    return []


def export_session_cutouts(session, data_collection):
    """Plugins menu: export every SPHEREx cutout in the session."""
    from ..plugin import cutouts_in

    _open_export(cutouts_in(data_collection), session.application)


def export_selected_cutouts(layers, data_collection):
    """Data-collection menu: export the selected SPHEREx cutouts."""
    from ..plugin import cutouts_in
    from .session import find_application

    _open_export(cutouts_in(layers), find_application(data_collection))


def compare_session_cutouts(session, data_collection):
    """Plugins menu: wavelength grid of cutouts chosen evenly across the range."""
    _compare(session.application, None)


def compare_selected_cutouts(layers, data_collection):
    """Data-collection menu: wavelength grid of the selected cutouts."""
    from ..plugin import cutouts_in
    from .session import find_application

    _compare(find_application(data_collection), cutouts_in(layers))


def _open_export(datasets, app):
    from .export_action import ExportDialog

    try:
        dialog = ExportDialog(datasets, parent=app)
    except Exception as exc:  # noqa: BLE001 -- one line for the user, traceback in the log
        error_notice(app, exc)
        return None
    dialog.setAttribute(_delete_on_close())
    dialog.show()
    app._spherex_export_dialog = dialog
    return dialog


def _compare(app, datasets):
    from .compare import open_wavelength_grid

    try:
        return open_wavelength_grid(app, datasets, block=False)  # panel by panel
    except Exception as exc:  # noqa: BLE001 -- one line for the user, traceback in the log
        error_notice(app, exc)
        return None


def error_notice(parent, exc):
    """Show ``exc`` as one line in a non-blocking message box; unexpected errors also go to
    the log (View ▸ Console Log) with their traceback."""
    import logging

    from qtpy import QtWidgets

    from ..errors import SpherexError
    from .fetch_worker import one_line

    if not isinstance(exc, SpherexError):
        logging.getLogger(__name__).error("SPHEREx action failed", exc_info=exc)
    text = one_line(exc)
    box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Information, "SPHEREx", text,
                                QtWidgets.QMessageBox.Ok, parent)
    box.setAttribute(_delete_on_close())
    box.open()
    if parent is not None:
        parent._spherex_notice = box
    return box


def _delete_on_close():
    from qtpy import QtCore

    return QtCore.Qt.WA_DeleteOnClose
