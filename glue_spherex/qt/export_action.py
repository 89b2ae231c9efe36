"""Export SPHEREx cutouts from a glue session into one multi-extension FITS file.

Reached from Plugins ▸ "Export SPHEREx cutouts as MEF…" (every cutout in the session) or from
the data collection's right-click menu, "Export selected SPHEREx cutouts as MEF…" (the selected
datasets). A small dialog asks for the order (wavelength or time) and the file name, then
:func:`glue_spherex.plugin.export_combined` writes the file off the GUI thread.
"""

from __future__ import annotations

import os

from qtpy import QtCore, QtWidgets

from ..errors import SpherexError
from ..plugin.import_request import format_bytes
from .fetch_worker import BackgroundTask
from .session import central_wavelength

__all__ = ["ExportDialog"]

_GREY = "color: #5f6368;"
_RED = "color: #b3261e;"
_GREEN = "color: #1e6b34;"


class ExportDialog(QtWidgets.QDialog):
    """Write ``datasets`` (SPHEREx cutouts) to one MEF, in wavelength or time order.

    Widgets a script or test may drive: ``order_wavelength`` / ``order_time`` (radio buttons),
    ``path_edit``, ``export_button``, ``status_label``; ``written`` is the path once done.
    """

    exported = QtCore.Signal(str)

    def __init__(self, datasets, parent=None):
        super().__init__(parent)
        if not datasets:
            raise SpherexError("no SPHEREx cutouts to export; import some with "
                               "File ▸ Import data ▸ SPHEREx cutouts…")
        self.datasets = list(datasets)
        self.written = None
        self._task = None
        self.setWindowTitle("Export SPHEREx cutouts")
        self._build()

    def _build(self):
        layout = QtWidgets.QVBoxLayout(self)
        lam = sorted(central_wavelength(d) for d in self.datasets)
        bands = sorted({str(d.meta.get("bandpass", "")).replace("SPHEREx-", "")
                        for d in self.datasets} - {""})
        summary = QtWidgets.QLabel(
            f"<b>{len(self.datasets)} cutout{'s' if len(self.datasets) != 1 else ''}</b>"
            f" &nbsp; {', '.join(bands)} &nbsp; λ {lam[0]:.3f}–{lam[-1]:.3f} µm")
        layout.addWidget(summary)
        explain = QtWidgets.QLabel(
            "One FITS file with IMAGEn, FLAGSn, VARIANCEn, ZODIn, PSFn and WCS-WAVEn "
            "extensions per cutout; it opens again in glue and with astropy.")
        explain.setWordWrap(True)
        explain.setStyleSheet(_GREY)
        layout.addWidget(explain)

        form = QtWidgets.QFormLayout()
        self.order_wavelength = QtWidgets.QRadioButton("wavelength")
        self.order_time = QtWidgets.QRadioButton("time")
        self.order_wavelength.setChecked(True)
        order = QtWidgets.QHBoxLayout()
        order.addWidget(self.order_wavelength)
        order.addWidget(self.order_time)
        order.addStretch(1)
        form.addRow("Order by", order)

        self.path_edit = QtWidgets.QLineEdit(os.path.join(os.getcwd(), "spherex_cutouts.fits"))
        self.browse_button = QtWidgets.QPushButton("Browse…")
        self.browse_button.clicked.connect(self._browse)
        path_row = QtWidgets.QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(self.browse_button)
        form.addRow("File", path_row)
        layout.addLayout(form)

        self.status_label = QtWidgets.QLabel()
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)
        # always laid out (only emptied when idle), so that nothing moves when it fills
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, len(self.datasets))
        self.progress.setValue(0)
        self.progress.setFormat("%v of %m cutouts")
        self.progress.setTextVisible(False)
        layout.addWidget(self.progress)

        buttons = QtWidgets.QHBoxLayout()
        buttons.addStretch(1)
        self.export_button = QtWidgets.QPushButton("Export")
        self.export_button.setDefault(True)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.close_button = QtWidgets.QPushButton("Close")
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.close_button)
        layout.addLayout(buttons)
        self.export_button.clicked.connect(self.export)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.close)
        self.resize(560, 220)

    @property
    def order(self):
        return "time" if self.order_time.isChecked() else "wavelength"

    def _browse(self):
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Export SPHEREx cutouts", self.path_edit.text(), "FITS files (*.fits *.fit)")
        if path:
            self.path_edit.setText(path)

    def _show(self, text, style=_GREY):
        self.status_label.setText(text)
        self.status_label.setStyleSheet(style)

    def export(self):
        """Write the file off the GUI thread, with progress; the outcome is one line."""
        if self._task is not None:
            return
        path = os.path.expanduser(self.path_edit.text().strip())
        if not path:
            self._show("Choose a file name.", _RED)
            return
        if not path.lower().endswith((".fits", ".fit", ".fts")):
            path += ".fits"
            self.path_edit.setText(path)
        problem = _unwritable(path)
        if problem:
            self._show(problem, _RED)
            return
        datasets, order = list(self.datasets), self.order

        def run(report, cancel):
            from ..plugin import export_combined

            try:
                export_combined(datasets, path, order=order,
                                progress=lambda done, total: report(done), cancel=cancel)
            except OSError as exc:
                raise SpherexError(_write_failure(path, exc)) from None
            return path

        self.export_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self._show(f"Writing {len(datasets)} cutouts to {path}…")
        self._task = task = BackgroundTask(run, self)
        task.reported.connect(self.progress.setValue)
        task.succeeded.connect(self._done)
        task.failed.connect(self._failed)
        task.start()

    def cancel(self):
        """Stop a running export; nothing is left at the file name."""
        if self._task is not None:
            self._task.cancel()
            self.cancel_button.setEnabled(False)
            self._show("Cancelling…")

    def _finish(self):
        self._task = None
        self.export_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _done(self, path):
        from astropy.io import fits

        self._finish()
        self.written = path
        header = fits.getheader(path)
        written = header.get("NCUTOUT", 0)
        failed = header.get("NFAILED", 0) + header.get("NMISSING", 0)
        size = format_bytes(os.path.getsize(path))
        if failed:
            self._show(f"Wrote {written} cutouts ({size}) to {path}; {failed} could not be "
                       "written (see its CUTOUT_INFO table)", _RED)
        else:
            self._show(f"Wrote {written} cutouts ({size}) to {path}", _GREEN)
        self.exported.emit(path)

    def _failed(self, message):
        cancelled = self._task is not None and self._task.cancel_event.is_set()
        self._finish()
        self.progress.setValue(0)
        self.progress.setTextVisible(False)
        if cancelled:
            self._show("Cancelled; nothing was written.", _GREY)
        else:
            self._show(message, _RED)

    def closeEvent(self, event):
        """Closing the dialog cancels a running export."""
        self.cancel()
        super().closeEvent(event)


def _unwritable(path):
    """Why ``path`` cannot be written, as a sentence saying what to do; None if it can."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"The folder {folder} does not exist; choose another file name."
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"The folder {folder} cannot be written to; choose another folder."
    if os.path.isdir(path):
        return f"{path} is a folder; choose a file name."
    return None


def _write_failure(path, exc):
    reason = (exc.strerror or str(exc)).rstrip(".").lower()
    return f"Could not write {path} ({reason}); choose another folder or free some space."
