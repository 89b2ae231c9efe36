"""Start the real ``glue`` window once on an X display (Xvfb in CI) and take a screenshot.

Usage: ``python .ci/glue_window_check.py OUT.png`` with ``DISPLAY`` set. Runs the ``glue``
command of this Python environment with Qt's xcb platform (what a desktop user gets), the
SPHEREx plugin loaded, and a startup action that saves a screenshot of the main window after
it has been shown for a moment and then quits. Exits 0 when the screenshot was written; else
prints glue's own messages (e.g. the missing ``libxcb-*`` library) and exits 1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

CONFIG = '''
import os
from glue_qt.config import startup_action


@startup_action("spherex-window-check")
def spherex_window_check(session, data_collection):
    from qtpy import QtCore

    app = session.application
    app.resize(1200, 800)

    def shoot():
        from glue_spherex.qt import IMPORT_LABEL
        menus = [a.text() for a in app._actions["data_importers"]]
        assert IMPORT_LABEL in menus, menus
        app.screenshot(os.environ["GLUE_SPHEREX_SHOT"])
        app.close()
        QtCore.QCoreApplication.quit()

    QtCore.QTimer.singleShot(3000, shoot)
'''


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "glue_window.png").resolve()
    if not os.environ.get("DISPLAY"):
        raise SystemExit("glue_window_check: DISPLAY is not set (start Xvfb first)")
    glue = Path(sys.executable).with_name("glue")
    with tempfile.TemporaryDirectory(prefix="glue-window-") as tmp:
        config = Path(tmp, "config.py")
        config.write_text(CONFIG)
        env = dict(os.environ, QT_QPA_PLATFORM="xcb", GLUE_SPHEREX_SHOT=str(out),
                   HOME=tmp)  # a fresh ~/.glue: every installed plugin enabled
        out.unlink(missing_ok=True)
        try:
            done = subprocess.run([str(glue), "--no-maximized", "-c", str(config),
                                   "--startup=spherex-window-check"], env=env,
                                  capture_output=True, text=True, timeout=180)
        except subprocess.TimeoutExpired:
            raise SystemExit("glue_window_check: glue did not close within 180 s") from None
    if not out.exists() or out.stat().st_size < 5000:
        sys.stderr.write(done.stdout[-2000:] + done.stderr[-4000:])
        raise SystemExit(f"glue_window_check: no screenshot from the glue window "
                         f"(exit {done.returncode}); its messages are above")
    print(f"glue window opened on {os.environ['DISPLAY']}; screenshot {out} "
          f"({out.stat().st_size // 1024} kB)")


if __name__ == "__main__":
    main()
