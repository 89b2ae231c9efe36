"""The ``glue-spherex`` command line: one module per subcommand (query, fetch, demo, archive,
spectrum), the parser and error handling in :mod:`.main`, shared arguments in :mod:`.common`.

:func:`main` is the console-script entry point. (It shadows the submodule name: import the
module's other names as ``from glue_spherex.cli.main import build_parser``.)
"""

import sys

try:
    from .main import main
except KeyboardInterrupt:  # Ctrl-C while the console script loads us: one line, as main() says
    sys.stderr.write("glue-spherex: interrupted\n")
    raise SystemExit(130) from None

__all__ = ["main"]
