"""The ``glue-spherex`` command line.

Subcommands are registered in :data:`SUBCOMMANDS`, each entry naming a function
``add_parser(subparsers)`` as ``"module:function"``. Such a function must

- create its parser with ``subparsers.add_parser(NAME, help=..., description=...)``,
- set ``parser.set_defaults(func=run)`` where ``run(args) -> int`` returns the exit code,
- stay cheap: import heavy modules inside ``run``, since ``--help`` builds every parser.

``run`` raises :class:`~glue_spherex.errors.SpherexError` (or lets requests/pyvo/OS errors
through) for anything the user should see; :func:`main` turns those into one line
``glue-spherex: error: ...`` on stderr and the documented exit code -- never a traceback.
To add a subcommand (e.g. ``spectrum``), write its ``add_parser`` in its own module and append
it to :data:`SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import SpherexError, SpherexFormatError, SpherexInputError, SpherexServiceError

__all__ = ["main", "SUBCOMMANDS", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "EXIT_SERVICE",
           "EXIT_INTERRUPTED", "add_target_arguments", "target_from_args"]

#: ``add_parser`` functions, in the order they appear in ``--help``.
SUBCOMMANDS = (
    "glue_spherex.cli:add_query_parser",
    "glue_spherex.cli:add_fetch_parser",
    "glue_spherex.demo:add_parser",
    "glue_spherex.cli:add_archive_parser",
    "glue_spherex.spectrum_cli:add_parser",
)

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_SERVICE = 3
EXIT_INTERRUPTED = 130

EPILOG = """\
exit codes:
  0    success
  1    some cutouts failed (the file holds the others; CUTOUT_INFO says why), a local
       file could not be written, or an internal error
  2    bad input or usage (including a file that is not a SPHEREx product)
  3    a service (TAP, SIA2, cutouts, name resolver) was unreachable or answered an error
  130  interrupted (Ctrl-C); cutouts that had arrived are saved

