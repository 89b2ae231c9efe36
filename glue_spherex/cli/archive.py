"""``glue-spherex archive`` (also ``python -m glue_spherex.local_archive``): serve the local
IRSA-compatible archive with optional fault injection.

Prints the base URL and the service endpoints, then serves until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

from ..errors import SpherexError

__all__ = ["add_parser", "add_arguments", "run", "main"]



def _number(kind, what, low=None, high=None):
    """An argparse type: ``kind`` (int or float) within [low, high], with a one-line error."""
    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{what} {text!r} is not {'a whole number' if kind is int else 'a number'}"
            ) from None
        if value != value or (low is not None and value < low) or \
                (high is not None and value > high):
            bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{what} {text!r} must be {bounds}")
        return value
    return convert


def add_parser(subparsers):
    """The ``archive`` subcommand of ``glue-spherex``."""
    from .common import ARCHIVE_EXIT_CODES

    parser = subparsers.add_parser(
        "archive", help="serve a local IRSA-compatible archive (synthetic data)",
        description="Serve a local IRSA-compatible SPHEREx archive on 127.0.0.1 with optional "
                    "fault injection; prints its URL (use it with --archive).",
        epilog=ARCHIVE_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser):
    """Add the archive's options to an argparse parser."""
    from ..local_archive.faults import FAULT_EFFECTS

    parser.add_argument("--port", type=_number(int, "port", 0, 65535), default=0,
                        help="TCP port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only; "
                             "0.0.0.0 serves every network the machine is on)")
    parser.add_argument("--query-timeout", type=float, default=30.0, metavar="S",
                        help="seconds one TAP/SIA query may run (default 30)")
    parser.add_argument("--seed", type=_number(int, "seed", 0), default=0,
                        help="seed of the fault stream")
    parser.add_argument("--gzip-cutouts", action="store_true",
                        help="gzip cutouts unless the request says gzip=false")
    parser.add_argument("--cutout-flags", choices=("compressed", "plain"), default="compressed",
                        help="FLAGS of pipeline-7 (QR3) cutouts: RICE_1 tile-compressed over the "
                             "window like the full file (default) or a plain int32 image")
    g = parser.add_argument_group("fault injection")
    g.add_argument("--latency", default=0.0, metavar="SPEC",
                   help="delay per request: seconds (0.15), uniform:LOW,HIGH or "
                        "lognormal:MEDIAN,SIGMA")
    g.add_argument("--bandwidth", type=_number(float, "bandwidth", 1.0), default=None,
                   metavar="BYTES_PER_S",
                   help="cap on the body rate of each response")
    for kind, text in FAULT_EFFECTS.items():
        g.add_argument(f"--p-{kind}", type=_number(float, "probability", 0.0, 1.0), default=0.0,
                       metavar="P",
                       help=f"probability per request: {text}")
    g.add_argument("--retry-after", type=_number(int, "retry-after", 0), default=1, metavar="S",
                   help="Retry-After seconds sent with 429 and 503 (default 1)")
    g.add_argument("--stall-seconds", type=_number(float, "stall-seconds", 0.0), default=5.0,
                   metavar="S",
                   help="length of a stall (default 5)")
    g.add_argument("--fault-routes", default="data", metavar="ROUTES",
                   help="where faults apply: data (the /ibe/ files and cutouts, default), all, "
                        "or a comma list of data,tap,sia")
    return parser


def faults_from_args(args):
    from ..local_archive.faults import FAULT_KINDS, FaultConfig

    kwargs = {f"p_{kind}": getattr(args, f"p_{kind}") for kind in FAULT_KINDS}
    return FaultConfig(latency=args.latency, bandwidth=args.bandwidth, retry_after=args.retry_after,
                       stall_seconds=args.stall_seconds, routes=args.fault_routes, **kwargs)


def run(args):
    """Serve until interrupted; returns the process exit code."""
    from ..local_archive.server import LocalArchive

    try:
        faults = faults_from_args(args)
        archive = LocalArchive(port=args.port, faults=faults, seed=args.seed,
                               gzip_cutouts=args.gzip_cutouts, host=args.host,
                               query_timeout=args.query_timeout,
                               cutout_flags=args.cutout_flags)
        t0 = time.perf_counter()
        archive.start()
    except (SpherexError, OSError, OverflowError) as e:
        where = f"cannot serve on {args.host}:{args.port}: " if isinstance(e, OSError) else ""
        print(f"glue-spherex archive: error: {where}{_one_line(e)}", file=sys.stderr)
        return 2
    print(archive.url, flush=True)
    print(f"  TAP   {archive.tap_url}\n  SIA2  {archive.sia_url}\n"
          f"  files {archive.url}/ibe/data/spherex/...\n  faults: {faults.describe()}",
          flush=True)
    stop = threading.Event()
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        try:
            archive.wait_ready()
            n = len(archive.catalog.specs)
            print(f"  ready: {n} frames, {time.perf_counter() - t0:.2f} s", flush=True)
        except SpherexError as e:
            print(f"glue-spherex archive: error: {_one_line(e)}", file=sys.stderr)
            return 1
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        archive.stop()
    return 0


def _one_line(exc):
    text = " ".join(str(exc).split())
    if isinstance(exc, OSError) and exc.strerror:  # e.g. the port is taken
        text = exc.strerror
    return text


class _OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (and exit code 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} "
                     f"(see '{self.prog} --help')\n")


def main(argv=None):
    from .common import ARCHIVE_EXIT_CODES

    parser = add_arguments(_OneLineParser(
        prog="python -m glue_spherex.local_archive",
        description="Serve a local IRSA-compatible SPHEREx archive on 127.0.0.1.",
        epilog=ARCHIVE_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter))
    sys.exit(run(parser.parse_args(argv)))
