"""Sphinx directives that generate reference text from the code at build time.

* ``.. command-help:: [SUBCOMMAND]`` -- ``glue-spherex [SUBCOMMAND] --help`` as printed by the
  command line's own argparse parser (:func:`glue_spherex.cli.main.build_parser`) on an 88-column
  terminal;
* ``.. flag-table::`` -- the FLAGS bits, :data:`glue_spherex.products.flags.FLAG_TABLE`, with the
  default bad set marked;
* ``.. fault-table::`` -- the local archive's injectable faults and their command-line flags.

Generating them means the documentation cannot drift from the options and tables the
program actually has.
"""

import os
import re

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

WIDTH = 88


def help_text(subcommand=None):
    """``glue-spherex [SUBCOMMAND] --help`` as printed on an 88-column terminal."""
    from glue_spherex.cli.main import build_parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(WIDTH)  # argparse reads the width from the environment
    try:
        parser = build_parser()
        if subcommand:
            parser = parser._subparsers._group_actions[0].choices[subcommand]
        return parser.format_help().rstrip() + "\n"
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def _table(directive, header, rows, widths):
    """A list-table built from plain strings (cells are parsed as reST)."""
    lines = [".. list-table::", "   :header-rows: 1", f"   :widths: {' '.join(map(str, widths))}",
             ""]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines.extend(f"     - {cell}" for cell in row[1:])
    node = nodes.container()
    directive.state.nested_parse(StringList(lines, source="generated"), 0, node)
    return node.children


class CommandHelp(SphinxDirective):
    optional_arguments = 1
    has_content = False

    def run(self):
        name = self.arguments[0] if self.arguments else None
        command = "glue-spherex" + (f" {name}" if name else "") + " --help"
        text = f"$ {command}\n" + help_text(name)
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


class FlagTable(SphinxDirective):
    has_content = False

    def run(self):
        from glue_spherex.products.flags import DEFAULT_BAD_FLAGS, FLAG_TABLE

        rows = [(str(bit), f"``{name}``", f"``{1 << bit}``", description,
                 "default bad" if name in DEFAULT_BAD_FLAGS else "")
                for bit, name, description in FLAG_TABLE]
        return _table(self, ("bit", "name", "value", "meaning (FLAGS header comment)", ""),
                      rows, (6, 18, 14, 50, 12))


class FaultTable(SphinxDirective):
    has_content = False

    def run(self):
        from glue_spherex.local_archive.faults import FAULT_EFFECTS, FAULT_KINDS

        rows = [(f"``{kind}``", f"``p_{kind}``", f"``--p-{kind}``",
                 re.sub(r"(--[a-z-]+)", r"``\1``", FAULT_EFFECTS[kind]))
                for kind in FAULT_KINDS]
        return _table(self, ("fault", "FaultConfig", "glue-spherex archive", "what the client sees"),
                      rows, (10, 14, 20, 56))


def setup(app):
    app.add_directive("command-help", CommandHelp)
    app.add_directive("flag-table", FlagTable)
    app.add_directive("fault-table", FaultTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
