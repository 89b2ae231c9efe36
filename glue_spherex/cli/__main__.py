"""``python -m glue_spherex.cli``: the command line."""

import sys

from .program import main

sys.exit(main())
