"""File ▸ Import data ▸ SPHEREx cutouts…, driven headless against the local archive.

The big test walks the whole user path once (search, preview, fetch, links, a drawn
selection, the wavelength grid, screenshots); the others cover cancel, failures and errors.
"""

import numpy as np
import pytest
import qt_support
import requests
from qt_support import (
    TARGET,
    WINDOW,
    axes_region,
    fetch,
    fill,
    menu_action,
    open_import_dialog,
    qimage_array,
    save_screenshot,
    search,
)
from sesame_standin import sesame_standin

from glue_spherex.irsa.config import conf
from glue_spherex.irsa.core import SpherexClass
from glue_spherex.local_archive import FaultConfig
from glue_spherex.products.spectral_image import SpectralImage

pytestmark = pytest.mark.timeout(300)
glue_app = qt_support.glue_app
modal_watchdog = qt_support.modal_watchdog
window_size = qt_support.window_size


def _product_of(row):
    """The cutout of one query row, fetched and opened independently of glue."""
    response = requests.get(row["cutout_url"], timeout=60)
    response.raise_for_status()
    return SpectralImage.open(response.content)


@pytest.mark.slow
def test_import_link_select_compare_and_screenshots(glue_app, qtbot, archive, monkeypatch,
                                                    modal_watchdog, window_size):
    from glue.config import settings
    from glue.core.roi import CircularROI

    from glue_spherex.plugin import is_spherex_data
    from glue_spherex.qt import COMPARE_LABEL

    # A user's defaults: glue would ask about every link its autolinkers suggest, in a modal
    # dialog. Importing SPHEREx cutouts must not trigger one (the watchdog records any).
    for label in ("Astronomy WCS", "SPHEREx sky"):
        monkeypatch.setitem(settings.AUTOLINK, label, "always_show")
    app, dc = glue_app, glue_app.data_collection
    dialog = open_import_dialog(app)
    assert dialog.isVisible() and dialog.data_collection is dc
    fill(dialog, archive.url)
    search(qtbot, dialog)
    assert dialog.state == "previewed", dialog.status_label.text()

    # The count-first preview agrees with the archive's own answer, band by band.
    expected = SpherexClass(archive_url=archive.url).query_region(
        TARGET, size="3arcmin", time=WINDOW)
    n = window_size
    assert len(expected) == n and dialog.preview.total == n
    for band in dialog.preview.bands:
        assert band.count == int(np.sum(expected["bandpass"] == band.band))
    table_text = [dialog.preview_table.item(r, 2).text()
                  for r in range(dialog.preview_table.rowCount())]
    assert table_text[-1] == str(n)
    # The size estimate (PSF cube + 4 planes) is within 5 % of a real cutout's size.
    real_size = len(requests.get(expected[0]["cutout_url"], timeout=60).content)
    assert dialog.preview.nbytes / n == pytest.approx(real_size, rel=0.05)

    seen_sizes = []
    dc_sizes = lambda: seen_sizes.append(len(dc))  # noqa: E731
    dialog._batch_timer.timeout.connect(dc_sizes)
    # an IRSA-like round trip, so that the download outlasts a few 0.5 s batches
    monkeypatch.setattr(archive, "faults", FaultConfig(latency=0.4, routes="data"))
    fetch(qtbot, dialog)
    assert dialog.failures == []
    assert len(dc) == n and all(is_spherex_data(d) for d in dc)
    assert dialog.status_label.text().startswith(f"All {n} cutouts are in the session")
    # Cutouts were added while downloading, in batches, not all at the end.
    assert any(0 < size < n for size in seen_sizes)
    dialog.advanced_button.setChecked(False)  # as a user first sees it (no random port shown)
    qtbot.wait(50)
    save_screenshot(dialog.grab(), "import_dialog.png")

    # Each dataset holds the pixels and per-pixel wavelengths of its own cutout.
    by_key = {(d.meta["obs_id"], d.meta["detector"]): d for d in dc}
    for row in expected[::5]:
        product = _product_of(row)
        data = by_key[(row["obs_id"], int(row["detector"]))]
        np.testing.assert_array_equal(data["wavelength"], product.wavelength())
        np.testing.assert_array_equal(data["flux"], product.image)
        assert data.meta["bandpass"] == row["bandpass"]

    # Linked by sky position, without any link dialog -- also when glue runs its autolinkers
    # over the loaded cutouts (it does after every importer, e.g. opening the dialog again).
    assert len(dc.external_links) > 0
    second = open_import_dialog(app)
    qtbot.wait(300)
    assert modal_watchdog == []
    second.close()

    # Compare across wavelengths from the Plugins menu.
    tabs_before = app.tab_widget.count()
    menu_action(app._actions["plugins"], COMPARE_LABEL).trigger()
    qtbot.waitUntil(lambda: app.tab_widget.count() == tabs_before + 1)
    qtbot.waitUntil(lambda: not app._spherex_grid_pending, timeout=60_000)  # panel by panel
    viewers = [w.widget() for w in app.current_tab.subWindowList()]
    assert len(viewers) == 6
    shown = [next(la.layer for la in v.layers if la.visible) for v in viewers]
    lams = [d.meta["central_wavelength"] for d in shown]
    all_lams = sorted(d.meta["central_wavelength"] for d in dc)
    assert lams == sorted(lams) and len(set(map(id, shown))) == 6
    assert lams[0] == all_lams[0] and lams[-1] == all_lams[-1]
    assert len({d.meta["detector"] for d in shown}) >= 5  # spread over the bands
    for viewer, data in zip(viewers, shown):
        assert data.label in viewer.windowTitle() and "µm" in viewer.windowTitle()
        assert all(la.enabled for la in viewer.layers if la.visible)
        assert viewer.state.reference_data is viewers[0].state.reference_data

    # The panels share one sky view: zoom one, all follow.
    viewers[2].state.x_min, viewers[2].state.x_max = 4.0, 24.0
    for viewer in viewers:
        assert (viewer.state.x_min, viewer.state.x_max) == (4.0, 24.0)
    viewers[0].state.reset_limits()

    # A circle drawn on one panel selects the same piece of sky in every cutout.
    ref = viewers[0].state.reference_data
    cx, cy = (ref.shape[1] - 1) / 2, (ref.shape[0] - 1) / 2
    radius_px = 5.0
    viewers[0].apply_roi(CircularROI(cx, cy, radius_px))
    assert len(dc.subset_groups) == 1
    centre = ref.coords.pixel_to_world(cx, cy)
    for data in dc:
        mask = data.subsets[0].to_mask()
        assert mask.sum() > 0, data.label
        sky = data.coords.pixel_to_world(*np.nonzero(mask)[::-1])
        sep = sky.separation(centre).arcsec
        assert sep.max() < radius_px * 6.2 + 6.2, data.label  # inside the circle (+1 px)

    qtbot.wait(300)
    shot = app.grab()
    path = save_screenshot(shot, "glue_import_linked.png")
    image = shot.toImage()
    for viewer in viewers:
        region = axes_region(image, app, viewer)
        assert region.size > 100 * 100 * 3
        colours = np.unique(region.reshape(-1, 3), axis=0)
        assert len(colours) > 40, viewer.windowTitle()
        assert region.std() > 15, viewer.windowTitle()
        # the selection is overlaid in every panel: red-tinted pixels in a grey-scale image
        r, g, b = (region[..., i].astype(int) for i in range(3))
        red = (r - g > 25) & (r - b > 25)
        assert red.sum() > 20, viewer.windowTitle()
    assert qimage_array(image).std() > 20
    assert path.endswith("glue_import_linked.png")


