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
from .fetch_worker import BackgroundTask
from .import_request import format_bytes
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
        layout.addWidget(self.status_label)

        buttons = QtWidgets.QHBoxLayout()
        buttons.addStretch(1)
        self.export_button = QtWidgets.QPushButton("Export")
        self.export_button.setDefault(True)
        self.close_button = QtWidgets.QPushButton("Close")
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.close_button)
        layout.addLayout(buttons)
        self.export_button.clicked.connect(self.export)
        self.close_button.clicked.connect(self.close)
        self.resize(560, 200)

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
        """Write the file off the GUI thread; the outcome is shown as one line."""
        if self._task is not None:
            return
        path = os.path.expanduser(self.path_edit.text().strip())
        if not path:
            self._show("Choose a file name.", _RED)
            return
        if not path.lower().endswith((".fits", ".fit", ".fts")):
            path += ".fits"
            self.path_edit.setText(path)
        datasets, order = list(self.datasets), self.order

        def run(report, cancel):
            from ..plugin import export_combined

            export_combined(datasets, path, order=order)
            return path

        self.export_button.setEnabled(False)
        self._show(f"Writing {len(datasets)} cutouts…")
        self._task = task = BackgroundTask(run, self)
        task.succeeded.connect(self._done)
        task.failed.connect(self._failed)
        task.start()

    def _done(self, path):
        from astropy.io import fits

        self._task = None
        self.written = path
        self.export_button.setEnabled(True)
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
        self._task = None
        self.export_button.setEnabled(True)
        self._show(message, _RED)
