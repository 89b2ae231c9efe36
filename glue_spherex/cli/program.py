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
import os
import re
import sys

from ..errors import SpherexError, SpherexFormatError, SpherexInputError, SpherexServiceError

__all__ = ["main", "SUBCOMMANDS", "EXIT_CODES", "ARCHIVE_EXIT_CODES", "EXIT_OK", "EXIT_PARTIAL",
           "EXIT_USAGE", "EXIT_SERVICE", "EXIT_INTERRUPTED", "add_target_arguments",
           "target_from_args", "cli_words", "check_outputs", "float_arg"]

#: ``add_parser`` functions, in the order they appear in ``--help``.
SUBCOMMANDS = (
    "glue_spherex.cli.program:add_query_parser",
    "glue_spherex.cli.program:add_fetch_parser",
    "glue_spherex.cli.demo:add_parser",
    "glue_spherex.cli.program:add_archive_parser",
    "glue_spherex.cli.spectrum:add_parser",
)

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_SERVICE = 3
EXIT_INTERRUPTED = 130

EXIT_CODES = """\
exit codes:
  0    success
  1    some cutouts failed (the file holds the others; CUTOUT_INFO says why), a local
       file could not be written (missing or read-only directory, full disk, another
       run writing the same file), or an internal error
  2    bad input or usage (including a file that is not a SPHEREx product)
  3    a service (TAP, SIA2, cutouts, name resolver) was unreachable or answered an error
  130  interrupted (Ctrl-C); cutouts that had arrived are saved (rerun to resume)
"""

ARCHIVE_EXIT_CODES = """\
exit codes:
  0    stopped with Ctrl-C or SIGTERM
  1    its tables could not be built
  2    bad option, or the port is in use
"""

EPILOG = EXIT_CODES + """

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


#: Options taking one value that may start with '-' (argparse would take ``-3arcsec`` for an
#: option and say "expected one argument"); they are passed on as ``--radius=-3arcsec``.
_VALUE_OPTIONS = ("--size", "--radius", "--annulus", "--ra", "--dec", "--port", "--workers",
                  "--retries", "--min-unmasked-fraction", "--seed")


def _join_values(argv):
    argv = list(sys.argv[1:] if argv is None else argv)
    out = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if (token in _VALUE_OPTIONS and i + 1 < len(argv)
                and re.match(r"^-[\d.]", argv[i + 1])):
            out.append(f"{token}={argv[i + 1]}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


def main(argv=None):
    """Entry point of ``glue-spherex``; returns (and exits with) the exit code."""
    global _as_program
    _as_program = argv is None  # the process is ours: its signal handling too
    try:
        code = _main(argv)
    except KeyboardInterrupt:  # e.g. while the modules are still being imported
        _ignore_interrupts()
        print("glue-spherex: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    _ignore_interrupts()  # decided: another Ctrl-C must not turn the exit into a traceback
    sys.exit(code)


_as_program = False


def _ignore_interrupts():
    """From now on Ctrl-C does nothing (only when running as the ``glue-spherex`` program)."""
    import contextlib
    import signal

    if not _as_program:
        return
    with contextlib.suppress(ValueError, OSError):  # ValueError: not the main thread
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _main(argv):
    parser = build_parser()
    args = parser.parse_args(_join_values(argv))
    try:
        return args.func(args)
    except KeyboardInterrupt:
        _ignore_interrupts()
        print("glue-spherex: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `glue-spherex query ... | head`: the reader has gone
        _silence_stdout()
        return EXIT_OK
    except (SpherexInputError, SpherexFormatError) as exc:  # a file the user named is input too
        return _fail(exc, EXIT_USAGE)
    except SpherexServiceError as exc:
        return _fail(exc, EXIT_SERVICE)
    except SpherexError as exc:
        return _fail(exc, EXIT_PARTIAL)
    except Exception as exc:
        return _fail_other(exc)


def _silence_stdout():
    """Point stdout at /dev/null so that the interpreter's final flush raises nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _fail(exc, code):
    print(f"glue-spherex: error: {cli_words(exc)}", file=sys.stderr)
    return code


_POOL = re.compile(r"(?:\w+Error: )?\(?HTTPS?ConnectionPool\(host='(?P<host>[^']*)', "
                   r"port=(?P<port>\d+)\).*", re.S)
_ERRNO = re.compile(r"\[Errno -?\d+\] (?P<why>[^'\")\]]+)")