@pytest.mark.slow
def test_cancel_keeps_what_arrived_and_can_resume(glue_app, qtbot, make_archive, tmp_path,
                                                  window_size):
    arch = make_archive(latency=0.4)
    dc = glue_app.data_collection
    dialog = open_import_dialog(glue_app)
    fill(dialog, arch.url, size="1", workers=2)
    cache = tmp_path / "cache"
    dialog.cache_edit.setText(str(cache))
    search(qtbot, dialog)
    assert dialog.preview.total == window_size
    qtbot.mouseClick(dialog.fetch_button, _left())
    qtbot.waitUntil(lambda: len(dc) >= 2, timeout=60_000)
    qtbot.mouseClick(dialog.cancel_button, _left())
    qtbot.waitUntil(lambda: dialog.state == "finished", timeout=60_000)

    kept = len(dc)
    assert 2 <= kept < window_size
    assert len(dialog.loaded) == kept and all(d in dc.data for d in dialog.loaded)
    assert dialog.failures == []  # cancelled cutouts are not failures
    assert dialog.status_label.text().startswith(f"Cancelled: {kept} of {window_size}")
    assert dialog.fetch_button.isEnabled()
    assert dialog.fetch_button.text() == f"Fetch {window_size - kept} remaining"
    assert len(list(cache.glob("*.fits"))) >= kept  # the Advanced cache field is used

    arch.faults = type(arch.faults)()  # fast again
    fetch(qtbot, dialog)
    assert len(dc) == window_size
    keys = {(d.meta["obs_id"], d.meta["detector"]) for d in dc}
    assert len(keys) == window_size  # the resumed run fetched only what was missing
    assert len(list(cache.glob("*.fits"))) == window_size


