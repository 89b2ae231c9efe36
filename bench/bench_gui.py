"""How responsive the glue window stays with hundreds of SPHEREx cutouts (issue #16).

Fetches N cutouts of M101 (3 arcmin) from the local archive once (``--workdir`` keeps them),
loads them into a real ``GlueApplication`` (headless, offscreen) as the import dialog does,
then drives each action through the window's own event loop -- the menu action is
triggered from a zero-delay timer, as a click would -- and prints for each:

* ``ready``   seconds from the trigger until the result is on screen (all panels drawn, the
  spectrum plotted, the file written, the restored window drawn);
* ``max gap`` the longest time the event loop did not run meanwhile (a 20 ms Qt timer's
  largest gap): what a person feels as a frozen window.

Actions: the compare grid (Plugins menu), the first live spectrum of a sky circle and one
update after moving it, the export of every cutout to one MEF, saving the session and
restoring it in a fresh process (zoom, viewer titles and active subset checked).

    python bench/bench_gui.py [--n 274] [--workdir DIR] [--only spectrum,restore]
                              [--keep-session PATH]

``glue-spherex spectrum`` on 546 cutouts is timed by ``bench/bench_spectrum_cli.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

TARGET = (210.80227, 54.34895)  # M101
SIZE = "3arcmin"
TARGETS = {"compare": 2.0, "spectrum_first": 1.0, "spectrum_update": 0.3, "export": 5.0,
           "restore": 5.0}
ACTIONS = ("compare", "spectrum", "export", "restore")


def cutout_files(workdir, n):
    """Paths of ``n`` cached cutouts of M101 (fetched from a local archive the first time),
    in the order of the query table."""
    from glue_spherex.download.fetcher import fetch_cutouts
    from glue_spherex.irsa.core import SpherexClass
    from glue_spherex.local_archive import LocalArchive

    listing = os.path.join(workdir, f"cutouts_{n}.json")
    if os.path.exists(listing):
        with open(listing) as f:
            paths = json.load(f)
        if all(os.path.exists(p) for p in paths):
            return paths
    cache = os.path.join(workdir, "cache")
    t0 = time.perf_counter()
    with LocalArchive() as archive:
        archive.wait_ready()
        table = SpherexClass(archive_url=archive.url).query_region(
            f"{TARGET[0]} {TARGET[1]}", size=SIZE)[:n]
        paths = {}
        for result in fetch_cutouts(table, workers=4, cache_dir=cache):
            assert result.status == "ok", result.reason
            paths[int(result.cutout_index)] = result.path
    ordered = [str(paths[int(i)]) for i in table["cutout_index"]]
    with open(listing, "w") as f:
        json.dump(ordered, f)
    print(f"fetched {len(ordered)} cutouts in {time.perf_counter() - t0:.1f} s", flush=True)
    return ordered


def measure(trigger, ready, timeout=120.0):
    """(seconds until ``ready()``, longest event-loop gap) for ``trigger`` run from a timer."""
    from qt_watchdog import EventLoopWatchdog, run_until
    from qtpy import QtCore

    dog = EventLoopWatchdog()
    t0 = time.perf_counter()
    with dog:
        QtCore.QTimer.singleShot(0, trigger)
        run_until(ready, timeout)
        took = time.perf_counter() - t0
        run_until(lambda: time.perf_counter() - t0 > took + 0.1)  # the paint after it
    return took, dog.max_gap


def canvas_drawn(viewer):
    """A counter of the matplotlib draws of ``viewer``'s canvas."""
    count = [0]
    viewer.axes.figure.canvas.mpl_connect("draw_event", lambda event: count.__setitem__(
        0, count[0] + 1))
    return count


def make_app(paths):
    from glue.config import settings
    from glue_qt.app import GlueApplication

    import glue_spherex.plugin
    import glue_spherex.qt
    from glue_spherex.plugin import link_cutouts, product_to_data
    from glue_spherex.products.spectral_image import SpectralImage

    glue_spherex.plugin.setup()
    glue_spherex.qt.setup()
    for label in ("Astronomy WCS", "SPHEREx sky"):
        settings.AUTOLINK[label] = "always_ignore"
    app = GlueApplication()
    app.resize(1400, 900)
    app.show()
    t0 = time.perf_counter()
    datasets = [product_to_data(SpectralImage.open(p)) for p in paths]
    dc = app.data_collection
    with dc.delay_link_manager_update():  # as the import dialog adds a batch
        dc.extend(datasets)
        link_cutouts(dc, datasets)
    return app, datasets, time.perf_counter() - t0


def bench_window(paths, workdir, only=ACTIONS):
    from glue_qt.viewers.scatter import ScatterViewer

    from glue_spherex.plugin import SkyCircleSubsetState, sky_subset
    from glue_spherex.qt import COMPARE_LABEL, spectrum_action
    from glue_spherex.qt import compare as compare_module

    app, datasets, load = make_app(paths)
    out = {"n": len(datasets), "load": load}
    from qt_watchdog import run_until

    run_until(lambda: True)  # one turn of the event loop: the window is drawn

    # -- compare grid -----------------------------------------------------------------
    action = next(a for a in app._actions["plugins"] if a.text() == COMPARE_LABEL)

    def grid_ready():
        if compare_module.TAB_NAME not in app.tab_names:
            return False
        tab = app.tab_names.index(compare_module.TAB_NAME)
        viewers = app.viewers[tab]
        return (len(viewers) == compare_module.DEFAULT_PANELS
                and all(getattr(v, "_spherex_drawn", False) for v in viewers)
                and not getattr(app, "_spherex_grid_pending", False))

    _watch_draws(app)
    if {"compare", "restore"} & set(only):  # the restored session has the grid
        out["compare"] = measure(action.trigger, grid_ready)
    if not {"spectrum", "export", "restore"} & set(only):
        app.close()
        return out, None, None

    # -- live spectrum ------------------------------------------------------------------
    ra, dec = TARGET
    group = sky_subset(app.data_collection, ra, dec, 6 / 3600, label="M101")
    run_until(lambda: True)

    def spectrum_viewer():
        for tab in app.viewers:
            for viewer in tab:
                if isinstance(viewer, ScatterViewer):
                    return viewer
        return None

    def spectrum_ready(n_computations):
        def ready():
            viewer = spectrum_viewer()
            from glue_spherex.plugin.live_spectrum import live_spectra
            live = live_spectra(app.data_collection).get(group)
            return (viewer is not None and live is not None and live.spectrum is not None
                    and live.n_computations >= n_computations
                    and getattr(viewer, "_spherex_drawn", False))
        return ready

    if not {"spectrum", "restore"} & set(only):
        viewer = None
    else:
        out["spectrum_first"] = measure(
            lambda: spectrum_action._action(group, app.data_collection), spectrum_ready(1))
        viewer = spectrum_viewer()
        viewer._spherex_drawn = False
        out["spectrum_update"] = measure(
            lambda: setattr(group, "subset_state", SkyCircleSubsetState(ra + 20 / 3600, dec,
                                                                        6 / 3600)),
            spectrum_ready(2))

    # -- export -------------------------------------------------------------------------
    if "export" in only:
        out["export"], out["export_mb"] = bench_export(app, workdir)
    if "restore" not in only:
        app.close()
        return out, None, None

    # -- save the session, with a zoom, a title and an active subset to come back --------
    session_path = os.path.join(workdir, "session.glu")
    tab = app.tab_names.index(compare_module.TAB_NAME)
    panel = app.viewers[tab][0]
    panel.state.x_min, panel.state.x_max = panel.state.x_min + 3, panel.state.x_max - 3
    viewer.state.title = "M101 spectrum"
    app.session.edit_subset_mode.edit_subset = [group]
    t0 = time.perf_counter()
    app.save_session(session_path, include_data=True)
    out["save"] = time.perf_counter() - t0
    out["session_mb"] = os.path.getsize(session_path) / 1e6
    expect = {"x_min": panel.state.x_min, "x_max": panel.state.x_max,
              "title": viewer.state.title, "subset": group.label}
    app.close()
    return out, session_path, expect


def bench_export(app, workdir):
    """(ready, gap) of exporting every cutout to one MEF, and its size in MB."""
    from glue_spherex.qt import EXPORT_LABEL

    export_path = os.path.join(workdir, "export.fits")
    if os.path.exists(export_path):
        os.unlink(export_path)
    action = next(a for a in app._actions["plugins"] if a.text() == EXPORT_LABEL)
    action.trigger()
    dialog = app._spherex_export_dialog
    dialog.path_edit.setText(export_path)
    took = measure(dialog.export, lambda: dialog.written is not None, timeout=300)
    size = os.path.getsize(export_path) / 1e6
    dialog.close()
    os.unlink(export_path)
    return took, size


def _watch_draws(app):
    """Mark every viewer of ``app`` as ``_spherex_drawn`` once its canvas has drawn (new
    viewers included)."""
    from glue_qt.viewers.matplotlib.data_viewer import MatplotlibDataViewer as DataViewer

    original = DataViewer.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self._spherex_drawn = False
        figure = getattr(getattr(self, "axes", None), "figure", None)
        if figure is not None:
            figure.canvas.mpl_connect("draw_event",
                                      lambda event: setattr(self, "_spherex_drawn", True))

    DataViewer.__init__ = init


