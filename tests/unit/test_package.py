"""The package's top level: light to import, Qt-free, every advertised name present."""

import subprocess
import sys


def test_import_is_light_and_every_export_resolves():
    code = (
        "import sys, glue_spherex as g\n"
        "assert 'glue_spherex.products.spectral_image' not in sys.modules\n"
        "assert [n for n in g.__all__ if not hasattr(g, n)] == []\n"
        "assert not any(m.startswith(('qtpy', 'PySide6', 'glue_qt')) for m in sys.modules), "
        "'Qt imported outside glue_spherex.qt'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