def test_cancel_against_a_fast_archive_adds_nothing_after_cancel(glue_app, qtbot, archive,
                                                                  window_size):
    """Results already queued to the GUI thread when Cancel is pressed are not added."""
    dc = glue_app.data_collection
    dialog = open_import_dialog(glue_app)
    fill(dialog, archive.url, size="1", workers=8)
    search(qtbot, dialog)
    n = dialog.preview.total
    assert n == window_size and n > 4
    sizes_at_cancel = []

    def cancel_after_a_few(value):
        if value >= 3 and not sizes_at_cancel:
            dialog.cancel()
            sizes_at_cancel.append(len(dc))

    dialog.progress.valueChanged.connect(cancel_after_a_few)
    fetch(qtbot, dialog)
    kept = len(dc)
    assert kept == sizes_at_cancel[0]  # nothing entered the session after Cancel
    assert kept < n
    assert dialog.status_label.text() == f"Cancelled: {kept} of {n} cutouts are in the session."
    assert len(dialog.loaded) == kept
    assert dialog.fetch_button.text() == f"Fetch {n - kept} remaining"


@pytest.mark.slow
def test_closing_mid_fetch_keeps_what_arrived(glue_app, qtbot, make_archive, window_size):
    arch = make_archive(latency=0.4)
    dc = glue_app.data_collection
    dialog = open_import_dialog(glue_app)
    fill(dialog, arch.url, size="1", workers=2)
    search(qtbot, dialog)
    qtbot.mouseClick(dialog.fetch_button, _left())
    qtbot.waitUntil(lambda: len(dc) >= 1, timeout=60_000)
    loaded = dialog.loaded  # the dialog deletes itself once its download has wound down
    with qtbot.waitSignal(dialog.destroyed, timeout=60_000):
        dialog.close()
    assert 1 <= len(dc) < window_size
    assert len(loaded) == len(dc)  # what arrived before the close was still added
    assert all(d in dc.data for d in loaded)


def test_failures_are_listed_and_retried(glue_app, qtbot, make_archive):
    arch = make_archive(p_500=0.5, seed=3)
    dc = glue_app.data_collection
    dialog = open_import_dialog(glue_app)
    fill(dialog, arch.url, size="1", bands=[1, 2])
    search(qtbot, dialog)
    total = dialog.preview.total
    with conf.set_temp("max_retries", 0):
        fetch(qtbot, dialog)
    failed = len(dialog.failures)
    assert 0 < failed < total
    assert len(dc) == total - failed
    table = dialog.failure_table
    assert table.isVisible() and table.rowCount() == failed
    for row in range(failed):
        reason = table.item(row, 2).text()
        assert reason and "\n" not in reason and "Traceback" not in reason
        assert "500" in reason
    assert dialog.fetch_button.text() == f"Retry {failed} failed"

    arch.faults = type(arch.faults)()
    fetch(qtbot, dialog)
    assert dialog.failures == [] and len(dc) == total
    assert not dialog.failure_table.isVisible()


@pytest.mark.parametrize("field, value, words", [
    ("target", "150 95", "Dec 95 is outside"),
    ("size", "-1", "size"),
    ("size", "2.5", "whole number of pixels"),
])
def test_bad_input_is_reported_before_any_request(glue_app, qtbot, archive, field, value,
                                                  words):
    dialog = open_import_dialog(glue_app)
    fill(dialog, archive.url)
    if field == "size" and value == "2.5":
        dialog.size_unit.setCurrentText("px")
    getattr(dialog, f"{field}_edit").setText(value)
    requests_before = len(archive.log)
    qtbot.mouseClick(dialog.search_button, _left())
    text = dialog.status_label.text()
    assert words in text and "\n" not in text
    assert dialog.state == "idle"
    assert len(archive.log) == requests_before  # nothing was sent


def test_unreachable_archive_is_one_line(glue_app, qtbot):
    dialog = open_import_dialog(glue_app)
    fill(dialog, "http://127.0.0.1:9")  # discard port: connection refused
    search(qtbot, dialog)
    text = dialog.status_label.text()
    assert dialog.state == "idle"
    assert text.startswith("Cannot reach the archive at 127.0.0.1:9:") and "try again" in text
    assert "\n" not in text and "Traceback" not in text
    assert len(glue_app.data_collection) == 0


