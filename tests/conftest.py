"""Shared pytest configuration: headless Qt, the ``remote_data`` switch, common fixtures."""

import os

# Qt must never try to open a display, in CI or on a developer's machine.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

pytest_plugins = ["archive_fixtures"]


def pytest_addoption(parser):
    parser.addoption("--remote-data", action="store_true", default=False,
                     help="run tests that contact the real IRSA services")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--remote-data"):
        return
    skip = pytest.mark.skip(reason="needs the real IRSA (use --remote-data)")
    for item in items:
        if "remote_data" in item.keywords:
            item.add_marker(skip)
