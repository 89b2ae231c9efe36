"""README.md runs as shown, offline, as a newcomer would type it.

The demo command, then the spectrum command on the demo's file, both verbatim from README.md,
in a fresh directory; then the Python block with the bundled archive started the way README
says (``glue-spherex archive --port N`` and ``GLUE_SPHEREX_ARCHIVE_URL``). The command that
needs the real IRSA (``glue-spherex fetch M101 …``) is only parsed (``tests/integration/test_docs.py``).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from astropy.table import Table

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _command(prefix):
    """The one README console line starting with ``prefix``."""
    lines = [ln.strip() for block in _blocks("console") for ln in block.splitlines()
             if ln.strip().startswith(prefix)]
    assert len(lines) == 1, f"README should show exactly one '{prefix}' command: {lines}"
    return shlex.split(lines[0])


def _program(name):
    """The installed console script (what a user's shell finds), next to this Python."""
    path = Path(sys.executable).with_name(name)
    return str(path) if path.exists() else shutil.which(name)


def _run(argv, cwd, **kw):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env.pop("GLUE_SPHEREX_ARCHIVE_URL", None)
    env.update(kw.pop("env", {}))
    return subprocess.run([_program(argv[0]), *argv[1:]], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=240, **kw)


def test_demo_then_spectrum_command_as_shown(tmp_path):
    demo = _run(_command("glue-spherex demo"), tmp_path)
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert "91 of 91 cutouts" in demo.stdout
    spectrum = _command("glue-spherex spectrum")
    assert Path(tmp_path, spectrum[2]).exists(), "README's spectrum command names the demo's file"
    run = _run(spectrum, tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    out = spectrum[spectrum.index("-o") + 1]
    table = Table.read(tmp_path / out)
    assert len(table) >= 80 and (tmp_path / spectrum[spectrum.index("--plot") + 1]).stat().st_size


def test_python_block_runs_against_the_archive_started_as_readme_says(tmp_path):
    (block,) = _blocks("python")
    archive_cmd = re.search(r"`(glue-spherex archive --port \d+)`", README)
    assert archive_cmd, "README says how to start the bundled archive for the Python example"
    argv = shlex.split(archive_cmd.group(1))
    with socket.socket() as s:  # README's port may be taken on this machine: use a free one
        s.bind(("127.0.0.1", 0))
        argv[-1] = str(s.getsockname()[1])
    env = dict(os.environ)
    env.pop("GLUE_SPHEREX_ARCHIVE_URL", None)
    server = subprocess.Popen([_program("glue-spherex"), *argv[1:]], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = server.stdout.readline().strip()
        assert url == f"http://127.0.0.1:{argv[-1]}", server.stderr.read()[-2000:]
        run = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True,
                             text=True, timeout=240,
                             env=dict(env, GLUE_SPHEREX_ARCHIVE_URL=url))
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "wavelength" in run.stdout and "flux" in run.stdout
    assert (tmp_path / "m101_d2.fits").stat().st_size > 10_000_000