def cli_words(text):
    """One line of ``text`` in the command line's own words: no urllib3 connection-pool
    dumps (just host, port and why), no Python class names meant for the API."""
    text = _one_line(text)
    match = _POOL.search(text)
    if match:
        why = _ERRNO.search(text)
        reason = why["why"].strip() if why else (
            "timed out" if "timed out" in text.lower() else "connection failed")
        prefix = text[:match.start()].rstrip(" (")
        sep = " " if prefix.endswith(":") or not prefix else ": "
        text = f"{prefix}{sep}cannot connect to {match['host']}:{match['port']} ({reason})"
    text = re.sub(r"\s*\(or a SkyCoord\)", "", text)
    text = re.sub(r",? an \(ra, dec\) pair or a SkyCoord", " or --ra/--dec", text)
    return text.replace("SkyCoord", "position")


def _fail_other(exc):
    import requests

    try:
        from pyvo.dal import DALServiceError
    except ImportError:  # pragma: no cover
        DALServiceError = ()
    if isinstance(exc, (requests.RequestException, DALServiceError)):
        return _fail(f"service error: {exc}", EXIT_SERVICE)
    if isinstance(exc, OverflowError):  # a number too large for what it names
        return _fail(f"a value is out of range ({exc})", EXIT_USAGE)
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return _fail(f"{exc.strerror or exc}{where}", EXIT_PARTIAL)
    return _fail(f"internal error: {type(exc).__name__}: {exc} (please report it)",
                 EXIT_PARTIAL)


# -- shared arguments -------------------------------------------------------------------------

def _size_arg(text):
    from ..irsa.core import parse_size

    try:
        return parse_size(text)
    except SpherexInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _bandpass_arg(text):
    from ..irsa.core import parse_bandpasses

    try:
        return parse_bandpasses(text)[0]
    except SpherexInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def float_arg(what):
    """An argparse ``type`` parsing a float, with ``what`` named in the error."""
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
    parser.add_argument("--ra", type=float_arg("RA"), help="right ascension (deg, ICRS)")
    parser.add_argument("--dec", type=float_arg("Dec"), help="declination (deg, ICRS)")
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
    parser.add_argument("--time", nargs=2, type=float_arg("MJD"), metavar=("MJD1", "MJD2"),
                        help="keep images overlapping this MJD interval")
    parser.add_argument("--archive", metavar="URL",
                        help="archive base URL (default $GLUE_SPHEREX_ARCHIVE_URL or IRSA)")


def target_from_args(args):
    """A SkyCoord from TARGET or --ra/--dec (SpherexInputError if neither or both)."""
    from ..irsa.resolve import check_radec, resolve_target

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
    from ..irsa.core import SpherexArchive

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
    if args.output:
        _table_format(args.output)
        check_outputs(args.output)
    table = _query(args, coord)
    print(f"{_describe(args, coord)}: {len(table)} images")
    if args.output:
        _write_table(table, args.output)
        print(f"wrote {args.output}")
    elif len(table):
        table[["cutout_index", "obs_id", "bandpass", "t_min", "collection", "version",
               "cutout_url"]].pprint_all()
    return EXIT_OK


_TABLE_FORMATS = {".ecsv": "ascii.ecsv", ".csv": "ascii.csv", ".fits": "fits",
                  ".vot": "votable", ".xml": "votable"}


def _table_format(path):
    ext = os.path.splitext(path)[1].lower()
    if ext not in _TABLE_FORMATS:
        raise SpherexInputError(f"output {path!r}: use one of {', '.join(_TABLE_FORMATS)}")
    return _TABLE_FORMATS[ext]


def _write_table(table, path):
    from ..fitsbytes.atomic import atomic_path

    with atomic_path(path) as tmp:
        table.write(tmp, format=_table_format(path))


# -- fetch ------------------------------------------------------------------------------------

