"""Shared pytest configuration: headless Qt and the common fixtures.

Tests that need the real IRSA are marked ``remote_data`` and skipped unless pytest is given
``--remote-data`` (pytest-remotedata, as astroquery does; ``remote_data_strict`` in
``pyproject.toml`` makes any other test that tries to leave this machine fail).
"""

import os

# Qt must never try to open a display, in CI or on a developer's machine.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

pytest_plugins = ["archive_fixtures"]
