"""The ``glue-spherex`` command line: the top-level parser, :func:`main`, and the mapping of
errors to one line on stderr and an exit code.

Each subcommand lives in its own module, listed in :data:`SUBCOMMANDS`. Such a module has

- ``add_parser(subparsers)``, which creates its parser with
  ``subparsers.add_parser(NAME, help=..., description=...)`` and sets
  ``parser.set_defaults(func=run)`` where ``run(args) -> int`` returns the exit code;
- only cheap imports at module level (heavy ones inside ``run``): ``--help`` imports every
  subcommand module and builds every parser.

``run`` raises :class:`~glue_spherex.errors.SpherexError` (or lets requests/pyvo/OS errors
through) for anything the user should see; :func:`main` turns those into one line
``glue-spherex: error: ...`` on stderr and the documented exit code -- never a traceback.
To add a subcommand, write its module and add it to :data:`SUBCOMMANDS`. Shared arguments
and helpers are in :mod:`glue_spherex.cli.common`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from ..errors import SpherexError, SpherexFormatError, SpherexInputError, SpherexServiceError
from . import archive, catalog, demo, fetch, query, spectrum
from .common import (
    EPILOG,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_SERVICE,
    EXIT_USAGE,
    cli_words,
    ignore_interrupts,
    interrupts_deferred,
    one_line,
    run_as_program,
)

__all__ = ["main", "build_parser", "SUBCOMMANDS"]

#: The subcommand modules, in the order they appear in ``--help``.
SUBCOMMANDS = (query, fetch, spectrum, catalog, demo, archive)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``glue-spherex: error: ...`` and exit code 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"glue-spherex: error: {one_line(message)} "
                              f"(see '{self.prog} --help')\n")


def build_parser():
    """The ``glue-spherex`` argparse parser with every subcommand of :data:`SUBCOMMANDS`."""
    parser = _Parser(
        prog="glue-spherex",
        description="Query, fetch and inspect NASA SPHEREx spectral-image cutouts.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(subparsers)
    return parser


def _version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("glue-spherex")
    except PackageNotFoundError:
        return "dev"


#: Options taking one value that may start with '-' (argparse would take ``-3arcsec`` for an
#: option and say "expected one argument"); they are passed on as ``--radius=-3arcsec``.
_VALUE_OPTIONS = ("--size", "--radius", "--annulus", "--ra", "--dec", "--port", "--workers", "--threads", "--max-requests",
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
    run_as_program(argv is None)  # the process is ours: its signal handling too
    try:
        code = _main(argv)
    except KeyboardInterrupt:  # e.g. while the modules are still being imported
        ignore_interrupts()
        print("glue-spherex: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    ignore_interrupts()  # decided: another Ctrl-C must not turn the exit into a traceback
    sys.exit(code)


def _main(argv):
    parser = build_parser()
    args = parser.parse_args(_join_values(argv))
    with interrupts_deferred():  # the heavy imports every subcommand makes
        import astropy.io.fits  # noqa: F401
        import astropy.table  # noqa: F401
    try:
        return args.func(args)
    except KeyboardInterrupt:
        ignore_interrupts()
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
