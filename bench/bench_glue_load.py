"""Load, link and select hundreds of SPHEREx cutouts in a headless GlueApplication (issue #6).

For N = 100, 300 and 700 synthetic 0.1-degree cutouts of M101 (58x58 px, the local
archive's observation plan, frames repeated to reach 700), each in a fresh process:

1. ``load``   -- glue's ``load_data`` on a combined cutout file: ``read`` (glue's
   ``find_factory``: the plugin's identifier, which reads the file's headers with
   :mod:`glue_spherex.products.spectral_image`) + ``convert`` (the factory: SpectralImage -> Data);
2. ``add``    -- ``app.add_data(*datasets)`` (GlueApplication, autolinkers included);
3. ``link``   -- ``link_cutouts(data_collection)``;
4. ``subset`` -- one pixel-box subset drawn on the first cutout, masks computed on all N;

then saving the session (``GlueSerializer.dumps``, data included) and restoring it; then,
for responsiveness, the time Qt needs to process the pending events (the data collection
list), to open an image viewer on one cutout and to overlay a second cutout on it.
Prints seconds per stage, the total (stages 1-4), t(700)/t(100) and peak RSS.

Run: ``.venv/bin/python bench/bench_glue_load.py`` (a few minutes: generating the files
takes most of it).  ``--workdir DIR`` keeps the generated files for later runs;
``--glue-link-manager`` runs glue's own LinkManager instead of the plugin's (the figures
before the fix; give ``--sizes 100`` and a ``--timeout``, it is cubic).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

SIZES = (100, 300, 700)
CUTOUT_PX = 58  # 0.1 deg at 6.15"/px


def generate(workdir, sizes):
    """Combined files ``m101_<N>.fits`` of the first N M101 cutouts (frames repeated)."""
    from glue_spherex.local_archive.synthetic import (
        TARGETS,
        cutout_bytes,
        cutout_window,
        observation_plan,
    )
    from glue_spherex.products.combined import CombinedWriter

    paths = {n: os.path.join(workdir, f"m101_{n}.fits") for n in sizes}
    if all(os.path.exists(p) for p in paths.values()):
        return paths
    ra, dec = TARGETS["M101"]
    windows = []
    for spec in observation_plan():
        window = cutout_window(spec, ra, dec, CUTOUT_PX, CUTOUT_PX)
        if window is not None and tuple(window[2:]) == (CUTOUT_PX, CUTOUT_PX):
            windows.append((spec, window))
    print(f"M101 plan: {len(windows)} frames with a full {CUTOUT_PX}x{CUTOUT_PX} window; "
          f"repeating them to reach {max(sizes)} cutouts", flush=True)
    t0 = time.perf_counter()
    singles = []  # one file per distinct cutout, copied byte for byte into the combined files
    for k in range(min(len(windows), max(sizes))):
        spec, window = windows[k]
        single = os.path.join(workdir, f"cutout_{k:04d}.fits")
        with open(single, "wb") as f:
            f.write(cutout_bytes(spec, *window))
        singles.append(single)
    for n in sorted(sizes):
        planned = [{"cutout_index": i, "access_url": f"http://127.0.0.1/cutout/{i}"}
                   for i in range(1, n + 1)]
        with CombinedWriter(paths[n], planned, target=(ra, dec), size=0.1,
                            overwrite=True) as writer:
            for i in range(n):
                writer.add(i + 1, singles[i % len(singles)])
    for single in singles:
        os.unlink(single)
    print(f"generated {', '.join(f'{n}' for n in sorted(sizes))}-cutout files in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    return paths


def worker(path, n, glue_link_manager, core):
    """One measurement in this (fresh) process; prints one JSON line."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from glue.config import settings
    from glue.core import DataCollection
    from glue.core.data_factories import find_factory, load_data
    from glue.core.roi import RectangularROI
    from glue.core.subset import RoiSubsetState

    from glue_spherex import plugin
    from glue_spherex.plugin import link_cutouts, linkmanager, patches
    from glue_spherex.plugin.links import CutoutLink

    if core:
        plugin.setup()
    else:  # as the `glue` command does: every installed plugin, ours (Qt half too) included
        from glue.main import load_plugins

        load_plugins(require_qt_plugins=True)
        assert patches.is_applied("batched-tree")
    if glue_link_manager:
        patches.undo(names={"indexed-link-manager"})
    # no modal autolink dialog, and linking timed separately below
    settings.AUTOLINK["Astronomy WCS"] = "always_ignore"
    settings.AUTOLINK["SPHEREx sky"] = "always_ignore"
    if core:
        app, dc = None, DataCollection()
    else:
        from glue_qt.app import GlueApplication
        from glue_qt.utils import get_qapp

        get_qapp()
        app = GlueApplication()
        dc = app.data_collection
    out = {"n": n}

    def stage(name, fn):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        out[name] = time.perf_counter() - t0
        out[name + "_cpu"] = time.process_time() - c0
        return result

    # glue's load_data = find_factory (our identifier, which reads the file's headers with
    # the reader) + the factory (SpectralImage -> Data); timed apart to tell the two costs
    found = stage("read", lambda: find_factory(path))
    datasets = stage("convert", lambda: load_data(path, factory=found))
    out["load"] = out["read"] + out["convert"]
    out["load_cpu"] = out["read_cpu"] + out["convert_cpu"]
    assert len(datasets) == n
    stage("add", lambda: dc.extend(datasets) if core else app.add_data(*datasets))
    if glue_link_manager:  # the same links, without link_cutouts() switching managers
        def link():
            links = [CutoutLink(datasets[0], d) for d in datasets[1:]]
            dc.add_link(links)
            return links
    else:
        def link():
            return link_cutouts(dc)
    out["links"] = len(stage("link", link))
    assert isinstance(dc._link_manager, linkmanager.IndexedLinkManager) != glue_link_manager
    reference = datasets[0]

    def select():
        state = RoiSubsetState(reference.pixel_component_ids[1], reference.pixel_component_ids[0],
                               RectangularROI(15.5, 42.5, 15.5, 42.5))
        group = dc.new_subset_group("box", state)
        return sum(bool(s.to_mask().any()) for s in group.subsets)

    out["nonempty"] = stage("subset", select)
    out["total"] = sum(out[k] for k in ("load", "add", "link", "subset"))
    out["total_cpu"] = sum(out[k + "_cpu"] for k in ("load", "add", "link", "subset"))
    from glue.core.state import GlueSerializer, GlueUnSerializer

    text = stage("save", lambda: GlueSerializer(dc).dumps())  # a .glu session, data included
    restored = stage("restore", lambda: GlueUnSerializer.loads(text).object("__main__"))
    assert len(restored) == n
    text = restored = None  # free them before the GUI stages
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if core:
        print(json.dumps(out), flush=True)
        return
    from glue_qt.utils import process_events
    from glue_qt.viewers.image import ImageViewer

    stage("gui_events", lambda: process_events(0.1))  # data collection list, subsets

    def open_viewer():
        viewer = app.new_data_viewer(ImageViewer, data=reference)
        process_events(0.1)
        return viewer

    viewer = stage("viewer", open_viewer)

    def overlay():
        viewer.add_data(datasets[n // 2])
        viewer.axes.figure.canvas.draw()
        process_events(0.1)
        return all(layer.enabled for layer in viewer.layers)

    out["overlay_enabled"] = stage("overlay", overlay)
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out), flush=True)
    app.close()


