"""The astroquery-style public API: names, keyword-only query_region, offline query payloads,
configuration validated when a query is made (not at import)."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import glue_spherex
from glue_spherex import Spherex, SpherexClass, conf
from glue_spherex.errors import SpherexInputError

ROOT = Path(__file__).resolve().parents[2]
M101 = (210.80227, 54.34895)
NOWHERE = "http://127.0.0.1:9"  # nothing listens: any request would fail


def test_public_names():
    import glue_spherex.irsa as irsa

    assert isinstance(Spherex, SpherexClass)
    assert irsa.Spherex is Spherex and irsa.SpherexClass is SpherexClass and irsa.conf is conf
    assert {"Spherex", "SpherexClass", "conf"} <= set(glue_spherex.__all__)
    assert "SpherexArchive" not in glue_spherex.__all__


def test_query_region_keyword_only():
    params = inspect.signature(SpherexClass.query_region).parameters
    names = list(params)
    assert names[:2] == ["self", "coordinates"]
    assert all(params[n].kind is inspect.Parameter.KEYWORD_ONLY for n in names[2:])
    with pytest.raises(TypeError):
        SpherexClass(NOWHERE).query_region(M101, "0.1deg")


def test_tap_payload_offline():
    payload = SpherexClass(NOWHERE).query_region(M101, bandpass="D2", collection="both",
                                                 time=(60832.5, 60833.0),
                                                 get_query_payload=True)
    assert payload["LANG"] == "ADQL" and payload["REQUEST"] == "doQuery"
    adql = payload["QUERY"]
    assert "CONTAINS(POINT('ICRS', 210.80227, 54.34895), p.poly)" in adql
    assert "'SPHEREx-D2'" in adql and "'SPHEREx-D3'" not in adql
    assert "'spherex_qr2', 'spherex_qr2_deep'" in adql
    assert "p.time_bounds_upper >= 60832.5 AND p.time_bounds_lower <= 60833.0" in adql


def test_sia_payload_offline():
    payload = SpherexClass(NOWHERE).query_region(M101, via="sia", release="all",
                                                 get_query_payload=True)
    assert payload["POS"][0].startswith("CIRCLE 210.80227 54.34895 ")
    assert set(payload["COLLECTION"]) == {"spherex_qr2", "spherex_qr3"}
    assert "TIME" not in payload


def test_payload_validates_input():
    with pytest.raises(SpherexInputError, match="bandpass"):
        Spherex.query_region(M101, bandpass="D7", get_query_payload=True)


def _run(code, url):
    env = dict(os.environ, GLUE_SPHEREX_ARCHIVE_URL=url,
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)


def test_malformed_env_url_fails_at_query_not_import():
    code = ("import glue_spherex.irsa, glue_spherex.irsa.core\n"
            "from glue_spherex import Spherex\n"
            "from glue_spherex.errors import SpherexInputError\n"
            "print('imported')\n"
            "Spherex.query_region((210.8, 54.3), get_query_payload=True)\n"
            "print('payload')\n"
            "try:\n"
            "    Spherex.query_region((210.8, 54.3))\n"
            "except SpherexInputError as exc:\n"
            "    print('error:', exc)\n")
    done = _run(code, "ftp://not-http")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["imported", "payload"]
    assert len(lines) == 3 and lines[2].startswith("error: archive URL")
    assert "GLUE_SPHEREX_ARCHIVE_URL" in lines[2] and "ftp://not-http" in lines[2]


def test_explicit_bad_argument_still_refused_at_construction():
    with pytest.raises(SpherexInputError, match="archive URL"):
        SpherexClass("ftp://x")
    with pytest.raises(SpherexInputError, match="timeout"):
        SpherexClass(NOWHERE, timeout=-1)


# -- docs/api.rst lists exactly the public names ---------------------------------------------

API_RST = ROOT / "docs" / "api.rst"
PACKAGES = ["glue_spherex", *sorted(
    f"glue_spherex.{p.name}" for p in (ROOT / "glue_spherex").iterdir()
    if (p / "__init__.py").exists())]


def _public_section():
    """``{package: {name: target}}`` from the 'Public names' section of docs/api.rst."""
    import re

    text = API_RST.read_text(encoding="utf-8")
    body = text.split("\nPublic names\n------------\n", 1)[1]
    body = re.split(r"\n[^\n]+\n-{3,}\n", body, maxsplit=1)[0]
    listed, package = {}, None
    for line in body.splitlines():
        head = re.fullmatch(r":mod:`([\w.]+)`", line.strip())
        if head and not line.startswith(" "):
            package = head.group(1)
            listed[package] = {}
        elif package and line.startswith("   "):
            for role in re.finditer(r":\w+:`([\w]+) <([\w.]+)>`|``(\w+)``", line):
                name = role.group(1) or role.group(3)
                listed[package][name] = role.group(2)
    return listed


def _documented():
    """Full names the reference part of docs/api.rst documents."""
    import importlib
    import re

    text = API_RST.read_text(encoding="utf-8")
    names = set()
    for m in re.finditer(r"^\.\. (?:py:)?(?:autoclass|autofunction|data|py:data):: ([\w.]+)",
                         text, re.M):
        names.add(m.group(1))
    for m in re.finditer(r"^\.\. automodule:: ([\w.]+)\n((?:   .*\n|             .*\n)*)",
                         text, re.M):
        module, options = m.group(1), m.group(2)
        members = re.search(r":members:(.*(?:\n {13}.*)*)", options)
        if members is None:
            continue
        listed = [n for n in re.split(r"[\s,]+", members.group(1)) if n]
        if not listed:
            listed = list(getattr(importlib.import_module(module), "__all__", []))
        names.update(f"{module}.{n}" for n in listed)
    return names


def test_api_rst_lists_exactly_the_public_names():
    import importlib

    listed = _public_section()
    exported = {p: list(importlib.import_module(p).__all__) for p in PACKAGES
                if hasattr(importlib.import_module(p), "__all__")}
    assert set(listed) == set(exported)
    for package, names in exported.items():
        assert set(listed[package]) == set(names), package


def test_api_rst_public_names_link_to_their_entries():
    import importlib

    documented = _documented()
    for package, names in _public_section().items():
        for name, target in names.items():
            if target is None:
                assert name == "__version__"
                continue
            module, _, attr = target.rpartition(".")
            obj = getattr(importlib.import_module(module), attr)
            assert obj is getattr(importlib.import_module(package), name), target
            assert target in documented, f"{target} has no entry in docs/api.rst"