def _left():
    from qtpy.QtCore import Qt

    return Qt.LeftButton



SESAME_M101 = """# M101	#Q1
#=S=Simbad (CDS, via client/server):    1
%I.0 M 101
%J 210.80227 +54.34895 = 14:03:12.54 +54:20:56.2

#====Done====
"""


@pytest.fixture
def sesame():
    """Sesame on 127.0.0.1 that knows M101 only."""
    with sesame_standin({"M101": SESAME_M101}):
        yield


def test_object_names_are_resolved_off_the_gui_thread(glue_app, qtbot, archive, sesame,
                                                      window_size):
    dialog = open_import_dialog(glue_app)
    fill(dialog, archive.url, target="M101", size="1")
    assert "Object name" in dialog.target_hint.text()
    search(qtbot, dialog)
    assert dialog.state == "previewed", dialog.status_label.text()
    assert dialog.preview.total == window_size
    assert "RA 210.80227°" in dialog.target_hint.text()

    dialog.target_edit.setText("NoSuchGalaxy")
    search(qtbot, dialog)
    text = dialog.status_label.text()
    assert dialog.state == "idle" and "\n" not in text
    assert text.startswith("unknown target 'NoSuchGalaxy'") and "RA Dec" in text


def test_unreachable_name_resolver_is_one_line(glue_app, qtbot, archive):
    from astropy.coordinates.name_resolve import sesame_url

    dialog = open_import_dialog(glue_app)
    fill(dialog, archive.url, target="M101")
    with sesame_url.set(["http://127.0.0.1:9/sesame/"]):
        search(qtbot, dialog)
    text = dialog.status_label.text()
    assert dialog.state == "idle" and "\n" not in text
    assert text.startswith("could not resolve 'M101'") and "RA Dec" in text


def test_a_search_that_would_fill_memory_warns_before_fetching(glue_app, qtbot, archive,
                                                               monkeypatch, tmp_path):
    from glue_spherex.plugin.import_request import cutout_bytes
    from glue_spherex.qt import import_dialog

    dialog = open_import_dialog(glue_app)
    fill(dialog, archive.url, size="1")
    dialog.cache_edit.setText("")
    size = 40 << 20  # a lower threshold stands in for a search of several GB
    monkeypatch.setattr(import_dialog, "MEMORY_WARNING_BYTES", size)
    search(qtbot, dialog)
    n = dialog.preview.total
    # every cutout is held as it arrives, PSF cube included: the download estimate
    assert dialog.memory_estimate() == dialog.preview.nbytes > size
    text = dialog.status_label.text()
    assert text.startswith("Warning: these cutouts will hold about") and "PSF" in text
    assert dialog.fetch_button.isEnabled()  # a warning, not a refusal
    # without their PSF they hold a few percent of it: no warning
    dialog.psf_combo.setCurrentIndex(dialog.psf_combo.findData("none"))
    search(qtbot, dialog)
    assert dialog.memory_estimate() < 0.1 * dialog.preview.nbytes
    assert not dialog.status_label.text().startswith("Warning")

    # A cache folder keeps nothing out of memory on the first fetch (a download is held as
    # it arrived); cutouts already in it are memory-mapped from their files.
    dialog.psf_combo.setCurrentIndex(dialog.psf_combo.findData("full"))
    dialog.cache_edit.setText(str(tmp_path / "cache"))
    search(qtbot, dialog)
    assert dialog.memory_estimate() == dialog.preview.nbytes
    assert dialog.status_label.text().startswith("Warning")
    fetch(qtbot, dialog)
    assert dialog.failures == [] and len(glue_app.data_collection) == n
    assert dialog.memory_estimate() == 0
    dialog.psf_combo.setCurrentIndex(dialog.psf_combo.findData("none"))
    assert dialog.memory_estimate() == n * (cutout_bytes(dialog.request.size_px)
                                            - 121 * 101 * 101 * 4)
    dialog.psf_combo.setCurrentIndex(dialog.psf_combo.findData("full"))


