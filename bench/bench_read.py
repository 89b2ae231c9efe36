"""Per-cutout read cost of both layouts: pipeline < 7 (QR2) vs pipeline 7 (FLAGS compressed or not).

Builds, with the synthetic universe (the test generator ``tests/cutouts.py``), one combined
file per layout holding K cutouts of 29x29 pixels (IRSA's 180" cutouts) of one D5 exposure:
QR2 (int32 FLAGS, PSF cube), R7 with RICE_1 tile-compressed FLAGS and an EPSF table, and R7
with plain int32 FLAGS. Then, per layout, times what a reader does for each cutout -- open (header
scan of the file, one SpectralImage per cutout), IMAGE, FLAGS (decompressed for RICE_1),
per-pixel wavelength and the PSF zone of the centre pixel with its array -- and prints
ms/cutout and the ratios to QR2, best of R runs, all in one process (warm page cache). Run:

    .venv/bin/python bench/bench_read.py [--cutouts K] [--repeat R]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from cutouts import cutout_bytes, frame_spec  # noqa: E402

from glue_spherex.products.combined import CombinedWriter  # noqa: E402
from glue_spherex.products.spectral_image import open_products  # noqa: E402

SIZE = 29


def write_combined(path, spec, k, flags="compressed"):
    rng = np.random.default_rng(1)
    corners = rng.integers(0, 2040 - SIZE, (k, 2))
    planned = [{"cutout_index": i + 1, "access_url": f"cutout{i + 1}"} for i in range(k)]
    with CombinedWriter(path, planned, overwrite=True) as writer:
        for i, (x0, y0) in enumerate(corners):
            writer.add(i + 1, cutout_bytes(spec, int(x0), int(y0), SIZE, SIZE, flags))


def read_all(path):
    """What a reader does per cutout; returns a checksum so nothing is optimised away."""
    total = 0.0
    images = open_products(path)
    for image in images:
        total += float(image.image[0, 0]) + int(image.flags[1, 1])
        total += float(image.wavelength()[2, 2])
        total += float(image.psf_at(SIZE // 2, SIZE // 2)[0, 0])
        image.close()
    return total, len(images)


def best_of(repeat, func, *args):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        func(*args)
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cutouts", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        layouts = {
            "QR2 (pipeline < 7)": (frame_spec(5), "compressed"),
            "R7, FLAGS RICE_1": (frame_spec(5, pipeline=7), "compressed"),
            "R7, FLAGS int32": (frame_spec(5, pipeline=7), "plain"),
        }
        paths = {}
        for name, (spec, flags) in layouts.items():
            paths[name] = os.path.join(tmp, f"{len(paths)}.fits")
            write_combined(paths[name], spec, args.cutouts, flags)
        print(f"{args.cutouts} cutouts of {SIZE}x{SIZE} per file, best of {args.repeat}; per cutout: "
              "open + IMAGE + FLAGS + wavelength + PSF zone and array")
        results = {}
        for name, path in paths.items():
            _, n = read_all(path)  # warm the page cache
            assert n == args.cutouts
            results[name] = best_of(args.repeat, read_all, path) / n * 1e3
        base = results["QR2 (pipeline < 7)"]
        for name, ms in results.items():
            size = os.path.getsize(paths[name]) / args.cutouts / 1e6
            print(f"  {name:20s} {ms:7.3f} ms/cutout  ({ms / base:4.2f}x QR2)  "
                  f"{size:5.2f} MB/cutout in the file")


if __name__ == "__main__":
    main()
