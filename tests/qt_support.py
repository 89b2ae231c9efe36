"""Helpers shared by the GUI tests: a headless GlueApplication with the SPHEREx plugin, the
import dialog driven like a user would, and pixel checks on screenshots."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

pytest.importorskip("glue_qt")

from glue.config import settings  # noqa: E402

#: M101 in the local archive, and a time window in which every band sees it a few times.
TARGET = "210.80227 54.34895"
WINDOW = (60832.50, 60832.64)
#: Where screenshots go: a temporary directory, so a test run leaves the checkout untouched;
#: ``GLUE_SPHEREX_SCREENSHOT_DIR=docs/_static python -m pytest tests/qt/test_qt_import.py``
#: refreshes the pictures the documentation shows.
SHOTS = os.environ.get("GLUE_SPHEREX_SCREENSHOT_DIR") or os.path.join(
    tempfile.gettempdir(), "glue-spherex-screenshots")


@pytest.fixture(scope="session")
def window_size(archive):
    """How many cutouts the archive holds for TARGET in WINDOW (checked to suit the tests:
    a few dozen at most, spread over the bands)."""
    from glue_spherex.irsa.core import SpherexClass

    table = SpherexClass(archive_url=archive.url).query_region(TARGET, size="1arcmin",
                                                                 time=WINDOW)
    assert 12 <= len(table) <= 40 and len(set(table["bandpass"])) >= 5
    return len(table)


@pytest.fixture
def glue_app(qtbot, monkeypatch):
    """A shown GlueApplication with both halves of the plugin registered before it is built."""
    from glue_qt.app import GlueApplication

    import glue_spherex.plugin
    import glue_spherex.qt

    glue_spherex.plugin.setup()
    glue_spherex.qt.setup()
    # Any WCS autolinker left in 'always_show' would open a modal dialog and hang the test.
    for label in ("Astronomy WCS", "SPHEREx sky"):
        monkeypatch.setitem(settings.AUTOLINK, label, "always_accept")
    app = GlueApplication()
    qtbot.addWidget(app)  # pytest-qt closes it; never app.close() here
    app.resize(1400, 900)
    app.show()
    qtbot.waitExposed(app)
    return app


@pytest.fixture
def modal_watchdog(qtbot):
    """Names of modal dialogs that opened during the test (each is rejected at once, so a
    regression shows up as a failed assertion instead of a hung test)."""
    from qtpy import QtCore, QtWidgets

    seen = []

    def check():
        widget = QtWidgets.QApplication.activeModalWidget()
        if widget is not None:
            seen.append(type(widget).__name__)
            widget.reject() if hasattr(widget, "reject") else widget.close()

    timer = QtCore.QTimer()
    timer.timeout.connect(check)
    timer.start(100)
    yield seen
    timer.stop()


def menu_action(actions, label):
    return next(a for a in actions if a.text() == label)


def open_import_dialog(app):
    """File ▸ Import data ▸ SPHEREx cutouts… (the real menu action)."""
    from glue_spherex.qt import IMPORT_LABEL

    menu_action(app._actions["data_importers"], IMPORT_LABEL).trigger()
    return app._spherex_import_dialog


def fill(dialog, archive_url, target=TARGET, size="3", unit="arcmin", window=WINDOW,
         workers=4, bands=None):
    dialog.target_edit.setText(target)
    dialog.size_edit.setText(size)
    dialog.size_unit.setCurrentText(unit)
    for det, box in dialog.band_boxes.items():
        box.setChecked(bands is None or det in bands)
    dialog.time_box.setChecked(window is not None)
    if window is not None:
        dialog.time_start.setValue(window[0])
        dialog.time_end.setValue(window[1])
    dialog.workers_spin.setValue(workers)
    dialog.advanced_button.setChecked(True)
    dialog.archive_edit.setText(archive_url)


def search(qtbot, dialog, timeout=60_000):
    qtbot.mouseClick(dialog.search_button, _left())
    qtbot.waitUntil(lambda: dialog.state != "searching", timeout=timeout)


def fetch(qtbot, dialog, timeout=120_000):
    qtbot.mouseClick(dialog.fetch_button, _left())
    qtbot.waitUntil(lambda: dialog.state == "finished", timeout=timeout)


def _left():
    from qtpy.QtCore import Qt

    return Qt.LeftButton


def qimage_array(image):
    """RGB uint8 array of a QImage."""
    from qtpy.QtGui import QImage

    image = image.convertToFormat(QImage.Format_RGB32)
    w, h = image.width(), image.height()
    buf = np.frombuffer(image.constBits(), np.uint8, count=image.sizeInBytes())
    return buf.reshape(h, image.bytesPerLine() // 4, 4)[:, :w, 2::-1]


def axes_region(window_image, window, viewer, inset=4):
    """The pixels of ``viewer``'s image axes inside a screenshot of ``window``."""
    from qtpy.QtCore import QPoint

    canvas = viewer.axes.figure.canvas
    ratio = canvas.devicePixelRatioF()
    box = viewer.axes.get_window_extent()
    x0, x1 = box.x0 / ratio + inset, box.x1 / ratio - inset
    top, bottom = canvas.height() - box.y1 / ratio + inset, canvas.height() - box.y0 / ratio - inset
    corner = canvas.mapTo(window, QPoint(int(x0), int(top)))
    rgb = qimage_array(window_image)
    return rgb[corner.y():corner.y() + int(bottom - top), corner.x():corner.x() + int(x1 - x0)]


def save_screenshot(image, name):
    """Write a QImage/QPixmap into :data:`SHOTS` atomically; returns the final path."""
    os.makedirs(SHOTS, exist_ok=True)
    path = os.path.abspath(os.path.join(SHOTS, name))
    tmp = path + ".part.png"
    assert image.save(tmp, "PNG")
    os.replace(tmp, path)
    return path
