"""The ``glue-spherex`` command line: one module per subcommand.

:func:`main` is the console-script entry point.
"""

from .program import main

__all__ = ["main"]
