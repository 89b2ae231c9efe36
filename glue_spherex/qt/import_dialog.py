"""File ▸ Import Data ▸ SPHEREx cutouts…: search the archive, preview, and stream cutouts into glue.

The dialog is non-modal and works in two steps, both off the GUI thread. **Search** validates
the fields (a bad Dec or size is reported before any request), runs the query and shows a
count-first preview: cutouts per band and the estimated download size. **Fetch** (after a
Yes/No question if the cutouts would hold more than a few GB of memory) downloads in
parallel; every half second the arrived cutouts are added to the data collection in one batch
and linked by sky position with :func:`glue_spherex.plugin.link_cutouts` (never glue's
pairwise autolinker, so no link dialog). **Cancel** keeps what arrived; failed cutouts are
listed with their reasons and can be retried. Every error is one line in the dialog.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from astropy.time import Time
from qtpy import QtCore, QtGui, QtWidgets

from ..errors import SpherexError
from ..plugin.import_request import (
    BANDS,
    SIZE_UNITS,
    build_request,
    cutout_bytes,
    format_bytes,
    memory_bytes,
    parse_cutout_size,
    summarize,
)
from .fetch_worker import BackgroundTask, one_line
from .messages import plain_message

__all__ = ["SpherexImportDialog"]

#: Seconds between two batches of cutouts added to the session while fetching.
BATCH_SECONDS = 0.5
#: Largest share of the GUI thread's time that adding batches may take.
BATCH_WORK_SHARE = 0.1
#: Lines of text the status line under the results has room for before it grows.
STATUS_LINES = 2

_COLLECTIONS = (("Wide survey", "wide"), ("Deep fields", "deep"), ("Wide and deep", "both"))
_RELEASES = (("QR2, pipeline < 7", "qr2"), ("Pipeline 7 (QR3, QR2 reprocessed)", "qr3"),
             ("All (newest version of each)", "all"))
_SERVICES = (("TAP (ADQL)", "tap"), ("SIA2", "sia"))
_LAUNCH_MJD = 60740.0  # SPHEREx launched on 2025 March 11
_GREY = "color: #5f6368;"
_RED = "color: #b3261e;"
_GREEN = "color: #1e6b34;"


#: Above this estimate of the memory the cutouts will hold (:meth:`SpherexImportDialog.
#: memory_estimate`) the status line after a search warns in red.
MEMORY_WARNING_BYTES = 2 << 30
#: Above this estimate Fetch asks, in a Yes/No question, before downloading anything.
CONFIRM_MEMORY_BYTES = 3 * 10**9


class SpherexImportDialog(QtWidgets.QDialog):
    """Search the SPHEREx archive and load cutouts into ``data_collection`` as they arrive.

    Attributes a script or test may drive: the input widgets (``target_edit``,
    ``size_edit``, ``size_unit``, ``band_boxes`` (detector -> QCheckBox),
    ``collection_combo``, ``release_combo``, ``time_box``, ``time_start``, ``time_end``, ``service_combo``,
    ``workers_spin``, ``archive_edit``, ``cache_edit``, ``psf_combo`` (item data ``'full'``
    or ``'none'``: keep each cutout's PSF extension, or leave it out of the session so that
    aperture corrections use the header's PSF_FWHM)), the buttons (``search_button``,
    ``fetch_button``, ``cancel_button``, ``close_button``), ``status_label``, ``state``
    (``'idle'``, ``'searching'``, ``'previewed'``, ``'fetching'``, ``'finished'``),
    ``loaded`` (the Data added so far) and ``failures`` (failed cutouts: index, observation,
    reason).
    """

    state_changed = QtCore.Signal(str)

    def __init__(self, data_collection, parent=None):
        super().__init__(parent)
        self.data_collection = data_collection
        self.setWindowTitle("Import SPHEREx cutouts")
        self.setObjectName("SpherexImportDialog")
        self.state = "idle"
        self.request = None
        self.table = None
        self.preview = None
        self.loaded = []
        self.failures = []
        self._pending = []
        self._done = self._cancelled = 0
        self._cancel_pressed = False
        self._to_fetch = None
        self._rows = {}
        self._loaded_indices = set()
        self._task = None
        self._delete_when_ended = False
        self._session_error = None

        self._build()
        self._load_defaults()
        self._connect()
        self._set_state("idle")
        self._update_target_hint()
        self._update_size_hint()
        self.resize(640, self.sizeHint().height())

    # ------------------------------------------------------------------ layout

    def _build(self):
        outer = QtWidgets.QVBoxLayout(self)
        outer.setSpacing(10)

        intro = QtWidgets.QLabel(
            "Find SPHEREx spectral-image cutouts around a target and add them to this glue "
            "session as they download. Each cutout keeps its flux, variance, flags, zodiacal "
            "model and per-pixel wavelength.")
        intro.setWordWrap(True)
        intro.setStyleSheet(_GREY)
        outer.addWidget(intro)

        search_box = QtWidgets.QGroupBox("Search")
        form = QtWidgets.QFormLayout(search_box)
        form.setFieldGrowthPolicy(QtWidgets.QFormLayout.ExpandingFieldsGrow)

        self.target_edit = QtWidgets.QLineEdit()
        self.target_edit.setPlaceholderText("M101   or   210.80227 54.34895   or   14h03m12.6s +54d20m56s")
        self.target_hint = _small_label()
        form.addRow("Target", _stack(self.target_edit, self.target_hint))

        self.size_edit = QtWidgets.QLineEdit()
        self.size_edit.setMaximumWidth(90)
        self.size_unit = QtWidgets.QComboBox()
        self.size_unit.addItems(SIZE_UNITS)
        self.size_hint = _small_label()
        row = _row(self.size_edit, self.size_unit, self.size_hint, stretch=True)
        form.addRow("Cutout size", row)

        bands = QtWidgets.QGridLayout()
        bands.setHorizontalSpacing(18)
        self.band_boxes = {}
        for det, (_name, lo, hi) in BANDS.items():
            box = QtWidgets.QCheckBox(f"D{det}  {lo:.2f}–{hi:.2f} µm")
            box.setToolTip(f"Detector {det}: {lo:.2f}–{hi:.2f} µm")
            self.band_boxes[det] = box
            bands.addWidget(box, (det - 1) // 3, (det - 1) % 3)
        bands_widget = QtWidgets.QWidget()
        bands_widget.setLayout(bands)
        bands.setContentsMargins(0, 0, 0, 0)
        form.addRow("Bands", bands_widget)

        self.collection_combo = QtWidgets.QComboBox()
        for text, value in _COLLECTIONS:
            self.collection_combo.addItem(text, value)
        form.addRow("Collection", _row(self.collection_combo, stretch=True))

        self.release_combo = QtWidgets.QComboBox()
        for text, value in _RELEASES:
            self.release_combo.addItem(text, value)
        self.release_combo.setToolTip("QR2 as first processed keeps one calibration; pipeline 7 "
                                      "is IRSA's newest processing")
        form.addRow("Release", _row(self.release_combo, stretch=True))

        self.time_box = QtWidgets.QCheckBox("only between MJD")
        self.time_start = _mjd_spin()
        self.time_end = _mjd_spin()
        self.time_dates = _small_label()
        form.addRow("Time", _row(self.time_box, self.time_start, QtWidgets.QLabel("and"),
                                 self.time_end, self.time_dates, stretch=True))

        self.service_combo = QtWidgets.QComboBox()
        for text, value in _SERVICES:
            self.service_combo.addItem(text, value)
        self.workers_spin = QtWidgets.QSpinBox()
        self.workers_spin.setRange(1, 64)
        form.addRow("Query with", _row(self.service_combo, QtWidgets.QLabel("   Parallel downloads"),
                                       self.workers_spin, stretch=True))

        self.advanced_button = QtWidgets.QToolButton()
        self.advanced_button.setText("Advanced")
        self.advanced_button.setCheckable(True)
        self.advanced_button.setToolButtonStyle(QtCore.Qt.ToolButtonTextBesideIcon)
        self.advanced_button.setArrowType(QtCore.Qt.RightArrow)
        self.advanced_button.setAutoRaise(True)
        form.addRow(self.advanced_button)

        self.advanced = QtWidgets.QWidget()
        adv = QtWidgets.QFormLayout(self.advanced)
        adv.setContentsMargins(18, 0, 0, 0)
        self.archive_edit = QtWidgets.QLineEdit()
        adv.addRow("Archive URL", self.archive_edit)
        self.cache_edit = QtWidgets.QLineEdit()
        self.cache_edit.setPlaceholderText("none: cutouts are kept in memory only")
        self.cache_browse = QtWidgets.QPushButton("Browse…")
        adv.addRow("Cache directory", _row(self.cache_edit, self.cache_browse))
        self.psf_combo = QtWidgets.QComboBox()
        self.psf_combo.addItem("full: every cutout's PSF, as IRSA sends it", "full")
        self.psf_combo.addItem("none: leave the PSF out (aperture corrections from PSF_FWHM)",
                               "none")
        self.psf_combo.setToolTip("IRSA always sends the PSF (4.9 of ~5.1 MB of a QR2 "
                                  "cutout); 'none' keeps it out of memory")
        adv.addRow("PSF", self.psf_combo)
        self.advanced.setVisible(False)
        form.addRow(self.advanced)
        outer.addWidget(search_box)

        results = QtWidgets.QGroupBox("Results")
        res = QtWidgets.QVBoxLayout(results)
        self.headline = QtWidgets.QLabel("Press Search to see what the archive holds.")
        self.headline.setWordWrap(True)
        font = self.headline.font()
        font.setBold(True)
        self.headline.setFont(font)
        res.addWidget(self.headline)

        self.preview_table = QtWidgets.QTableWidget(0, 4)
        self.preview_table.setHorizontalHeaderLabels(["Band", "Wavelength (µm)", "Cutouts", "Download"])
        self.preview_table.verticalHeader().setVisible(False)
        self.preview_table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.preview_table.setSelectionMode(QtWidgets.QAbstractItemView.NoSelection)
        self.preview_table.setFocusPolicy(QtCore.Qt.NoFocus)
        self.preview_table.setAlternatingRowColors(True)
        header = self.preview_table.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.Stretch)
        _compact(self.preview_table, len(BANDS) + 1, fixed=True)
        res.addWidget(self.preview_table)

        self.progress = QtWidgets.QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setFormat("%v of %m cutouts")
        self.progress.setVisible(False)
        _keep_space_when_hidden(self.progress)  # so that the buttons stay put when it shows
        res.addWidget(self.progress)

        self.failure_label = QtWidgets.QLabel("Failed cutouts")
        self.failure_table = QtWidgets.QTableWidget(0, 3)
        self.failure_table.setHorizontalHeaderLabels(["Cutout", "Observation", "Reason"])
        self.failure_table.verticalHeader().setVisible(False)
        self.failure_table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        fh = self.failure_table.horizontalHeader()
        fh.setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeToContents)
        fh.setSectionResizeMode(1, QtWidgets.QHeaderView.ResizeToContents)
        fh.setSectionResizeMode(2, QtWidgets.QHeaderView.Stretch)
        _compact(self.failure_table, 4)
        self.failure_label.setVisible(False)
        self.failure_table.setVisible(False)
        res.addWidget(self.failure_label)
        res.addWidget(self.failure_table)
        res.addStretch(1)
        outer.addWidget(results, stretch=1)

        self.status_label = QtWidgets.QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(QtCore.Qt.TextSelectableByMouse)
        self.status_label.setAlignment(QtCore.Qt.AlignLeft | QtCore.Qt.AlignTop)
        # room for a two-line message from the start: a longer status does not push the
        # buttons down (the dialog is often at its smallest height, after Advanced closes)
        self.status_label.setMinimumHeight(
            STATUS_LINES * self.status_label.fontMetrics().lineSpacing())
        outer.addWidget(self.status_label)

        buttons = QtWidgets.QHBoxLayout()
        self.search_button = QtWidgets.QPushButton("Search")
        self.fetch_button = QtWidgets.QPushButton("Fetch")
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.close_button = QtWidgets.QPushButton("Close")
        self.search_button.setDefault(True)
        buttons.addStretch(1)
        for b in (self.search_button, self.fetch_button, self.cancel_button, self.close_button):
            b.setAutoDefault(False)
            buttons.addWidget(b)
        self.search_button.setAutoDefault(True)
        outer.addLayout(buttons)

    def _load_defaults(self):
        from ..irsa.config import conf, settings

        try:
            archive = settings().archive_url
        except SpherexError:
            archive = conf.archive_url
        self.archive_edit.setText(archive)
        self.cache_edit.setText(str(conf.cache_dir or ""))
        self.workers_spin.setValue(max(1, min(64, int(conf.workers))))
        self.size_edit.setText("2")
        self.size_unit.setCurrentText("arcmin")
        for box in self.band_boxes.values():
            box.setChecked(True)
        today = Time.now().mjd
        self.time_start.setValue(_LAUNCH_MJD)
        self.time_end.setValue(today)
        self._time_enabled(False)

    def _connect(self):
        self.target_edit.textChanged.connect(self._update_target_hint)
        self.size_edit.textChanged.connect(self._update_size_hint)
        self.size_unit.currentIndexChanged.connect(self._update_size_hint)
        self.time_box.toggled.connect(self._time_enabled)
        self.time_start.valueChanged.connect(self._update_dates)
        self.time_end.valueChanged.connect(self._update_dates)
        self.advanced_button.toggled.connect(self._toggle_advanced)
        self.cache_browse.clicked.connect(self._browse_cache)
        self.target_edit.returnPressed.connect(self.search)
        self.search_button.clicked.connect(self.search)
        self.fetch_button.clicked.connect(self.fetch)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.close)

        # Fields that change what a search finds invalidate the preview; the download settings
        # (parallel downloads, cache directory) are read when Fetch is pressed.
        for widget in self._inputs():
            if widget in (self.workers_spin, self.cache_edit, self.psf_combo):
                continue
            for name in ("textChanged", "toggled", "currentIndexChanged", "valueChanged"):
                signal = getattr(widget, name, None)
                if signal is not None:
                    signal.connect(self._inputs_changed)
                    break

        self._batch_timer = QtCore.QTimer(self)
        self._batch_timer.setInterval(int(BATCH_SECONDS * 1000))
        self._batch_timer.timeout.connect(self._flush)

    def _inputs(self):
        return [self.target_edit, self.size_edit, self.size_unit, *self.band_boxes.values(),
                self.collection_combo, self.release_combo, self.time_box, self.time_start, self.time_end,
                self.service_combo, self.workers_spin, self.archive_edit, self.cache_edit,
                self.psf_combo]

    # ------------------------------------------------------------------ small UI helpers

    def _toggle_advanced(self, shown):
        self.advanced.setVisible(shown)
        self.advanced_button.setArrowType(QtCore.Qt.DownArrow if shown else QtCore.Qt.RightArrow)
        if not shown:  # give the space back once the layout has caught up
            QtCore.QTimer.singleShot(0, self._shrink)

    def _shrink(self):
        self.adjustSize()
        self.resize(max(self.width(), 640), self.height())

    def _browse_cache(self):
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Cache directory for cutouts",
                                                          self.cache_edit.text())
        if path:
            self.cache_edit.setText(path)

    def _time_enabled(self, on):
        self.time_start.setEnabled(on)
        self.time_end.setEnabled(on)
        self._update_dates()

    def _update_dates(self, *args):
        if not self.time_box.isChecked():
            self.time_dates.setText("")
            return
        start, end = (Time(s.value(), format="mjd").iso[:10]
                      for s in (self.time_start, self.time_end))
        self.time_dates.setText(f"{start} to {end}")

    def _update_target_hint(self, *args):
        from ..irsa.resolve import parse_coordinates

        text = self.target_edit.text().strip()
        if not text:
            self.target_hint.setText("An object name or RA Dec (ICRS; degrees or sexagesimal)")
            self.target_hint.setStyleSheet(_GREY)
            return
        try:
            coord = parse_coordinates(" ".join(text.split()))
        except SpherexError as exc:
            self.target_hint.setText(one_line(exc))
            self.target_hint.setStyleSheet(_RED)
            return
        if coord is None:
            self.target_hint.setText("Object name: resolved with CDS Sesame when you search")
        else:
            self.target_hint.setText(f"RA {coord.ra.deg:.5f}°   Dec {coord.dec.deg:+.5f}°   (ICRS)")
        self.target_hint.setStyleSheet(_GREY)

    def _update_size_hint(self, *args):
        try:
            _, px = parse_cutout_size(self.size_edit.text(), self.size_unit.currentText())
        except SpherexError as exc:
            self.size_hint.setText(one_line(exc))
            self.size_hint.setStyleSheet(_RED)
            return
        side = max(1, round(px))
        self.size_hint.setText(f"≈ {side} × {side} px, {format_bytes(cutout_bytes(px))} per cutout")
        self.size_hint.setStyleSheet(_GREY)

    def _show(self, text, style=_GREY):
        self.status_label.setText(text)
        self.status_label.setStyleSheet(style)

    def show_error(self, message):
        """Show ``message`` (its first line only) as an error under the results."""
        self._show(plain_message(message), _RED)

    def _set_state(self, state):
        self.state = state
        busy = state in ("searching", "fetching")
        for widget in self._inputs() + [self.advanced_button, self.cache_browse]:
            widget.setEnabled(not busy)
        if not busy:
            self._time_enabled(self.time_box.isChecked())
        self.search_button.setEnabled(not busy)
        remaining = len(self._remaining()) if state == "finished" else 0
        self.fetch_button.setEnabled(
            (state == "previewed" and self.preview is not None and self.preview.total > 0)
            or remaining > 0)
        if remaining and remaining == len(self.failures):
            self.fetch_button.setText(f"Retry {remaining} failed")
        elif remaining:
            self.fetch_button.setText(f"Fetch {remaining} remaining")
        else:
            self.fetch_button.setText("Fetch")
        self.cancel_button.setEnabled(busy)
        self.progress.setVisible(state in ("fetching", "finished"))
        self.state_changed.emit(state)

    def _inputs_changed(self, *args):
        if self.state in ("previewed", "finished"):
            self.preview = None
            self.failures = []
            self._set_state("idle")
            self.headline.setText("The search fields changed: press Search to update the preview.")
            self._show("")

    # ------------------------------------------------------------------ search

    def _read_request(self):
        return build_request(
            target=self.target_edit.text(),
            size=self.size_edit.text(), size_unit=self.size_unit.currentText(),
            detectors=[d for d, box in self.band_boxes.items() if box.isChecked()],
            collection=self.collection_combo.currentData(),
            release=self.release_combo.currentData(),
            time=(self.time_start.value(), self.time_end.value()) if self.time_box.isChecked() else None,
            via=self.service_combo.currentData(), workers=self.workers_spin.value(),
            archive_url=self.archive_edit.text(), cache_dir=self.cache_edit.text())

    def search(self):
        """Validate the fields, then query the archive off the GUI thread."""
        if self.state in ("searching", "fetching"):
            return
        try:
            request = self._read_request()
        except SpherexError as exc:
            self.show_error(one_line(exc))
            return
        self.request = request
        self.preview = None
        self.failures = []
        self.preview_table.setRowCount(0)
        self._show_failures()
        self.headline.setText(f"Searching the archive around {request.target}…")
        self._show("")
        self._set_state("searching")

        def run(report, cancel):
            from ..irsa.core import SpherexClass

            archive = SpherexClass(archive_url=request.archive_url)
            coord = request.coord
            if coord is None:
                coord = resolve_name(request.target)
                report(coord)
            return archive.query_region(
                coord, size=request.size, bandpass=list(request.bandpasses),
                collection=request.collection, time=request.time, via=request.via,
                release=request.release)

        self._task = task = BackgroundTask(run, self)
        task.reported.connect(lambda coord: self._resolved(task, coord))
        task.succeeded.connect(lambda table: self._search_done(task, table))
        task.failed.connect(lambda message: self._search_failed(task, message))
        task.start()

    def _resolved(self, task, coord):
        if task is self._task:
            self.target_hint.setText(f"{self.request.target}:  RA {coord.ra.deg:.5f}°   "
                                     f"Dec {coord.dec.deg:+.5f}°   (ICRS, from CDS Sesame)")
            self.target_hint.setStyleSheet(_GREY)

    def _search_done(self, task, table):
        if task is not self._task:
            return  # a search the user cancelled
        self._task = None
        try:
            preview = summarize(table, self.request)
        except Exception as exc:  # noqa: BLE001 -- an unexpected answer, shown as one line
            self._search_failed(None, f"the archive's answer could not be read: {one_line(exc)}")
            return
        self.table = table
        self._loaded_indices = set()
        self.preview = preview
        self._fill_preview()
        self._set_state("previewed")
        memory = self.memory_estimate()
        if self.preview.total and memory > MEMORY_WARNING_BYTES:
            self._show(f"Warning: these cutouts will hold about {format_bytes(memory)} in "
                       "memory; leave the PSF out under Advanced, or narrow the search.", _RED)
        elif self.preview.total:
            self._show("Press Fetch to download them; they appear in the data collection as "
                       "they arrive.")
        else:
            self._show("")

    def _search_failed(self, task, message):
        if task is not None and task is not self._task:
            return
        self._task = None
        self.headline.setText("The search failed.")
        self.show_error(message)
        self._set_state("idle")

    def _fill_preview(self):
        preview = self.preview
        self.headline.setText(preview.headline())
        rows = list(preview.bands)
        self.preview_table.setRowCount(len(rows) + 1)
        for i, band in enumerate(rows):
            cells = (band.band.replace("SPHEREx-", ""),
                     f"{band.wavelength[0]:.2f} – {band.wavelength[1]:.2f}",
                     str(band.count), format_bytes(band.nbytes) if band.count else "–")
            self._set_row(i, cells, dim=band.count == 0)
        self._set_row(len(rows), ("Total", "", str(preview.total),
                                  format_bytes(preview.nbytes) if preview.total else "–"),
                      bold=True)

    def _set_row(self, row, cells, dim=False, bold=False):
        for col, text in enumerate(cells):
            item = QtWidgets.QTableWidgetItem(text)
            item.setTextAlignment(QtCore.Qt.AlignCenter if col else
                                  QtCore.Qt.AlignLeft | QtCore.Qt.AlignVCenter)
            if dim:
                item.setForeground(QtGui.QBrush(QtGui.QColor(140, 140, 140)))
            if bold:
                font = item.font()
                font.setBold(True)
                item.setFont(font)
            self.preview_table.setItem(row, col, item)

    # ------------------------------------------------------------------ fetch

    def _remaining(self):
        """Rows of the search result not loaded yet (failed, cancelled or never started)."""
        if self.table is None:
            return []
        return [i for i, idx in enumerate(self.table["cutout_index"])
                if int(idx) not in self._loaded_indices]

    def memory_estimate(self, table=None):
        """Bytes the cutouts of ``table`` (default: the whole search result) will hold in
        memory once loaded, with the PSF and cache folder now chosen in the form
        (:func:`~glue_spherex.plugin.import_request.memory_bytes`)."""
        table = self.table if table is None else table
        if table is None or self.request is None or not len(table):
            return 0
        cached = 0
        folder = self.cache_edit.text().strip()
        if folder:
            from ..download.cache import CutoutCache

            store = CutoutCache(Path(folder).expanduser())
            cached = sum(store.contains(str(url)) for url in table["cutout_url"])
        return memory_bytes(self.request.size_px, len(table) - cached, cached,
                            self.psf_combo.currentData() or "full")

    def memory_question(self, count, nbytes):
        """The Yes/No question Fetch asks before loading ``count`` cutouts that will hold
        about ``nbytes`` of memory (not shown: the caller runs ``exec()``)."""
        box = QtWidgets.QMessageBox(self)
        box.setIcon(QtWidgets.QMessageBox.Warning)
        box.setWindowTitle("Import SPHEREx cutouts")
        box.setText(f"These {count} cutouts will hold about {format_bytes(nbytes)} of memory "
                    "in this glue session. Fetch them anyway?")
        box.setInformativeText("To use less, choose PSF 'none' under Advanced, or narrow the "
                               "search: a smaller cutout size, fewer bands or a shorter time "
                               "range.")
        box.setStandardButtons(QtWidgets.QMessageBox.Yes | QtWidgets.QMessageBox.No)
        box.setDefaultButton(QtWidgets.QMessageBox.No)
        box.setObjectName("SpherexMemoryQuestion")
        return box

    def _memory_confirmed(self, table):
        nbytes = self.memory_estimate(table)
        if nbytes <= CONFIRM_MEMORY_BYTES:
            return True
        box = self.memory_question(len(table), nbytes)
        try:
            return box.exec() == QtWidgets.QMessageBox.Yes
        finally:
            box.deleteLater()

    def fetch(self):
        """Download the previewed cutouts off the GUI thread; after a cancel or failures,
        the ones not loaded yet. Above :data:`CONFIRM_MEMORY_BYTES` of estimated memory it
        asks first (:meth:`memory_question`); No fetches nothing."""
        if self.state == "finished" and self._remaining():
            table = self.table[self._remaining()]
        elif self.state == "previewed" and self.preview and self.preview.total:
            table = self.table
        else:
            return
        if not self._memory_confirmed(table):
            self._show("Nothing was fetched: choose PSF 'none' under Advanced or narrow the "
                       "search, or press Fetch again to load them all.")
            return
        cache = self.cache_edit.text().strip()
        request = self.request = dataclasses.replace(
            self.request, workers=self.workers_spin.value(),
            cache_dir=Path(cache).expanduser() if cache else None)
        self._to_fetch = table
        psf = self.psf_combo.currentData() or "full"
        self._bytes = {"downloaded": 0, "saved": 0, "psf": psf, "early": 0}
        self._rows = {int(r["cutout_index"]): (str(r["obs_id"]), str(r["bandpass"]))
                      for r in table}
        self.failures = []
        self._show_failures()
        self._done = self._cancelled = 0
        self._cancel_pressed = False
        self._pending = []
        self.progress.setRange(0, len(table))
        self.progress.setValue(0)
        self._set_state("fetching")
        self._show(f"Downloading {len(table)} cutouts with {request.workers} parallel "
                   "connections…")

        def run(report, cancel):
            from ..download.fetcher import fetch_cutouts
            from ..plugin import product_to_data

            cache = request.cache_dir if request.cache_dir is not None else ""  # "" = none
            for result in fetch_cutouts(table, workers=request.workers, cache_dir=cache,
                                        cancel=cancel):
                if cancel.is_set() and result.status == "ok":
                    # arrived after Cancel (a fast archive finishes the queue quickly): not
                    # added, so Cancel means what it says; a cached copy serves a resume
                    result = dataclasses.replace(result, status="cancelled",
                                                 reason="cancelled", data=None)
                data = None
                if result.status == "ok":
                    try:
                        product = result.product
                        saved = 0
                        if psf == "none":
                            saved = product.psf_nbytes
                            product = product.without_psf()
                            result.data = None  # the PSF leaves memory with the result
                        data = product_to_data(product)
                        data.meta["psf_bytes_saved"] = saved
                    except Exception as exc:  # noqa: BLE001 -- recorded as this cutout's failure
                        data = one_line(exc)
                report((result, data))

        self._task = task = BackgroundTask(run, self)
        task.reported.connect(self._arrived)
        task.succeeded.connect(lambda _: self._fetch_ended(task, None))
        task.failed.connect(lambda message: self._fetch_ended(task, message))
        self._batch_timer.start()
        task.start()

    def _arrived(self, item):
        result, data = item
        self._done += 1
        if self._cancel_pressed and result.status == "ok":
            # queued to the GUI thread before the worker saw Cancel: not added either, so
            # nothing enters the session once Cancel is pressed
            result = dataclasses.replace(result, status="cancelled", reason="cancelled",
                                         data=None)
            data = None
        self._bytes["downloaded"] += result.bytes
        self._bytes["early"] += result.bytes_saved
        if result.status == "ok" and not isinstance(data, str):
            self._bytes["saved"] += data.meta.pop("psf_bytes_saved", 0)
        if result.status == "ok" and not isinstance(data, str):
            self._pending.append(data)
            self._loaded_indices.add(int(result.cutout_index))
        elif result.status == "cancelled":
            self._cancelled += 1
        else:
            reason = data if isinstance(data, str) else (result.reason or result.status)
            obs_id, band = self._rows.get(int(result.cutout_index), ("", ""))
            self.failures.append(_Failure(result, reason, obs_id, band))
        self.progress.setValue(self._done - self._cancelled)

    def _flush(self):
        """Add the cutouts that arrived since the last batch to the session, linked and in
        wavelength order."""
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        from ..plugin import add_cutouts

        dc = self.data_collection
        started = time.perf_counter()
        try:
            add_cutouts(dc, batch)  # listed in wavelength order among the session's cutouts
        except Exception as exc:  # noqa: BLE001 -- reported at the end; the data stay loaded
            self._session_error = f"linking the cutouts failed: {one_line(exc)}"
        self.loaded.extend(d for d in batch if d in dc.data)
        # Each batch costs glue an update of the whole collection, which grows with it: wait
        # at least BATCH_WORK_SHARE^-1 times as long as this batch took, so the GUI thread
        # spends at most that share on batches and their number stays small for big imports.
        took = time.perf_counter() - started
        self._batch_timer.setInterval(int(1000 * max(BATCH_SECONDS, took / BATCH_WORK_SHARE)))

    def _fetch_ended(self, task, message):
        if task is not self._task:
            return
        self._task = None
        self._batch_timer.stop()
        self._flush()
        if self._delete_when_ended:
            self.deleteLater()
        message = message or self._session_error
        self._session_error = None
        loaded, total = len(self._loaded_indices), len(self.table)
        self._show_failures()
        self._set_state("finished")
        if message:
            self.show_error(f"{message.rstrip('.')} ({loaded} of {total} cutouts are in the "
                            "session).")
        elif self._cancel_pressed or self._cancelled or self._done < len(self._to_fetch):
            self._show(f"Cancelled: {loaded} of {total} cutouts are in the session.", _GREY)
        elif self.failures:
            self._show(f"{loaded} of {total} cutouts loaded; {len(self.failures)} failed "
                       "(listed above).", _RED)
        else:
            self._show(f"All {total} cutouts are in the session, linked by sky position. "
                       f"{self.bytes_note()}", _GREEN)

    def bytes_note(self):
        """``'Downloaded 12.3 MB'``, plus the bytes an early stop did not need to download
        and the PSF bytes left out."""
        counts = getattr(self, "_bytes", None)
        if not counts:
            return ""
        note = f"Downloaded {format_bytes(counts['downloaded'])}"
        if counts.get("early"):
            note += (f"; {format_bytes(counts['early'])} of EPSF and WCS-WAVE tables already "
                     "held not downloaded again")
        if counts["psf"] == "none":
            note += f"; {format_bytes(counts['saved'])} of PSF left out"
        return note + "."

    def _show_failures(self):
        shown = bool(self.failures)
        self.failure_label.setVisible(shown)
        self.failure_table.setVisible(shown)
        self.failure_label.setText(f"Failed cutouts ({len(self.failures)})")
        self.failure_table.setRowCount(len(self.failures))
        for row, failure in enumerate(self.failures):
            for col, text in enumerate((str(failure.cutout_index),
                                        f"{failure.obs_id} {failure.band}".strip(),
                                        failure.reason)):
                item = QtWidgets.QTableWidgetItem(text)
                item.setToolTip(failure.url or "")
                self.failure_table.setItem(row, col, item)

    # ------------------------------------------------------------------ cancel / close

    def cancel(self):
        """Stop the running search or download; cutouts already loaded stay in the session."""
        task = self._task
        if task is None:
            return
        if self.state == "searching":
            self._task = None
            task.cancel()
            self.headline.setText("Search cancelled.")
            self._set_state("idle")
            return
        task.cancel()
        self._flush()  # what arrived before Cancel stays; nothing after it is added
        self._cancel_pressed = True
        self._show("Cancelling: finishing the downloads in progress…")
        self.cancel_button.setEnabled(False)

    def closeEvent(self, event):
        """Closing stops a search or download; cutouts that arrived are still added."""
        if self._task is not None:
            self.cancel()
        if self._task is None:
            self.deleteLater()
        else:
            self._delete_when_ended = True
        super().closeEvent(event)

    def reject(self):  # Esc
        self.close()


def resolve_name(name):
    """ICRS position of an object name from CDS Sesame, with errors worded for this dialog."""
    from ..errors import SpherexInputError, SpherexServiceError
    from ..irsa.resolve import resolve_target

    try:
        return resolve_target(name)
    except SpherexInputError as exc:
        if not str(exc).startswith("unknown target"):
            raise
        raise SpherexInputError(f"unknown target {name!r}: CDS Sesame does not know this name; "
                                "check it or type the position as 'RA Dec'") from None
    except SpherexServiceError:
        raise SpherexServiceError(f"could not resolve {name!r}: the name resolver (CDS Sesame) "
                                  "cannot be reached; type the position as 'RA Dec'") from None


class _Failure:
    """One failed cutout as listed in the dialog."""

    def __init__(self, result, reason, obs_id, band):
        self.cutout_index = int(result.cutout_index)
        self.url = result.url
        self.obs_id = obs_id
        self.band = band.replace("SPHEREx-", "")
        self.reason = " ".join(str(reason).split()) or "failed"
        self.result = result


def _compact(table, rows, fixed=False):
    """Tight rows; tall enough for ``rows`` rows (exactly, if ``fixed``)."""
    row = table.fontMetrics().height() + 8
    table.verticalHeader().setDefaultSectionSize(row)
    table.verticalHeader().setSectionResizeMode(QtWidgets.QHeaderView.Fixed)
    height = table.horizontalHeader().sizeHint().height() + rows * row + 2 * table.frameWidth()
    if fixed:
        table.setFixedHeight(height)
        table.setVerticalScrollBarPolicy(QtCore.Qt.ScrollBarAlwaysOff)
    else:
        table.setMaximumHeight(height)


def _keep_space_when_hidden(widget):
    policy = widget.sizePolicy()
    policy.setRetainSizeWhenHidden(True)
    widget.setSizePolicy(policy)


def _small_label():
    label = QtWidgets.QLabel()
    font = label.font()
    font.setPointSizeF(font.pointSizeF() * 0.9)
    label.setFont(font)
    label.setStyleSheet(_GREY)
    return label


def _stack(*widgets):
    box = QtWidgets.QWidget()
    layout = QtWidgets.QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(2)
    for w in widgets:
        layout.addWidget(w)
    return box


def _row(*widgets, stretch=False):
    box = QtWidgets.QWidget()
    layout = QtWidgets.QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    for w in widgets:
        layout.addWidget(w)
    if stretch:
        layout.addStretch(1)
    return box


def _mjd_spin():
    spin = QtWidgets.QDoubleSpinBox()
    spin.setDecimals(2)
    spin.setRange(50000.0, 80000.0)
    spin.setSingleStep(1.0)
    spin.setMinimumWidth(100)
    return spin