def add_fetch_parser(subparsers):
    from ..irsa.config import conf

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
    from ..irsa.config import settings

    cfg = settings(archive_url=args.archive, workers=args.workers, cache_dir=args.cache,
                   max_retries=args.retries)
    coord = target_from_args(args)
    output = args.output or _default_output(args, coord)
    _check_fetch_output(output, args.overwrite)
    check_outputs(args.quicklook)
    if cfg.cache_dir is not None:  # an unwritable cache is an error before any download
        from ..download.cache import CutoutCache

        CutoutCache(cfg.cache_dir).prepare()
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
    """Fetch ``table`` into ``output`` (and a quick-look); print a summary; exit code.

    ``output`` is resumed when it holds an unfinished file of the same query (see
    :func:`~glue_spherex.download.fetcher.fetch_to_file`).
    """
    from ..download.fetcher import fetch_to_file

    before = _file_id(output)
    try:
        summary = fetch_to_file(table, output, overwrite=overwrite, workers=workers,
                                cache_dir=cache_dir, max_retries=max_retries,
                                tqdm=progress_bar)
    except KeyboardInterrupt:
        _ignore_interrupts()  # what follows is quick, and must be said whole
        print(f"glue-spherex: interrupted; {_where_they_are(output, before, cache_dir)}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    mb = summary.bytes / 1e6
    if summary.resumed == summary.total:
        print(f"{summary.path} already holds all {summary.total} cutouts; nothing to fetch")
    else:
        kept = f"{summary.resumed} kept from the unfinished file, " if summary.resumed else ""
        print(f"wrote {summary.path}: {summary.ok} of {summary.total} cutouts "
              f"({kept}{summary.from_cache} from cache, {mb:.1f} MB downloaded, "
              f"{summary.seconds:.1f} s)")
    for index, reason in summary.failures[:10]:
        print(f"  cutout {index} failed: {cli_words(reason)}")
    if len(summary.failures) > 10:
        print(f"  ... and {len(summary.failures) - 10} more (see CUTOUT_INFO)")
    if summary.cancelled:
        print(f"  {summary.cancelled} cutouts were not fetched; rerun the same command to "
              "fetch them")
    if summary.uncached:
        why = summary.cache_problem.removeprefix("not cached: ")
        why = re.sub(r"\[Errno \d+\] |: '[^']*\.part'", "", why)  # no errno, no temp names
        print(f"glue-spherex: warning: {summary.uncached} cutouts could not be kept in the "
              f"cache {cache_dir} ({why}); a rerun downloads them again", file=sys.stderr)
    if quicklook and summary.ok:
        from ..analysis.quicklook import DEFAULT_MAX_PANELS, quicklook_png

        png = quicklook_png(summary.path, quicklook)
        shown = ("" if summary.ok <= DEFAULT_MAX_PANELS else
                 f" ({DEFAULT_MAX_PANELS} of the {summary.ok} cutouts, evenly spaced in "
                 f"wavelength: at most {DEFAULT_MAX_PANELS} panels fit one image)")
        print(f"wrote {png}{shown}")
    return EXIT_OK if summary.failed == 0 and summary.cancelled == 0 else EXIT_PARTIAL


def _file_id(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def _where_they_are(output, before, cache_dir):
    """What is true about the cutouts that arrived, after an interrupt (checked, not hoped)."""
    after = _file_id(output)
    if after is not None and after != before:
        try:
            from astropy.io import fits

            n = int(fits.getheader(output)["NCUTOUT"])
        except (OSError, KeyError, ValueError, TypeError):
            n = None
        if n == 0:
            return f"no cutout had arrived yet ({output} lists them all as missing)"
        what = "the cutouts" if n is None else f"the {n} cutouts"
        return f"{what} that arrived are in {output}; rerun the same command to resume"
    if cache_dir is not None and os.path.isdir(cache_dir):
        return (f"{output} was not finished; the cutouts that arrived are in the cache "
                f"{cache_dir}; rerun the same command to resume")
    if after is not None:
        return f"{output} was left as it was before this run"
    return f"{output} was not written (interrupted again while finishing it)"


def _default_output(args, coord):
    if args.target:
        stem = re.sub(r"[^A-Za-z0-9+.-]+", "_", args.target.strip()).strip("_")
    else:
        stem = f"{coord.ra.deg:.4f}{coord.dec.deg:+.4f}"
    return f"spherex_{stem}.fits"


def _check_fetch_output(path, overwrite):
    """The combined file: writable, and either new, replaced (--overwrite) or resumable."""
    check_outputs(path)
    if os.path.exists(path) and not overwrite and not _resumable_file(path):
        raise SpherexInputError(f"{path} exists and is not an unfinished glue-spherex fetch; "
                                "give --overwrite or another -o")


def _resumable_file(path):
    """True if ``path`` looks like a combined file this command wrote (a cheap header look)."""
    try:
        with open(path, "rb") as f:
            head = f.read(2880)
    except OSError:
        return False
    return head.startswith(b"SIMPLE  =") and b"glue-spherex" in head


def check_outputs(*paths):
    """Fail at once (before any work) if an output path cannot be written."""
    from ..fitsbytes.atomic import check_output

    for path in paths:
        if path:
            check_output(path)


# -- archive ----------------------------------------------------------------------------------

def add_archive_parser(subparsers):
    from .archive import add_arguments

    parser = subparsers.add_parser(
        "archive", help="serve a local IRSA-compatible archive (synthetic data)",
        description="Serve a local IRSA-compatible SPHEREx archive on 127.0.0.1 with optional "
                    "fault injection; prints its URL (use it with --archive).",
        epilog=ARCHIVE_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(func=_run_archive)


def _run_archive(args):
    from .archive import run

    return run(args)
