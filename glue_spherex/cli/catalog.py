"""``glue-spherex catalog``: spectra of every source of a catalog into a Parquet dataset.

Example::

    glue-spherex catalog sources.ecsv -o spectra.parquet [--via s3|cutouts] \\
        [--scheduler tcp://host:8786 | --workers 2] [--radius 6arcsec] [--release qr3]

A rerun with the same options continues where a crash or Ctrl-C stopped.
"""

from __future__ import annotations

import argparse

from .common import EXIT_OK, EXIT_PARTIAL, float_arg
from .spectrum import angle_arg, annulus_arg

__all__ = ["add_parser", "run"]

DESCRIPTION = """\
Measure the spectrum of every source of SOURCES (a table file: ECSV, CSV, FITS or VOTable
with an id, RA and Dec in degrees, optionally an aperture radius in arcsec per source) on
every SPHEREx image covering it. One TAP query (the catalog uploaded) finds the images; each
image is then read once for all of its sources -- by byte ranges of IRSA's public S3 copy
(only the headers and the pixel rows holding sources), or with one cutout per cluster of
sources -- on a Dask distributed cluster (a local one unless --scheduler is given). The
measurement is that of 'glue-spherex spectrum'. Rows refused in SOURCES are listed with
their reason in OUT/_rejected.ecsv, a summary per source is in OUT/_summary.ecsv.
"""

EPILOG = """\
output (a Parquet dataset directory; pandas.read_parquet / pyarrow.dataset read it):
  one row per source x image: id, ra, dec, obs_id, detector, release, version, s3_key,
  wavelength, wavelength_mean, bandwidth (um), flux, flux_err (uJy), mjd,
  unmasked_fraction, n_pixels, n_masked, x, y (frame pixels), background, pipeline, status
  (as in 'glue-spherex spectrum')

exit codes:
  0    every image was measured
  1    some images failed after retries (OUT/_failed.ecsv says which and why; a rerun
       tries them again), the output could not be written, or an internal error
  2    bad input or usage (unreadable SOURCES, an OUT of another run's options)
  3    the archive (TAP) was unreachable or answered an error
  130  interrupted (Ctrl-C); the rows written are kept -- rerun the same command to resume
"""


def add_parser(subparsers):
    """Register the ``catalog`` subcommand."""
    from ..catalog.run import DEFAULT_MAX_REQUESTS

    parser = subparsers.add_parser(
        "catalog", help="spectra of every source of a catalog (Parquet, resumable)",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", metavar="SOURCES", help="catalog table file")
    parser.add_argument("-o", "--output", metavar="OUT.parquet", required=True,
                        help="Parquet dataset directory to write (or resume)")
    parser.add_argument("--via", choices=("s3", "cutouts"), default="s3",
                        help="s3: byte ranges of the public S3 copy (default); cutouts: the "
                             "cutout service, one cutout per cluster of sources")
    parser.add_argument("--scheduler", metavar="ADDR",
                        help="address of a running Dask scheduler, e.g. tcp://host:8786 "
                             "(default: start a local cluster)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="worker processes of the local cluster (default 2)")
    parser.add_argument("--threads", type=int, default=8, metavar="N",
                        help="threads per worker of the local cluster (default 8)")
    parser.add_argument("--max-requests", type=int, default=DEFAULT_MAX_REQUESTS, metavar="N",
                        help="requests in flight to the archive across the cluster "
                             f"(default {DEFAULT_MAX_REQUESTS})")
    parser.add_argument("--radius", type=angle_arg("radius"), default="6arcsec",
                        help="aperture radius of sources without their own (default 6arcsec)")
    parser.add_argument("--annulus", type=annulus_arg, metavar="INNER,OUTER",
                        help="local background annulus, e.g. 12arcsec,20arcsec")
    parser.add_argument("--aperture-correction", choices=("psf", "none"), default="psf",
                        help="psf: total flux of a point source (default); none: flux in the "
                             "aperture")
    parser.add_argument("--min-unmasked-fraction", type=float_arg("fraction"), default=0.5,
                        metavar="F", help="minimum usable fraction of the aperture (default 0.5)")
    parser.add_argument("--bandpass", "-b", action="append", metavar="BAND",
                        help="D1-D6; repeat for several (default all)")
    parser.add_argument("--collection", choices=("wide", "deep", "both"), default="wide",
                        help="wide survey, deep survey or both (default wide)")
    parser.add_argument("--release", choices=("qr2", "qr3", "all"), default="qr2",
                        help="qr2 (default), qr3 (pipeline-7 products) or all")
    parser.add_argument("--time", nargs=2, type=float_arg("MJD"), metavar=("MJD1", "MJD2"),
                        help="keep images overlapping this MJD interval")
    parser.add_argument("--s3-endpoint", metavar="URL",
                        help="where the bucket answers (default: AWS for IRSA, the archive "
                             "itself for the local archive)")
    parser.add_argument("--archive", metavar="URL",
                        help="archive base URL (default $GLUE_SPHEREX_ARCHIVE_URL or IRSA)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args):
    """Run the subcommand; returns the exit code."""
    import sys

    from ..catalog import extract_catalog
    from ..fitsbytes.atomic import describe_bytes
    from ..irsa.core import SpherexClass

    result = extract_catalog(
        args.sources, args.output, via=args.via, scheduler=args.scheduler,
        workers=args.workers, threads_per_worker=args.threads, radius=args.radius,
        annulus=args.annulus, aperture_correction=args.aperture_correction,
        min_unmasked_fraction=args.min_unmasked_fraction, collection=args.collection,
        release=args.release, bandpass=args.bandpass,
        time_range=tuple(args.time) if args.time else None, max_requests=args.max_requests,
        s3_endpoint=args.s3_endpoint, archive=SpherexClass(archive_url=args.archive),
        progress=not args.quiet)
    summary = result.summary
    measured = int((summary["points"] > 0).sum()) if summary is not None else 0
    resumed = (f", {result.images_done_before} already done before"
               if result.images_done_before else "")
    print(f"{result.sources} sources ({result.rejected} rejected), {result.images} images"
          f"{resumed}: {measured} sources with a spectrum; {result.rows} rows written to "
          f"{result.path} ({describe_bytes(result.bytes)} in {result.requests} requests, "
          f"{result.seconds:.1f} s)", file=sys.stderr)
    if result.failed_images:
        print(f"warning: {result.failed_images} images failed after retries (listed with "
              f"the reason in {result.path / '_failed.ecsv'}); rerun the same command to try "
              "them again", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK
