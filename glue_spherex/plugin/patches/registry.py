"""The list of changes glue-spherex makes to glue-core and glue-qt, and their switch.

A :class:`Patch` records one change: what in glue it changes, why, for which versions of
which package, how it is verified and which fix in glue makes it unnecessary. Its
``apply`` function makes the change and returns the function that undoes it.
:func:`apply` applies the registered patches of a package whose installed version the
patch is for (others are logged and left out); :func:`undo` takes them back, last
applied first.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import logging
from collections.abc import Callable
from dataclasses import dataclass

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

__all__ = ["Patch", "register", "unregister", "registered", "apply", "undo", "applied", "is_applied",
           "supported", "installed_version", "without", "replace_attribute"]

log = logging.getLogger(__name__)

#: The module whose ``__version__`` names each package's version.
_MODULES = {"glue-core": "glue", "glue-qt": "glue_qt"}


@dataclass(frozen=True)
class Patch:
    """One change to glue (see :mod:`glue_spherex.plugin.patches` for the list)."""

    name: str
    #: the distribution changed: ``"glue-core"`` or ``"glue-qt"``
    package: str
    #: the versions of ``package`` it is for (a PEP 440 specifier, e.g. ``">=1.21,<2"``)
    versions: str
    #: what in glue is changed
    changes: str
    #: why: the cost it removes (figures in the docs, "Changes to glue")
    why: str
    #: the tests that check it
    verified_by: str
    #: what glue would have to do for the patch to be dropped
    drop_when: str
    #: makes the change; returns the function that undoes it
    apply: Callable[[], Callable[[], None]]


_patches: dict[str, Patch] = {}
_undo: dict[str, Callable[[], None]] = {}  # applied patches, in the order applied


def register(patch):
    """Add ``patch`` to the list (replacing one of the same name); returns it."""
    _patches[patch.name] = patch
    return patch


def unregister(name):
    """Undo the patch ``name`` if applied and take it off the list."""
    undo(names={name})
    _patches.pop(name, None)


def registered(package=None):
    """The registered patches (of ``package`` only, if given), in registration order."""
    return [p for p in _patches.values() if package is None or p.package == package]


def installed_version(package):
    """The installed version of ``package`` as a string, or None if it is not installed."""
    module = _MODULES.get(package)
    if module is not None:
        try:
            version = getattr(importlib.import_module(module), "__version__", None)
        except ImportError:
            return None
        if version:
            return str(version)
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def supported(name):
    """Whether the installed version of the package the patch ``name`` changes is one it is
    for (False for an unknown name or a package that is not installed)."""
    patch = _patches.get(name)
    if patch is None:
        return False
    version = installed_version(patch.package)
    if version is None:
        return False
    try:
        return SpecifierSet(patch.versions).contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


def apply(package=None, names=None):
    """Apply the registered patches (of ``package``, or named in ``names``) that are not
    applied yet and are for the installed version. Returns the names applied now."""
    done = []
    for patch in registered(package):
        if (names is not None and patch.name not in names) or patch.name in _undo:
            continue
        if not supported(patch.name):
            log.info("glue-spherex: not applying %r: written for %s %s, installed %s",
                     patch.name, patch.package, patch.versions,
                     installed_version(patch.package))
            continue
        _undo[patch.name] = patch.apply()
        done.append(patch.name)
    return done


def undo(package=None, names=None):
    """Undo the applied patches (of ``package``, or named in ``names``), last applied first.
    Returns the names undone."""
    done = []
    for name in reversed(list(_undo)):
        patch = _patches[name]
        if (package is not None and patch.package != package) or \
                (names is not None and name not in names):
            continue
        _undo.pop(name)()
        done.append(name)
    return done


def applied():
    """Names of the patches applied now, in the order applied."""
    return list(_undo)


def is_applied(name):
    return name in _undo


@contextlib.contextmanager
def without(*names):
    """glue's own behaviour inside the block: the named patches (all if none are named)
    are undone, and re-applied afterwards if they were applied."""
    undone = undo(names=set(names) if names else None)
    try:
        yield undone
    finally:
        for name in reversed(undone):
            apply(names={name})


def replace_attribute(owner, name, value):
    """Set ``owner.name = value``; returns the function that restores what was there.

    The restore leaves alone an attribute someone else has replaced since (it logs that),
    so undoing never throws away another plugin's change.
    """
    missing = object()
    original = owner.__dict__.get(name, missing) if isinstance(owner, type) else \
        getattr(owner, name, missing)
    if isinstance(owner, type) and original is missing:
        raise AttributeError(f"{owner.__name__} has no attribute {name!r} of its own")
    setattr(owner, name, value)

    def restore():
        current = owner.__dict__.get(name) if isinstance(owner, type) else \
            getattr(owner, name, None)
        if current is not value:
            log.warning("glue-spherex: %s.%s was replaced by other code; leaving it",
                        getattr(owner, "__name__", owner), name)
            return
        setattr(owner, name, original)

    return restore
