"""``glue-spherex demo``: the whole path, offline, in one command.

Starts the local IRSA-compatible archive in this process, queries it for the M101 D2 images,
fetches their 0.1 deg cutouts into a combined FITS file and draws the quick-look grid, all
under ``./glue-spherex-demo/`` (or ``--out DIR``), then says where the files are.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["add_parser", "run", "DEMO_TARGET", "DEMO_RADEC"]

DEMO_TARGET = "M101"
#: The archive's synthetic sky puts M101 here (NED position); no name resolver is needed.
DEMO_RADEC = (210.80227, 54.34895)


def add_parser(subparsers):
    from .common import EPILOG

    parser = subparsers.add_parser(
        "demo", help="run query -> fetch -> quick-look against a local archive",
        description="Start the local archive in-process, fetch the M101 D2 0.1deg cutouts\n"
                    "into DIR/m101_d2.fits and draw DIR/m101_d2.png.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", metavar="DIR", default="glue-spherex-demo",
                        help="output directory (default ./glue-spherex-demo)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="concurrent downloads (default conf.workers)")
    parser.set_defaults(func=run)


def run(args):
    from ..errors import SpherexOutputError
    from ..irsa.config import settings
    from ..irsa.core import SpherexClass
    from ..local_archive import LocalArchive
    from .common import EXIT_OK
    from .fetch import fetch_and_report

    cfg = settings(workers=args.workers)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpherexOutputError(f"cannot use {out} as the output directory: "
                                 f"{exc.strerror or exc}") from None
    fits_path, png_path = out / "m101_d2.fits", out / "m101_d2.png"
    t0 = time.monotonic()
    with LocalArchive() as archive:
        print(f"local archive at {archive.url} (synthetic data, IRSA's layout)")
        archive.wait_ready()
        table = SpherexClass(archive.url).query_region(DEMO_RADEC, size="0.1deg",
                                                         bandpass="D2")
        print(f"{DEMO_TARGET} (RA {DEMO_RADEC[0]}, Dec {DEMO_RADEC[1]}): {len(table)} D2 images"
              f" from {table['t_min'].min():.2f} to {table['t_max'].max():.2f} MJD"
              if len(table) else f"{DEMO_TARGET}: no images (unexpected)")
        if not len(table):
            return EXIT_OK
        code = fetch_and_report(table, fits_path, workers=cfg.workers, cache_dir=None,
                                overwrite=True, quicklook=png_path,
                                progress_bar=sys.stderr.isatty())
    print(f"demo finished in {time.monotonic() - t0:.1f} s; files in {out.resolve()}")
    print(f"  open the cutouts in Python: glue_spherex.products.combined.read_combined('{fits_path}')")
    return code