environment:
  GLUE_SPHEREX_ARCHIVE_URL   archive base URL (default https://irsa.ipac.caltech.edu);
                             --archive overrides it
"""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``glue-spherex: error: ...`` and exit code 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"glue-spherex: error: {_one_line(message)} "
                              f"(see '{self.prog} --help')\n")


def _one_line(text):
    return " ".join(str(text).split())


def build_parser():
    parser = _Parser(
        prog="glue-spherex",
        description="Query, fetch and inspect NASA SPHEREx spectral-image cutouts.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for entry in SUBCOMMANDS:
        module, _, function = entry.partition(":")
        getattr(importlib.import_module(module), function)(subparsers)
    return parser


def _version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("glue-spherex")
    except PackageNotFoundError:
        return "dev"


def main(argv=None):
    """Entry point of ``glue-spherex``; returns (and exits with) the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        print("glue-spherex: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except (SpherexInputError, SpherexFormatError) as exc:  # a file the user named is input too
        code = _fail(exc, EXIT_USAGE)
    except SpherexServiceError as exc:
        code = _fail(exc, EXIT_SERVICE)
    except SpherexError as exc:
        code = _fail(exc, EXIT_PARTIAL)
    except Exception as exc:
        code = _fail_other(exc)
    sys.exit(code)


def _fail(exc, code):
    print(f"glue-spherex: error: {_one_line(exc)}", file=sys.stderr)
    return code


def _fail_other(exc):
    import requests

    try:
        from pyvo.dal import DALServiceError
    except ImportError:  # pragma: no cover
        DALServiceError = ()
    if isinstance(exc, (requests.RequestException, DALServiceError)):
        return _fail(f"service error: {exc}", EXIT_SERVICE)
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return _fail(f"{exc.strerror or exc}{where}", EXIT_PARTIAL)
    return _fail(f"internal error: {type(exc).__name__}: {exc} (please report it)",
                 EXIT_PARTIAL)


# -- shared arguments -------------------------------------------------------------------------

def _size_arg(text):
    from .query import parse_size

    try:
        return parse_size(text)
    except SpherexInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _bandpass_arg(text):
    from .query import parse_bandpasses

    try:
        return parse_bandpasses(text)[0]
    except SpherexInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _float_arg(what):
    def convert(text):
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} {text!r} is not a number") from None
    return convert


def add_target_arguments(parser):
    """TARGET or --ra/--dec, --size, --bandpass, --collection, --release, --versions, --via,
    --time, --archive."""
    parser.add_argument("target", nargs="?", metavar="TARGET",
                        help="object name (resolved by Sesame) or 'RA DEC' in degrees")
    parser.add_argument("--ra", type=_float_arg("RA"), help="right ascension (deg, ICRS)")
    parser.add_argument("--dec", type=_float_arg("Dec"), help="declination (deg, ICRS)")
    parser.add_argument("--size", type=_size_arg, default="0.1deg",
                        help="cutout width with unit: 0.1deg, 6arcmin, 30arcsec, 60px "
                             "(default 0.1deg; no unit means deg)")
    parser.add_argument("--bandpass", "-b", type=_bandpass_arg, action="append",
                        metavar="BAND", help="D1-D6 or SPHEREx-D1..D6; repeat for several "
                                             "(default all)")
    parser.add_argument("--collection", choices=("wide", "deep", "both"), default="wide",
                        help="wide survey, deep survey or both (default wide)")
    parser.add_argument("--release", choices=("qr2", "qr3", "all"), default="qr2",
                        help="qr2: QR2 as first processed, pipeline < 7 (default: one "
                             "calibration, the files earlier versions gave); qr3: pipeline-7 "
                             "products (QR3 and QR2 reprocessed); all: both")
    parser.add_argument("--versions", choices=("newest", "all"), default="newest",
                        help="an exposure in several processing versions: keep the newest "
                             "(default; a retry run breaks ties) or all")
    parser.add_argument("--via", choices=("tap", "sia"), default="tap",
                        help="TAP (default, no ingestion lag) or SIA2")
    parser.add_argument("--time", nargs=2, type=_float_arg("MJD"), metavar=("MJD1", "MJD2"),
                        help="keep images overlapping this MJD interval")
    parser.add_argument("--archive", metavar="URL",
                        help="archive base URL (default $GLUE_SPHEREX_ARCHIVE_URL or IRSA)")


def target_from_args(args):
    """A SkyCoord from TARGET or --ra/--dec (SpherexInputError if neither or both)."""
    from .resolve import check_radec, resolve_target

    has_radec = args.ra is not None or args.dec is not None
    if args.target and has_radec:
        raise SpherexInputError("give either TARGET or --ra/--dec, not both")
    if has_radec:
        if args.ra is None or args.dec is None:
            raise SpherexInputError("give both --ra and --dec")
        return check_radec(args.ra, args.dec)
    if not args.target:
        raise SpherexInputError("give a TARGET name or --ra and --dec")
    return resolve_target(args.target)


def _describe(args, coord):
    label = args.target or f"RA {coord.ra.deg:.5f} Dec {coord.dec.deg:+.5f}"
    bands = ",".join(f"D{b}" for b in sorted(set(args.bandpass))) if args.bandpass else "D1-D6"
    return (f"{label}: {bands}, {args.collection} survey, release {args.release}, "
            f"{args.size} cutouts, via {args.via}")


def _query(args, coord):
    from .query import SpherexArchive

    archive = SpherexArchive(archive_url=args.archive)
    return archive.query_region(coord, size=args.size, bandpass=args.bandpass,
                                collection=args.collection, time=args.time, via=args.via,
                                release=args.release, versions=args.versions)


# -- query ------------------------------------------------------------------------------------

def add_query_parser(subparsers):
    parser = subparsers.add_parser(
        "query", help="list the images covering a target",
        description="List the SPHEREx images that contain a target, sorted by time.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_target_arguments(parser)
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write the table (format from the extension: .ecsv, .csv, "
                             ".fits, .vot); default: print it")
    parser.set_defaults(func=run_query)


def run_query(args):
    coord = target_from_args(args)
    table = _query(args, coord)
    print(f"{_describe(args, coord)}: {len(table)} images")
    if args.output:
        _write_table(table, args.output)
        print(f"wrote {args.output}")
    elif len(table):
        table[["cutout_index", "obs_id", "bandpass", "t_min", "collection", "version",
               "cutout_url"]].pprint_all()
    return EXIT_OK


def _write_table(table, path):
    import os

    from .atomic import atomic_path

    formats = {".ecsv": "ascii.ecsv", ".csv": "ascii.csv", ".fits": "fits", ".vot": "votable",
               ".xml": "votable"}
    ext = os.path.splitext(path)[1].lower()
    if ext not in formats:
        raise SpherexInputError(f"output {path!r}: use one of {', '.join(formats)}")
    with atomic_path(path) as tmp:
        table.write(tmp, format=formats[ext])


# -- fetch ------------------------------------------------------------------------------------

def add_fetch_parser(subparsers):
    from .config import conf

    parser = subparsers.add_parser(
        "fetch", help="download cutouts into one combined FITS file",
        description="Query, then download every cutout into one multi-extension FITS file\n"
                    "(CUTOUT_INFO table plus IMAGEn, FLAGSn, VARIANCEn, ZODIn, PSFn, WCS-WAVEn\n"
                    "per cutout). Failed cutouts are listed in CUTOUT_INFO; with --cache, a\n"
                    "rerun resumes where the last one stopped.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_target_arguments(parser)
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="combined FITS file (default spherex_<target>.fits)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing FILE")
    parser.add_argument("--quicklook", metavar="PNG", help="also write a quick-look grid")
    parser.add_argument("--workers", type=int, metavar="N",
                        help=f"concurrent downloads (default conf.workers, {conf.workers})")
    parser.add_argument("--cache", metavar="DIR",
                        help="keep each cutout in DIR so that a rerun resumes")
    parser.add_argument("--retries", type=int, metavar="N",
                        help="retries per cutout after transient errors (default "
                             f"conf.max_retries, {conf.max_retries})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_fetch)


def run_fetch(args):
    from .config import settings

    cfg = settings(archive_url=args.archive, workers=args.workers, cache_dir=args.cache,
                   max_retries=args.retries)
    coord = target_from_args(args)
    output = args.output or _default_output(args, coord)
    _check_output(output, args.overwrite)
    table = _query(args, coord)
    print(f"{_describe(args, coord)}: {len(table)} images")
    if not len(table):
        print("nothing to fetch; no file written")
        return EXIT_OK
    return fetch_and_report(table, output, workers=cfg.workers, cache_dir=cfg.cache_dir,
                            max_retries=cfg.max_retries, overwrite=args.overwrite,
                            quicklook=args.quicklook,
                            progress_bar=not args.no_progress and sys.stderr.isatty())


def fetch_and_report(table, output, *, workers, cache_dir, overwrite, quicklook,
                     progress_bar, max_retries=None):
    """Fetch ``table`` into ``output`` (and a quick-look); print a summary; exit code."""
    from .fetch import fetch_to_file

    try:
        summary = fetch_to_file(table, output, overwrite=overwrite, workers=workers,
                                cache_dir=cache_dir, max_retries=max_retries,
                                tqdm=progress_bar)
    except KeyboardInterrupt:
        print(f"glue-spherex: interrupted; the cutouts that arrived are in {output}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    mb = summary.bytes / 1e6
    print(f"wrote {summary.path}: {summary.ok} of {summary.total} cutouts "
          f"({summary.from_cache} from cache, {mb:.1f} MB downloaded, "
          f"{summary.seconds:.1f} s)")
    for index, reason in summary.failures[:10]:
        print(f"  cutout {index} failed: {reason}")
    if len(summary.failures) > 10:
        print(f"  ... and {len(summary.failures) - 10} more (see CUTOUT_INFO)")
    if quicklook and summary.ok:
        from .quicklook import quicklook_png

        png = quicklook_png(summary.path, quicklook)
        print(f"wrote {png}")
    return EXIT_OK if summary.failed == 0 and summary.cancelled == 0 else EXIT_PARTIAL


def _default_output(args, coord):
    import re

    if args.target:
        stem = re.sub(r"[^A-Za-z0-9+.-]+", "_", args.target.strip()).strip("_")
    else:
        stem = f"{coord.ra.deg:.4f}{coord.dec.deg:+.4f}"
    return f"spherex_{stem}.fits"


def _check_output(path, overwrite):
    import os

    if os.path.exists(path) and not overwrite:
        raise SpherexInputError(f"{path} exists; give --overwrite or another -o")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise SpherexInputError(f"output directory {directory} does not exist")


# -- archive ----------------------------------------------------------------------------------

def add_archive_parser(subparsers):
    from .archive.command import add_arguments

    parser = subparsers.add_parser(
        "archive", help="serve a local IRSA-compatible archive (synthetic data)",
        description="Serve a local IRSA-compatible SPHEREx archive on 127.0.0.1 with optional "
                    "fault injection; prints its URL (use it with --archive).")
    add_arguments(parser)
    parser.set_defaults(func=_run_archive)


def _run_archive(args):
    from .archive.command import run

    return run(args)


if __name__ == "__main__":  # pragma: no cover
    main()
