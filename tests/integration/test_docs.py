"""The documentation builds without a warning, every example in it runs, and what it tells a
newcomer to type is accepted by the program.

* ``sphinx-build -W -b html`` succeeds (warnings are errors: broken references, missing
  images, malformed docstrings of the API reference);
* ``sphinx-build -b doctest`` runs every ``>>>`` example of the pages (against the local
  archive, see ``docs/_ext/doctest_env.py``) with no failure;
* every ``glue-spherex ...`` command shown in README.md and the pages parses with the real
  argument parser, and every Python block that cannot run offline (real IRSA) compiles;
* README's test command is the one ``.ci/run`` runs, and the images it shows exist.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx", reason="the docs need Sphinx: pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = sorted(DOCS.glob("*.rst"))

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def _sphinx(builder, out, doctrees, *extra):
    cmd = [sys.executable, "-m", "sphinx", "-b", builder, "-d", str(doctrees), "-q",
           *extra, str(DOCS), str(out)]
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=360)


@pytest.fixture(scope="module")
def doctrees(tmp_path_factory):
    return tmp_path_factory.mktemp("doctrees")


def test_html_builds_without_warnings(tmp_path, doctrees):
    run = _sphinx("html", tmp_path / "html", doctrees, "-W", "--keep-going")
    assert run.returncode == 0, run.stderr[-4000:]
    assert "WARNING" not in run.stderr, run.stderr[-4000:]
    html = {p.name for p in (tmp_path / "html").glob("*.html")}
    assert {f"{p.stem}.html" for p in PAGES} <= html
    # the generated --help texts made it into the page
    cli = (tmp_path / "html" / "cli.html").read_text()
    assert "glue-spherex fetch --help" in cli and "--quicklook PNG" in cli


def test_help_texts_state_the_defaults_of_the_code():
    """The --help texts (rendered on the command-line page) name the actual defaults."""
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        from spherex_docs import help_text
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    from glue_spherex.irsa.config import conf
    from glue_spherex.products.flags import DEFAULT_BAD_FLAGS

    spectrum = " ".join(help_text("spectrum").split())
    for name in DEFAULT_BAD_FLAGS:
        assert name in spectrum, name
    fetch = " ".join(help_text("fetch").split())
    assert f"(default conf.workers, {conf.workers})" in fetch
    assert f"conf.max_retries, {conf.max_retries})" in fetch


def test_every_example_runs(tmp_path, doctrees):
    run = _sphinx("doctest", tmp_path / "doctest", doctrees)
    report = (tmp_path / "doctest" / "output.txt").read_text()
    summary = report.split("Doctest summary", 1)[1]
    tests = int(re.search(r"^\s*(\d+) tests?$", summary, re.M).group(1))
    failures = int(re.search(r"^\s*(\d+) failures? in tests", summary, re.M).group(1))
    assert failures == 0, report[-6000:]
    assert re.search(r"^\s*0 failures in setup code", summary, re.M), summary
    assert re.search(r"^\s*0 failures in cleanup code", summary, re.M), summary
    assert run.returncode == 0, run.stderr[-4000:]
    # the examples are there: every page that shows >>> contributed tests
    assert tests >= 150, report


def _shell_commands(path):
    """``glue-spherex ...`` commands of the console examples: ``$ glue-spherex ...`` lines of
    the pages, and lines of README's ``console`` blocks; backslash continuations joined."""
    text = path.read_text()
    if path.suffix == ".md":
        text = "\n".join("$ " + line for block in re.findall(r"```console\n(.*?)```", text, re.S)
                         for line in block.splitlines())
    text = re.sub(r"\\\n\s*", " ", text)
    found = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("$ "):
            continue
        line = re.sub(r"^[A-Z_]+=\S+\s+", "", line[2:])  # VAR=value command ...
        if line.startswith("glue-spherex ") and "--help" not in line:
            found.append(line.split(" #")[0].strip())
    return found


def _documents():
    return [README, *PAGES]


@pytest.mark.parametrize("path", _documents(), ids=lambda p: p.name)
def test_shown_commands_are_accepted(path):
    from glue_spherex.cli.main import build_parser

    commands = _shell_commands(path)
    for command in commands:
        argv = shlex.split(command)[1:]
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"{path.name}: '{command}' is rejected by the parser (exit {exc.code})")
        assert callable(args.func)


def test_the_documents_show_the_commands_that_matter():
    shown = {p.name: _shell_commands(p) for p in _documents()}
    readme = " ".join(shown["README.md"])
    assert "glue-spherex demo" in readme
    assert "glue-spherex fetch M101 --size 0.1deg --bandpass D2 -o m101_d2.fits" in readme
    # each subcommand has at least one example somewhere
    every = " ".join(" ".join(v) for v in shown.values())
    for sub in ("query", "fetch", "demo", "archive", "spectrum"):
        assert f"glue-spherex {sub}" in every, sub


def _python_blocks(path):
    text = path.read_text()
    if path.suffix == ".md":
        return re.findall(r"```python\n(.*?)```", text, re.S)
    blocks = []
    for match in re.finditer(r"^\.\. code-block:: python\n\n((?:[ ]{3}.*\n|\n)+)", text, re.M):
        blocks.append("\n".join(line[3:] for line in match.group(1).splitlines()))
    return blocks


@pytest.mark.parametrize("path", _documents(), ids=lambda p: p.name)
def test_untested_python_blocks_compile(path):
    for block in _python_blocks(path):
        ast.parse(block, filename=str(path))


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    ci_commands = [line.strip() for line in ci.splitlines()
                   if line.strip() and not line.lstrip().startswith("#")]
    assert ci_commands[-1] == "python -m pytest"
    readme = README.read_text()
    section = readme.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    assert "glue-spherex demo" in section
    assert re.search(r"^python -m pytest$", section, re.M)
    assert '.[test]' in section and '-e ".[test]"' in ci


def test_readme_images_and_links_exist():
    readme = README.read_text()
    targets = re.findall(r"\]\(([^)#]+)\)", readme)
    local = [t for t in targets if not t.startswith(("http://", "https://"))]
    assert local, "README links no local files"
    for target in local:
        assert (ROOT / target).exists(), target
