"""``python -m glue_spherex.local_archive --port N [fault flags]``."""

from ..cli.archive import main

main()