def _answer_question(qtbot, button, asked, tries=250):
    """Answer the next modal QMessageBox with ``button`` (polling every 20 ms, as a person
    who reads it first) and record what it said in ``asked``."""
    from qtpy import QtCore, QtWidgets

    box = QtWidgets.QApplication.activeModalWidget()
    if not isinstance(box, QtWidgets.QMessageBox):
        if tries:
            QtCore.QTimer.singleShot(20, lambda: _answer_question(qtbot, button, asked,
                                                                  tries - 1))
        return
    asked.append({"text": box.text(), "more": box.informativeText(),
                  "default": box.defaultButton() is box.button(QtWidgets.QMessageBox.No),
                  "buttons": box.standardButtons()})
    box.button(button).click()


@pytest.mark.parametrize("answer", ["No", "Yes"])
def test_fetch_asks_first_when_the_cutouts_would_hold_gigabytes(glue_app, qtbot, archive,
                                                                 monkeypatch, answer):
    from qtpy import QtCore, QtWidgets

    from glue_spherex.qt import import_dialog

    assert import_dialog.CONFIRM_MEMORY_BYTES == 3 * 10**9
    dc = glue_app.data_collection
    dialog = open_import_dialog(glue_app)
    fill(dialog, archive.url, size="1", bands=[1, 2])
    dialog.cache_edit.setText("")
    search(qtbot, dialog)
    assert dialog.state == "previewed", dialog.status_label.text()
    n, estimate = dialog.preview.total, dialog.memory_estimate()
    assert n > 0 and estimate == dialog.preview.nbytes
    # a lower threshold stands in for a search of more than 3 GB
    monkeypatch.setattr(import_dialog, "CONFIRM_MEMORY_BYTES", estimate - 1)

    asked = []
    button = getattr(QtWidgets.QMessageBox, answer)
    QtCore.QTimer.singleShot(0, lambda: _answer_question(qtbot, button, asked))
    requests_before = len(archive.log)
    qtbot.mouseClick(dialog.fetch_button, _left())  # returns once the question is answered
    assert len(asked) == 1
    question = asked[0]
    assert question["text"] == (f"These {n} cutouts will hold about "
                                f"{import_dialog.format_bytes(estimate)} of memory in this "
                                "glue session. Fetch them anyway?")
    assert "PSF 'none'" in question["more"] and "\n" not in question["more"]
    assert question["default"]  # Enter means No
    assert question["buttons"] == QtWidgets.QMessageBox.Yes | QtWidgets.QMessageBox.No
    if answer == "No":
        assert dialog.state == "previewed" and dialog.fetch_button.isEnabled()
        qtbot.wait(300)
        assert len(dc) == 0 and len(archive.log) == requests_before  # nothing was fetched
        assert dialog.status_label.text().startswith("Nothing was fetched:")
        assert not dialog.progress.isVisible()
    else:
        qtbot.waitUntil(lambda: dialog.state == "finished", timeout=120_000)
        assert dialog.failures == [] and len(dc) == n
        assert len(archive.log) >= requests_before + n


def test_release_combo_chooses_what_is_searched(glue_app, qtbot, archive):
    dialog = open_import_dialog(glue_app)
    combo = dialog.release_combo
    assert [combo.itemData(i) for i in range(combo.count())] == ["qr2", "qr3", "all"]
    assert combo.currentData() == "qr2"                       # the default, as in the CLI
    assert combo.isEnabled() and combo.isVisible()
    versions = {}
    for release in ("qr2", "qr3"):
        fill(dialog, archive.url, size="1", window=None, bands=[2])
        combo.setCurrentIndex(combo.findData(release))
        search(qtbot, dialog)
        assert dialog.state == "previewed", dialog.status_label.text()
        versions[release] = set(dialog.table["version"].tolist())
    assert all(v.startswith("l2b-v21-") for v in versions["qr2"])
    assert versions["qr3"] and not any(v.startswith("l2b-v21-") for v in versions["qr3"])
    combo.setCurrentIndex(combo.findData("qr2"))


@pytest.mark.slow
def test_importer_fetches_pipeline7_cutouts_into_the_session(glue_app, qtbot, archive):
    """QR3 chosen in the dialog: R7 cutouts arrive as datasets with wavelengths and flags."""
    import numpy as np

    dc = glue_app.data_collection
    dialog = open_import_dialog(glue_app)
    fill(dialog, archive.url, size="1", window=None, bands=[5])
    dialog.release_combo.setCurrentIndex(dialog.release_combo.findData("qr3"))
    search(qtbot, dialog)
    assert dialog.state == "previewed", dialog.status_label.text()
    n = len(dialog.table)
    assert n >= 2
    fetch(qtbot, dialog)
    assert dialog.failures == [], [f.reason for f in dialog.failures]
    cutouts = list(dialog.loaded)
    assert len(cutouts) == n and all(d in dc for d in cutouts)
    # 'qr3' means the pipeline-7 products: QR3, and the QR2 exposures reprocessed with it
    assert {d.meta["release"] for d in cutouts} == {"qr3", "qr2"}
    for d in cutouts:
        assert d.meta["pipeline"] == 7 and d.meta["detector"] == 5
        assert d.meta["processing"].startswith(("l2b-v27-", "l2b-v26-", "l2b_retry-v2"))
        wave = np.asarray(d["wavelength"], float)
        assert np.all((wave > 3.8) & (wave < 4.45))  # D5
        assert d["flags"].dtype.kind == "i"


