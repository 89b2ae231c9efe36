"""Layer boundaries of ``glue_spherex``, checked by parsing every module (no imports run).

* no module imports an ``_underscored`` name from another glue_spherex module, nor reaches
  one through ``module._name``;
* ``glue``/``glue_qt``/``glue_jupyter`` are imported only under ``plugin/`` and ``qt/``;
* ``qtpy``/``PySide6``/``PyQt5``/``PyQt6``/``glue_qt`` only under ``qt/``;
* ``local_archive`` (the server) is imported by no other subpackage except ``cli/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import glue_spherex

PKG_DIR = Path(glue_spherex.__file__).resolve().parent
PKG = "glue_spherex"


def _module_name(path):
    rel = path.relative_to(PKG_DIR.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules():
    for path in sorted(PKG_DIR.rglob("*.py")):
        name = _module_name(path)
        yield name, path.name == "__init__.py", ast.parse(path.read_text(), str(path))


def _absolute(module, is_package, node):
    """The absolute module name an ``ImportFrom`` node refers to."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module, is_package, tree):
    """Yield (imported module, imported name or None, node) for every import in *tree*."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, is_package, node)
            for alias in node.names:
                yield target, alias.name, node


def _subpackage(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _is_ours(target):
    return target == PKG or target.startswith(PKG + ".")


def _is_dunder(name):
    return name.startswith("__") and name.endswith("__")


def _underscored_imports():
    bad = []
    for module, is_package, tree in _modules():
        own = {}  # local name -> our module it is bound to
        for target, name, node in _imports(module, is_package, tree):
            if not _is_ours(target):
                continue
            if name is None:
                for alias in node.names:
                    if alias.name == target:
                        own[(alias.asname or alias.name)] = target
                continue
            if name.startswith("_") and not _is_dunder(name) and target != module:
                bad.append(f"{module}:{node.lineno} from {target} import {name}")
            # ``from pkg import mod`` binds a module
            own[name if True else name] = f"{target}.{name}"
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.attr.startswith("_") and not _is_dunder(node.attr)
                    and node.value.id in own and own[node.value.id] != module):
                bad.append(f"{module}:{node.lineno} {node.value.id}.{node.attr}")
    return bad


def _violations(allowed_subpackages, forbidden_roots):
    bad = []
    for module, is_package, tree in _modules():
        if _subpackage(module) in allowed_subpackages:
            continue
        for target, _name, node in _imports(module, is_package, tree):
            if target.split(".")[0] in forbidden_roots:
                bad.append(f"{module}:{node.lineno} imports {target}")
    return bad


def test_no_underscored_cross_module_import():
    assert _underscored_imports() == []


def test_glue_only_in_plugin_and_qt():
    assert _violations({"plugin", "qt"}, {"glue", "glue_qt", "glue_jupyter"}) == []


def test_qt_only_in_qt():
    assert _violations({"qt"}, {"qtpy", "PySide6", "PySide2", "PyQt5", "PyQt6", "glue_qt"}) == []


def test_local_archive_only_from_cli():
    bad = []
    for module, is_package, tree in _modules():
        if _subpackage(module) in {"local_archive", "cli"}:
            continue
        for target, name, node in _imports(module, is_package, tree):
            full = target if name is None else f"{target}.{name}"
            if target.startswith(PKG + ".local_archive") or full == PKG + ".local_archive":
                bad.append(f"{module}:{node.lineno} imports {full}")
    assert bad == []


def test_the_checker_sees_imports():
    """Guard against a checker that passes because it parses nothing."""
    found = [t for m, p, tree in _modules() for t, _n, _node in _imports(m, p, tree)
             if t.startswith(PKG + ".products")]
    assert len(found) > 10
