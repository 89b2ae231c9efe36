"""``glue-spherex query``: list the SPHEREx images covering a target, or write them to a
table file (.ecsv, .csv, .fits, .vot)."""

from __future__ import annotations

import argparse
import os

from ..errors import SpherexInputError
from .common import (
    EPILOG,
    EXIT_OK,
    add_target_arguments,
    check_outputs,
    describe,
    query_archive,
    target_from_args,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "query", help="list the images covering a target",
        description="List the SPHEREx images that contain a target, sorted by time.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_target_arguments(parser)
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write the table (format from the extension: .ecsv, .csv, "
                             ".fits, .vot); default: print it")
    parser.set_defaults(func=run)


def run(args):
    coord = target_from_args(args)
    if args.output:
        _table_format(args.output)
        check_outputs(args.output)
    table = query_archive(args, coord)
    print(f"{describe(args, coord)}: {len(table)} images")
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
