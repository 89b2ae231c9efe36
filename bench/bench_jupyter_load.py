"""Load, show and select hundreds of SPHEREx cutouts in a headless glue-jupyter session.

For each N (default 100 and 300; synthetic M101 cutouts, the files of
``bench_glue_load.py``), in a fresh process: ``app = jglue()``, then

1. ``load``   -- ``app.load_data(file)`` (read, convert, add, link: glue-jupyter runs no
   autolinker, the plugin links the cutouts as they are added);
2. ``viewer`` -- ``app.imshow`` of one cutout plus a second cutout overlaid, and the
   composite image of both computed once (what the bqplot image mark shows);
3. ``subset`` -- a sky-circle subset group, masks computed on all N.

Prints seconds per stage, the link manager the collection ended with, and t(N)/t(first N)
for the load and the total. ``--indexed-first`` gives the collection the plugin's indexed link
manager before loading (what glue-patches' change does for every collection): the
difference to the default run shows what glue's own LinkManager would cost while the cutouts are
being added, before the plugin upgrades it.

Run: ``.venv/bin/python bench/bench_jupyter_load.py [--sizes 100 300] [--indexed-first]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_glue_load import generate  # noqa: E402

SIZES = (100, 300)


def worker(path, indexed_first):
    import IPython.display

    IPython.display.display = lambda *a, **k: None  # no browser: widgets are not rendered
    from glue_jupyter import jglue

    from glue_spherex.local_archive.synthetic import TARGETS
    from glue_spherex.plugin import sky_subset
    from glue_spherex.plugin.linkmanager import use_indexed_link_manager

    app = jglue()
    if indexed_first:
        use_indexed_link_manager(app.data_collection)
    out = {}
    t0 = time.perf_counter()
    datasets = app.load_data(path)
    t1 = time.perf_counter()
    viewer = app.imshow(data=datasets[0])
    viewer.add_data(datasets[1])
    ny, nx = datasets[0].shape
    viewer._composite(bounds=[(-0.5, ny - 0.5, ny), (-0.5, nx - 0.5, nx)])
    t2 = time.perf_counter()
    ra, dec = TARGETS["M101"]
    group = sky_subset(app.data_collection, ra, dec, 30 / 3600)
    nonempty = sum(bool(s.to_mask().any()) for s in group.subsets)
    t3 = time.perf_counter()
    out.update(n=len(datasets), load=t1 - t0, viewer=t2 - t1, subset=t3 - t2, total=t3 - t0,
               nonempty=nonempty,
               link_manager=type(app.data_collection._link_manager).__name__)
    print(json.dumps(out), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--workdir", help="keep the generated files here (default: temporary)")
    parser.add_argument("--indexed-first", action="store_true",
                        help="indexed link manager before loading (see the docstring)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.indexed_first)
        return
    with tempfile.TemporaryDirectory(prefix="bench-jupyter-") as tmp:
        workdir = args.workdir or tmp
        os.makedirs(workdir, exist_ok=True)
        paths = generate(workdir, args.sizes)
        rows = []
        for n in args.sizes:
            cmd = [sys.executable, __file__, "--worker", paths[n]]
            if args.indexed_first:
                cmd.append("--indexed-first")
            done = subprocess.run(cmd, capture_output=True, text=True)
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
            if done.returncode or not lines:
                sys.stderr.write(done.stderr[-3000:])
                raise SystemExit(f"worker for N={n} failed (exit {done.returncode})")
            rows.append(json.loads(lines[-1]))
    first = rows[0]
    print(f"\nglue-jupyter (jglue, headless){', indexed link manager first' if args.indexed_first else ''}: "
          "wall-clock seconds per stage, each N in a fresh process")
    print(f"{'N':>5} {'load':>7} {'viewer':>7} {'subset':>7} {'TOTAL':>7}  "
          f"{'load/first':>10} {'total/first':>11}  non-empty  link manager")
    for r in rows:
        print(f"{r['n']:>5} {r['load']:7.2f} {r['viewer']:7.2f} {r['subset']:7.2f} "
              f"{r['total']:7.2f}  {r['load'] / first['load']:10.2f} "
              f"{r['total'] / first['total']:11.2f}  {r['nonempty']:>9}  {r['link_manager']}")


if __name__ == "__main__":
    main()
