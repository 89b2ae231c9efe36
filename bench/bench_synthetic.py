"""How much CPU does the synthetic universe cost the local archive per request?

Measured in one run (CPU time of this process, median over the requests):

* cutout, new frame:    ``cutout_bytes`` of a 0.1 deg (59x59) cutout around M101 on frames
                        never touched before (frame state, headers, render, serialisation);
* cutout, known frame:  the same windows again (headers and flags cached);
* cutout 0.2 deg:       117x117 cutouts on known frames;
* render only:          ``render_window`` of the 59x59 window (no headers, no bytes);
* full frame:           ``frame_bytes`` of one 2040x2040 frame (71.6 MB);
* plan:                 building the observation plan from scratch;

and prints the ratios new/known and full-frame/cutout. Run:

    .venv/bin/python bench/bench_synthetic.py [--n 200]
"""

import argparse
import statistics
import time

from glue_spherex.local_archive.synthetic import (
    TARGETS,
    cutout_bytes,
    cutout_window,
    frame_bytes,
    observation_plan,
    render_window,
)
from glue_spherex.local_archive.synthetic import plan as plan_module
from glue_spherex.local_archive.synthetic.geometry import frame_geometry


def cpu_ms(fn, *args):
    t0 = time.process_time()
    out = fn(*args)
    return (time.process_time() - t0) * 1e3, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="cutout requests per measurement")
    n = parser.parse_args().n

    ms, _ = cpu_ms(plan_module._build.__wrapped__)
    print(f"plan: {ms:.0f} ms CPU to build {len(observation_plan())} frames")

    ra, dec = TARGETS["M101"]
    jobs = []
    for s in observation_plan():
        x, y = frame_geometry(s).world2pix(ra, dec)
        if 0 <= x < 2040 and 0 <= y < 2040:
            jobs.append((s, cutout_window(s, ra, dec, 59, 59), cutout_window(s, ra, dec, 117, 117)))
    jobs = jobs[:n]
    cutout_bytes(jobs[0][0], *jobs[0][1])  # import-time caches (sky, PSF cubes, tables)

    new = [cpu_ms(cutout_bytes, s, *w)[0] for s, w, _ in jobs[1:]]
    known = [cpu_ms(cutout_bytes, s, *w)[0] for s, w, _ in jobs[1:]]
    big = [cpu_ms(cutout_bytes, s, *w)[0] for s, _, w in jobs[1:]]
    render = [cpu_ms(render_window, s, *w)[0] for s, w, _ in jobs[1:]]
    size = len(cutout_bytes(*jobs[1][:1], *jobs[1][1]))
    full, body = cpu_ms(frame_bytes, jobs[1][0])

    med = statistics.median
    print(f"cutout 0.1 deg, new frame:   {med(new):6.2f} ms CPU (median of {len(new)}), "
          f"{size / 1e6:.1f} MB each")
    print(f"cutout 0.1 deg, known frame: {med(known):6.2f} ms CPU")
    print(f"cutout 0.2 deg, known frame: {med(big):6.2f} ms CPU")
    print(f"render_window 59x59 only:    {med(render):6.2f} ms CPU")
    print(f"full frame (frame_bytes):    {full:6.0f} ms CPU, {len(body) / 1e6:.1f} MB")
    print(f"ratio new/known cutout: {med(new) / med(known):.2f}; "
          f"full frame / known cutout: {full / med(known):.0f}")


if __name__ == "__main__":
    main()
