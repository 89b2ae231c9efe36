"""``python -m glue_spherex.archive --port N [fault flags]``."""

from .command import main

main()
