"""Sphinx configuration of the glue-spherex documentation.

Build:   sphinx-build -W -b html docs docs/_build/html
Doctest: sphinx-build -b doctest docs docs/_build/doctest   (run by tests/integration/test_docs.py)

Every ``>>>`` example is executed by the doctest builder. ``doctest_global_setup`` gives each
page a fresh working directory and the bundled local archive (synthetic data, 127.0.0.1) as
the archive URL, so the examples run offline and their outputs are deterministic.
"""

import os
import sys
from importlib import metadata

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "_ext"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

project = "glue-spherex"
author = "glue-spherex developers"
copyright = "2026, glue-spherex developers"
try:
    release = metadata.version("glue-spherex")
except metadata.PackageNotFoundError:  # building from a checkout that is not installed
    release = "dev"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    # docs/_ext/spherex_docs.py: --help texts and the flag and fault tables, generated from
    # the code at build time so that the pages cannot drift from it
    "spherex_docs",
]

exclude_patterns = ["_build", "scripts", "Thumbs.db", ".DS_Store"]
templates_path = []
root_doc = "index"
language = "en"
smartquotes = False  # keep "--option" in docstrings as typed (not an en dash)

# -- autodoc -------------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the numpydoc Parameters sections say it better
autodoc_default_options = {"show-inheritance": False}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

# -- doctest -------------------------------------------------------------------------------
doctest_global_setup = """
import doctest_env
archive = doctest_env.enter()
"""
doctest_global_cleanup = """
doctest_env.leave()
"""
doctest_default_flags = (
    __import__("doctest").ELLIPSIS
    | __import__("doctest").NORMALIZE_WHITESPACE
    | __import__("doctest").DONT_ACCEPT_TRUE_FOR_1
)
# ``.. code-block:: python`` blocks are for shell-free snippets that cannot run offline
# (the real IRSA); they are not tested. Everything else is a ``>>>`` doctest.
doctest_test_doctest_blocks = "default"

# -- HTML ----------------------------------------------------------------------------------
html_theme = "alabaster"
html_static_path = ["_static"]
html_title = f"glue-spherex {release}"
html_theme_options = {
    "description": "SPHEREx spectral-image cutouts for astropy and glue",
    "fixed_sidebar": False,
    "page_width": "1100px",
    "sidebar_width": "230px",
    "show_powered_by": False,
}
html_sidebars = {"**": ["about.html", "navigation.html", "searchbox.html"]}
