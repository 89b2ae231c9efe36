"""The Qt plugin's menu entries come and go with its switch in glue's Plugin Manager.

Each case starts a fresh Python process with its own HOME (so its own ``~/.glue/plugins.cfg``,
the file the Plugin Manager edits), loads plugins the way the ``glue`` command does, builds a
GlueApplication and lists the menu entries.
"""

import json
import os
import subprocess
import sys

import pytest

from glue_spherex.qt import (
    COMPARE_LABEL,
    COMPARE_SELECTED_LABEL,
    EXPORT_LABEL,
    EXPORT_SELECTED_LABEL,
    IMPORT_LABEL,
)

pytest.importorskip("glue_qt")

SCRIPT = r"""
import json, os
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from glue.main import load_plugins, list_loaded_plugins
from glue_qt.utils import get_qapp
get_qapp()
load_plugins(require_qt_plugins=False)          # what glue_qt.main.start_glue does first
from glue_qt.app import GlueApplication
app = GlueApplication()
out = dict(
    importers=[a.text() for a in app._actions["data_importers"]],
    plugins=[a.text() for a in app._actions["plugins"]],
    layer_actions=list(app._layer_widget._actions),
    loaded=list_loaded_plugins(),
)
print("RESULT" + json.dumps(out))
"""


def run_glue(home, switch):
    cfg_dir = home / ".glue"
    cfg_dir.mkdir(parents=True)
    if switch is not None:
        (cfg_dir / "plugins.cfg").write_text(f"[plugins]\nglue_spherex_qt = {switch}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLUE", "PYTEST"))}
    env.update(HOME=str(home), QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(s for s in proc.stdout.splitlines() if s.startswith("RESULT"))
    return json.loads(line[len("RESULT"):]), (cfg_dir / "plugins.cfg").read_text()


@pytest.mark.slow
def test_menu_entries_present_when_enabled(tmp_path):
    menus, cfg = run_glue(tmp_path, None)
    assert IMPORT_LABEL in menus["importers"]
    assert EXPORT_LABEL in menus["plugins"] and COMPARE_LABEL in menus["plugins"]
    assert EXPORT_SELECTED_LABEL in menus["layer_actions"]
    assert COMPARE_SELECTED_LABEL in menus["layer_actions"]
    assert "glue_spherex.qt" in menus["loaded"]
    # glue recorded the new plugin as enabled, so the Plugin Manager lists it
    assert "glue_spherex_qt = 1" in cfg


@pytest.mark.slow
def test_menu_entries_absent_when_switched_off(tmp_path):
    menus, cfg = run_glue(tmp_path, 0)
    assert IMPORT_LABEL not in menus["importers"]
    assert EXPORT_LABEL not in menus["plugins"] and COMPARE_LABEL not in menus["plugins"]
    assert EXPORT_SELECTED_LABEL not in menus["layer_actions"]
    assert COMPARE_SELECTED_LABEL not in menus["layer_actions"]
    assert "glue_spherex.qt" not in menus["loaded"]
    assert "glue_spherex_qt = 0" in cfg