def run(path, n, glue_link_manager, core, timeout):
    cmd = [sys.executable, __file__, "--worker", str(n), path]
    if glue_link_manager:
        cmd.append("--glue-link-manager")
    if core:
        cmd.append("--core")
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"n": n, "timeout": timeout}
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode or not lines:
        sys.stderr.write(done.stderr[-3000:])
        raise SystemExit(f"worker for N={n} failed (exit {done.returncode})")
    return json.loads(lines[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--workdir", help="keep the generated files here (default: temporary)")
    parser.add_argument("--glue-link-manager", action="store_true",
                        help="use glue's own LinkManager (figures before the fix)")
    parser.add_argument("--core", action="store_true",
                        help="a plain DataCollection instead of a GlueApplication (no Qt)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per N")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("path", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.path, args.worker, args.glue_link_manager, args.core)
        return

    with tempfile.TemporaryDirectory(prefix="bench-glue-") as tmp:
        workdir = args.workdir or tmp
        os.makedirs(workdir, exist_ok=True)
        paths = generate(workdir, args.sizes)
        which = "glue's LinkManager" if args.glue_link_manager else "IndexedLinkManager"
        where = "DataCollection, no Qt" if args.core else "headless GlueApplication"
        results = {}
        for n in args.sizes:
            results[n] = run(paths[n], n, args.glue_link_manager, args.core, args.timeout)
        stages = ("read", "convert", "add", "link", "subset", "total", "save", "restore",
                  "gui_events", "viewer", "overlay")
        names = ("read", "convert", "add", "link", "subset", "TOTAL", "save", "restore",
                 "events", "viewer", "overlay")
        for suffix, what in (("", "wall-clock seconds"), ("_cpu", "CPU seconds of the process")):
            print(f"\n{which}, {where}: {what} per stage (each N in a fresh process)")
            print(f"{'N':>5} " + " ".join(f"{name:>7}" for name in names)
                  + f" {'RSS MB':>7}  non-empty masks")
            for n, r in results.items():
                if "timeout" in r:
                    print(f"{n:>5} did not finish within {args.timeout:.0f} s")
                    continue
                cells = [f"{r[k + suffix]:7.2f}" if k + suffix in r else f"{'-':>7}"
                         for k in stages]
                print(f"{n:>5} " + " ".join(cells) + f" {r['rss_mb']:7.0f}  {r['nonempty']}/{n}"
                      + ("" if r.get("overlay_enabled", True) else "  (overlay disabled!)"))
        lo, hi = min(args.sizes), max(args.sizes)
        if lo != hi and "total" in results[lo] and "total" in results[hi]:
            wall = results[hi]["total"] / results[lo]["total"]
            cpu = results[hi]["total_cpu"] / results[lo]["total_cpu"]
            print(f"\nTOTAL t({hi})/t({lo}) = {wall:.2f} wall-clock, {cpu:.2f} CPU "
                  f"(N ratio {hi / lo:.1f})")


if __name__ == "__main__":
    main()