def test_psf_none_leaves_the_psf_out_of_the_session(glue_app, qtbot, archive):
    """The PSF combo: 'full' by default; 'none' loads cutouts without their PSF (the same
    pixels), and the closing message says how much was downloaded and left out."""
    from glue_spherex.plugin.datasets import source_product

    dc = glue_app.data_collection
    dialog = open_import_dialog(glue_app)
    combo = dialog.psf_combo
    assert [combo.itemData(i) for i in range(combo.count())] == ["full", "none"]
    assert combo.currentData() == "full"
    fill(dialog, archive.url, size="1", window=None, bands=[2])
    assert combo.isVisible() and combo.isEnabled()  # under the advanced settings
    search(qtbot, dialog)
    assert dialog.state == "previewed", dialog.status_label.text()
    combo.setCurrentIndex(combo.findData("none"))
    assert dialog.state == "previewed"  # a download setting: the preview stands
    n0 = len(dc)
    fetch(qtbot, dialog)
    assert dialog.failures == [], [f.reason for f in dialog.failures]
    cutouts = list(dialog.loaded)
    assert len(cutouts) == len(dialog.table) and len(dc) == n0 + len(cutouts)
    rows = {str(r["cutout_url"]): r for r in dialog.table}
    for d in cutouts[:3]:
        product = source_product(d)
        assert product is not None and not product.has_psf and product.psf_fwhm > 0
        reference = _product_of(rows[d.meta["access_url"]])
        assert reference.has_psf
        assert np.array_equal(np.asarray(d["flux"]), reference.image, equal_nan=True)
        reference.close()
    text = dialog.status_label.text()
    assert "Downloaded" in text and "of PSF left out" in text, text
    combo.setCurrentIndex(combo.findData("full"))


def test_buttons_stay_put_when_the_progress_bar_and_status_appear(glue_app, qtbot, archive,
                                                                  monkeypatch):
    """The Cancel button does not move under the pointer when Fetch shows the progress bar
    and the status line, also when the dialog is at its smallest height (after Advanced is
    closed it shrinks to fit)."""
    from qtpy.QtCore import QPoint

    dialog = open_import_dialog(glue_app)
    fill(dialog, archive.url, size="1", workers=2)
    dialog.advanced_button.setChecked(False)
    qtbot.waitUntil(lambda: dialog.height() == dialog.minimumSizeHint().height())
    search(qtbot, dialog)
    assert dialog.state == "previewed", dialog.status_label.text()
    qtbot.wait(50)

    def place(button):
        return button.mapTo(dialog, QPoint(0, 0)), button.size()

    before = {b.text(): place(b) for b in (dialog.cancel_button, dialog.close_button)}
    assert not dialog.progress.isVisible()
    monkeypatch.setattr(archive, "faults", FaultConfig(latency=0.4, routes="data"))
    qtbot.mouseClick(dialog.fetch_button, _left())
    qtbot.waitUntil(lambda: dialog.progress.isVisible())
    qtbot.wait(100)  # the layout has caught up
    assert dialog.state == "fetching"
    assert dialog.cancel_button.isEnabled()
    assert {b.text(): place(b) for b in (dialog.cancel_button, dialog.close_button)} == before
    # a status of two lines (the longest the dialog shows) does not move them either
    dialog.show_error("The archive answered with an error for one of the cutouts; press Retry "
                      "to try them again, or narrow the search to fewer bands or a shorter "
                      "time range.")
    qtbot.wait(50)
    label, line = dialog.status_label, dialog.status_label.fontMetrics().lineSpacing()
    assert 1.5 * line < label.heightForWidth(label.width()) <= label.height() < 3 * line
    assert {b.text(): place(b) for b in (dialog.cancel_button, dialog.close_button)} == before
    qtbot.mouseClick(dialog.cancel_button, _left())
    qtbot.waitUntil(lambda: dialog.state == "finished", timeout=60_000)
