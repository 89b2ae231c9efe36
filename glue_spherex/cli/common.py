"""What the ``glue-spherex`` subcommands share: exit codes and their help text, the target
arguments (TARGET or --ra/--dec, --size, --bandpass, ...), the query they run, one-line error
wording, output checks and the Ctrl-C policy. Cheap to import: heavy modules load inside the
functions that need them.
"""

from __future__ import annotations

import argparse
import contextlib
import re

from ..errors import SpherexInputError

__all__ = ["interrupts_deferred", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "EXIT_SERVICE", "EXIT_INTERRUPTED",
           "EXIT_CODES", "ARCHIVE_EXIT_CODES", "EPILOG", "one_line", "cli_words", "float_arg",
           "add_target_arguments", "target_from_args", "describe", "query_archive",
           "check_outputs", "run_as_program", "ignore_interrupts"]

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


def one_line(text):
    return " ".join(str(text).split())


_POOL = re.compile(r"(?:\w+Error: )?\(?HTTPS?ConnectionPool\(host='(?P<host>[^']*)', "
                   r"port=(?P<port>\d+)\).*", re.S)
_ERRNO = re.compile(r"\[Errno -?\d+\] (?P<why>[^'\")\]]+)")


def cli_words(text):
    """One line of ``text`` in the command line's own words: no urllib3 connection-pool
    dumps (just host, port and why), no Python class names meant for the API."""
    text = one_line(text)
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


# -- Ctrl-C -----------------------------------------------------------------------------------

_as_program = False


def run_as_program(flag):
    """Say whether the process is ours (the ``glue-spherex`` program), so that
    :func:`ignore_interrupts` may change its signal handling."""
    global _as_program
    _as_program = bool(flag)


def ignore_interrupts():
    """From now on Ctrl-C does nothing (only when running as the ``glue-spherex`` program)."""
    import signal

    if not _as_program:
        return
    with contextlib.suppress(ValueError, OSError):  # ValueError: not the main thread
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def interrupts_deferred():
    """Ctrl-C inside the block takes effect when it ends (only for the ``glue-spherex``
    program): an interrupt that lands inside importlib's module locks would otherwise
    surface later as ``RuntimeError: release unlocked lock`` instead of an interrupt."""
    import signal

    hits = []
    try:
        previous = signal.signal(signal.SIGINT, lambda *_: hits.append(1)) if _as_program \
            else None
    except (ValueError, OSError):  # not the main thread
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
            if hits:
                raise KeyboardInterrupt


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
    """An argparse type: a float, or the one-line error "WHAT 'text' is not a number"."""
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


def describe(args, coord):
    """One line saying what the target arguments ask for."""
    label = args.target or f"RA {coord.ra.deg:.5f} Dec {coord.dec.deg:+.5f}"
    bands = ",".join(f"D{b}" for b in sorted(set(args.bandpass))) if args.bandpass else "D1-D6"
    return (f"{label}: {bands}, {args.collection} survey, release {args.release}, "
            f"{args.size} cutouts, via {args.via}")


def query_archive(args, coord):
    """The images table the target arguments ask for (one archive query)."""
    from ..irsa.core import SpherexClass

    archive = SpherexClass(archive_url=args.archive)
    return archive.query_region(coord, size=args.size, bandpass=args.bandpass,
                                collection=args.collection, time=args.time, via=args.via,
                                release=args.release, versions=args.versions)


def check_outputs(*paths):
    """Fail at once (before any work) if an output path cannot be written."""
    from ..fitsbytes.atomic import check_output

    for path in paths:
        if path:
            check_output(path)