def bench_restore(session_path, expect):
    """In this fresh process: restore the session; seconds until every viewer is drawn."""
    from glue.config import settings
    from glue_qt.app import GlueApplication
    from qt_watchdog import EventLoopWatchdog, run_until
    from qtpy import QtWidgets

    import glue_spherex.plugin
    import glue_spherex.qt
    from glue_spherex.qt import compare as compare_module

    QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    glue_spherex.plugin.setup()
    glue_spherex.qt.setup()
    for label in ("Astronomy WCS", "SPHEREx sky"):
        settings.AUTOLINK[label] = "always_ignore"
    _watch_draws(None)
    t0 = time.perf_counter()
    dog = EventLoopWatchdog().start()
    app = GlueApplication.restore_session(session_path, show=False)
    app.resize(1400, 900)
    app.show()

    def drawn():
        viewers = [v for tab in app.viewers for v in tab]
        return viewers and all(getattr(v, "_spherex_drawn", False) for v in viewers) and not \
            getattr(app, "_spherex_restore_pending", False)

    run_until(drawn, 120)
    took = time.perf_counter() - t0
    dog.stop()
    tab = app.tab_names.index(compare_module.TAB_NAME)
    panel = app.viewers[tab][0]
    scatter = [v for t in app.viewers for v in t if type(v).__name__ == "ScatterViewer"]
    subset_mode = app.session.edit_subset_mode.edit_subset
    checks = {
        "zoom": bool(abs(panel.state.x_min + panel.state.x_max - expect["x_min"]
                         - expect["x_max"]) < 1.0),  # same centre (the aspect may widen it)
        "title": bool(scatter) and scatter[0].state.title == expect["title"],
        "subset": [g.label for g in subset_mode] == [expect["subset"]],
    }
    print(json.dumps({"restore": [took, dog.max_gap], "checks": checks}), flush=True)
    app.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=274)
    parser.add_argument("--workdir", help="keep the fetched cutouts here (default: temporary)")
    parser.add_argument("--restore", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--only", default=",".join(ACTIONS),
                        help="comma-separated actions to run, of " + ", ".join(ACTIONS)
                        + " (default: all; 'restore' saves a session first)")
    parser.add_argument("--keep-session", metavar="PATH",
                        help="keep the saved session at PATH (e.g. to profile its restore)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    if not only <= set(ACTIONS):
        parser.error(f"--only: unknown action(s) {', '.join(sorted(only - set(ACTIONS)))}")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if args.restore:
        bench_restore(args.restore[0], json.loads(args.restore[1]))
        return
    with tempfile.TemporaryDirectory(prefix="bench-gui-") as tmp:
        workdir = args.workdir or tmp
        os.makedirs(workdir, exist_ok=True)
        paths = cutout_files(workdir, args.n)
        from qtpy import QtWidgets
        QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
        out, session_path, expect = bench_window(paths, workdir, only)
        restored = None
        if session_path is not None:
            done = subprocess.run([sys.executable, __file__, "--restore", session_path,
                                   json.dumps(expect)], capture_output=True, text=True)
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
            if done.returncode or not lines:
                sys.stderr.write(done.stderr[-3000:])
                raise SystemExit("restoring the session failed")
            restored = json.loads(lines[-1])
            out["restore"] = restored["restore"]
            if args.keep_session:
                os.replace(session_path, args.keep_session)
            else:
                os.unlink(session_path)
    print(f"\n{out['n']} cutouts ({out['load']:.1f} s to load and link)"
          + (f"; session {out['session_mb']:.0f} MB saved in {out['save']:.1f} s"
             if "save" in out else "")
          + (f"; export {out['export_mb']:.0f} MB" if "export_mb" in out else ""))
    print(f"{'action':<18} {'ready (s)':>10} {'max gap (s)':>12} {'target (s)':>11}")
    for name, target in TARGETS.items():
        if name not in out:
            continue
        ready, gap = out[name]
        flag = "" if ready <= target and gap <= 0.25 else "  <-- over"
        print(f"{name:<18} {ready:>10.2f} {gap:>12.2f} {target:>11.1f}{flag}")
    if restored is not None:
        print("restored: " + ", ".join(f"{k} {'ok' if v else 'LOST'}"
                                       for k, v in restored["checks"].items()))
    print(f"load average: {os.getloadavg()[0]:.2f}")

if __name__ == "__main__":
    main()
