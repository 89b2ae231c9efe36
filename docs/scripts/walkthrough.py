"""A first session in the real glue window, step by step, as a new user has it (issue #16).

Run from the repository root (needs Xvfb for the real window; about three minutes)::

    python docs/scripts/walkthrough.py [--out docs/_static] [--window 60832 60851.2]

It starts the local archive and an X server of its own (Xvfb, unless ``DISPLAY`` is set), opens
a ``GlueApplication`` with the plugins loaded as the ``glue`` command loads them, and drives it
through the menus a person uses, on Qt's X11 platform (not offscreen):

1. File ▸ Import data ▸ SPHEREx cutouts…: M101, 3 arcmin, a time window (274 cutouts by
   default), Search, Fetch;
2. the cutouts in the data collection (sorted by wavelength, short labels);
3. Plugins ▸ Compare SPHEREx cutouts across wavelengths;
4. a circle drawn on one panel (the same sky in every cutout);
5. right-click on the subset ▸ SPHEREx: live spectrum of this region;
6. Plugins ▸ Export SPHEREx cutouts as MEF… (the combined file written);
7. the session saved, then reopened by the real ``glue session.glu`` command in a new process.

After each step it writes a screenshot ``walkthrough_<n>_<step>.png`` (atomically) and prints
how long the step took until its result was on screen and the longest time the window's event
loop did not run meanwhile (``tests/qt_watchdog.py``). A blank screenshot fails loudly.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

M101 = "210.80227 54.34895"


def start_display():
    """An Xvfb of our own unless a display is given; returns the process (or None)."""
    if os.environ.get("DISPLAY"):
        os.environ["QT_QPA_PLATFORM"] = "xcb"
        return None
    if not shutil.which("Xvfb"):
        raise SystemExit("Xvfb is not installed (apt-get install xvfb): the walkthrough "
                         "drives the real window on an X server")
    for number in range(40, 60):
        if not os.path.exists(f"/tmp/.X{number}-lock"):
            break
    proc = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1600x1000x24", "-nolisten",
                             "tcp"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not os.path.exists(f"/tmp/.X11-unix/X{number}"):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("Xvfb did not start")
        time.sleep(0.05)
    os.environ["DISPLAY"] = f":{number}"
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    return proc


class Steps:
    """Runs each step under the event-loop watchdog, then screenshots the window."""

    def __init__(self, out):
        self.out = out
        self.rows = []
        self.shots = 0

    def run(self, name, trigger, ready, widget, timeout=300.0):
        from qt_watchdog import EventLoopWatchdog, run_until
        from qtpy import QtCore

        dog = EventLoopWatchdog()
        t0 = time.perf_counter()
        with dog:
            QtCore.QTimer.singleShot(0, trigger)
            try:
                run_until(ready, timeout)
            except TimeoutError:
                raise SystemExit(f"step '{name}' did not finish within {timeout:.0f} s") from None
            took = time.perf_counter() - t0
            run_until(lambda: time.perf_counter() - t0 > took + 0.3)  # the paint after it
        self.rows.append((name, took, dog.max_gap))
        print(f"{len(self.rows)}. {name:<28} {took:6.1f} s   longest freeze {dog.max_gap:5.2f} s",
              flush=True)
        self.shot(widget() if callable(widget) else widget, name)

    def shot(self, widget, name, image=None):
        import numpy as np
        from qt_support import qimage_array

        image = image if image is not None else widget.grab().toImage()
        if qimage_array(image).std() < 10:
            raise SystemExit(f"{name}: the screenshot is blank")
        self.shots += 1
        path = self.out / f"walkthrough_{self.shots}_{name.split()[0].lower()}.png"
        tmp = path.with_suffix(".part.png")
        if not image.save(str(tmp), "PNG"):
            raise SystemExit(f"could not write {tmp}")
        os.replace(tmp, path)
        print(f"   wrote {path} ({image.width()}x{image.height()}, "
              f"{int(np.asarray(qimage_array(image)).std())} std)", flush=True)


def walk(archive_url, window, out, workdir):
    from glue.main import load_plugins
    from glue_qt.app import GlueApplication
    from qt_support import menu_action
    from qtpy import QtCore, QtWidgets

    from glue_spherex.plugin import is_spherex_data
    from glue_spherex.qt import COMPARE_LABEL, EXPORT_LABEL, IMPORT_LABEL
    from glue_spherex.qt import compare as compare_module
    from glue_spherex.qt.spectrum_action import LABEL as SPECTRUM_LABEL

    QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    load_plugins()  # what the glue command does: our plugin through its entry point
    app = GlueApplication()
    app.resize(1500, 950)
    app.show()
    dc = app.data_collection
    steps = Steps(out)
    left = QtCore.Qt.LeftButton

    def click(button):
        from qtpy.QtTest import QTest
        QTest.mouseClick(button, left)

    # 1. import: search, then fetch
    menu_action(app._actions["data_importers"], IMPORT_LABEL).trigger()
    dialog = app._spherex_import_dialog
    dialog.target_edit.setText(M101)
    dialog.size_edit.setText("3")
    dialog.size_unit.setCurrentText("arcmin")
    dialog.time_box.setChecked(True)
    dialog.time_start.setValue(window[0])
    dialog.time_end.setValue(window[1])
    dialog.advanced_button.setChecked(True)
    dialog.archive_edit.setText(archive_url)
    dialog.advanced_button.setChecked(False)
    click(dialog.search_button)
    from qt_watchdog import run_until
    run_until(lambda: dialog.state != "searching", 120)
    if dialog.state != "previewed":
        raise SystemExit(f"search failed: {dialog.status_label.text()}")
    n = dialog.preview.total
    steps.run(f"Import {n} cutouts", lambda: click(dialog.fetch_button),
              lambda: dialog.state == "finished", dialog, timeout=900)
    print(f"   status: {dialog.status_label.text()}")
    dialog.close()
    cutouts = [d for d in dc if is_spherex_data(d)]
    steps.shot(app, "Loaded cutouts")

    # 3. compare grid
    def grid_ready():
        if compare_module.TAB_NAME not in app.tab_names:
            return False
        viewers = app.viewers[app.tab_names.index(compare_module.TAB_NAME)]
        return (len(viewers) == compare_module.DEFAULT_PANELS
                and not getattr(app, "_spherex_grid_pending", False))

    steps.run("Compare across wavelengths",
              menu_action(app._actions["plugins"], COMPARE_LABEL).trigger, grid_ready, app)

    # 4. a circle on the first panel
    from glue.core.roi import CircularROI
    panel = app.viewers[app.tab_names.index(compare_module.TAB_NAME)][0]
    ref = panel.state.reference_data
    cx, cy = (ref.shape[1] - 1) / 2, (ref.shape[0] - 1) / 2
    steps.run("Region on one panel", lambda: panel.apply_roi(CircularROI(cx, cy, 4.0)),
              lambda: len(dc.subset_groups) == 1, app)
    group = dc.subset_groups[0]

    # 5. live spectrum from the data collection's context menu
    tree = app._layer_widget.ui.layerTree
    tree.set_selected_layers([group])
    action = app._layer_widget._actions[SPECTRUM_LABEL]

    def spectrum_shown():
        from glue_spherex.plugin.live_spectrum import live_spectra
        live = live_spectra(dc).get(group)
        return live is not None and live.spectrum is not None

    steps.run("Live spectrum of the region", action.trigger, spectrum_shown, app)

    # 6. export to one multi-extension FITS
    export_path = Path(workdir) / "m101_combined.fits"
    menu_action(app._actions["plugins"], EXPORT_LABEL).trigger()
    export = app._spherex_export_dialog
    export.path_edit.setText(str(export_path))
    steps.run("Export as MEF", export.export, lambda: export.written is not None,
              lambda: export, timeout=600)
    print(f"   wrote {export_path.stat().st_size / 1e6:.0f} MB")
    export.close()

    # 7. save, then reopen with the glue command
    session = Path(workdir) / "m101.glu"
    t0 = time.perf_counter()
    app.save_session(str(session), include_data=True)
    print(f"   session saved in {time.perf_counter() - t0:.1f} s "
          f"({session.stat().st_size / 1e6:.0f} MB, {len(cutouts)} cutouts)")
    app.close()
    reopen(steps, session)
    return steps


def pump(seconds):
    """Let Qt process events for ``seconds``."""
    from qtpy import QtWidgets

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QtWidgets.QApplication.processEvents()
        time.sleep(0.02)


def reopen(steps, session):
    """`glue session.glu` in a new process on this display; screenshot of the whole screen
    once the restored window has drawn and stopped changing."""
    import numpy as np
    from qt_support import qimage_array
    from qtpy import QtGui

    glue = shutil.which("glue") or str(Path(sys.executable).parent / "glue")
    t0 = time.perf_counter()
    proc = subprocess.Popen([glue, str(session)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    screen = QtGui.QGuiApplication.primaryScreen()
    blank = qimage_array(screen.grabWindow(0).toImage()).std()
    last, stable_since, shown_at = None, None, None
    try:
        while time.perf_counter() - t0 < 180:
            pump(0.5)
            if proc.poll() is not None:
                raise SystemExit(f"glue exited ({proc.returncode}): {proc.stderr.read()[-2000:]}")
            image = screen.grabWindow(0).toImage()
            rgb = qimage_array(image)
            if rgb.std() <= blank + 5:
                continue
            shown_at = shown_at or time.perf_counter() - t0
            small = rgb[::8, ::8].astype(np.int16)
            if last is not None and np.abs(small - last).mean() < 0.5:
                stable_since = stable_since or time.perf_counter() - t0
                if time.perf_counter() - t0 - stable_since > 2.0:
                    break
            else:
                stable_since = None
            last = small
        took = stable_since if stable_since is not None else time.perf_counter() - t0
        steps.rows.append(("Reopen with glue session.glu", took, float("nan")))
        print(f"{len(steps.rows)}. {'Reopen with glue session.glu':<28} {took:6.1f} s   "
              f"(window first shown after {shown_at or float('nan'):.1f} s; drawn and still "
              f"after {took:.1f} s)", flush=True)
        steps.shot(None, "Reopen session", image=image)
    finally:
        proc.terminate()
        proc.wait(10)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "_static"),
                        help="where the screenshots go (default docs/_static)")
    parser.add_argument("--window", nargs=2, type=float, default=(60832.0, 60851.2),
                        metavar=("MJD0", "MJD1"), help="time window of the search "
                        "(default: 274 cutouts of M101)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    xvfb = start_display()
    from glue_spherex.local_archive import LocalArchive

    try:
        with LocalArchive() as archive, tempfile.TemporaryDirectory(prefix="walk-") as workdir:
            archive.wait_ready()
            steps = walk(archive.url, args.window, out, workdir)
    finally:
        if xvfb is not None:
            xvfb.terminate()
    print("\nstep                            on screen (s)  longest freeze (s)")
    for name, took, gap in steps.rows:
        print(f"{name:<32} {took:10.1f} {gap:14.2f}")


if __name__ == "__main__":
    main()
