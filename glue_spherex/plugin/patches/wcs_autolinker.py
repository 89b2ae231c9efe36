"""Patch: glue's 'Astronomy WCS' autolinker sees a collection's SPHEREx cutouts as one image.

glue's autolinker suggests a WCS link for every pair of images: N(N-1)/2 links for N
cutouts, computed on every data addition, and a modal dialog. The wrapped autolinker is
given the collection's non-SPHEREx datasets plus the reference cutout (the one the others
are linked to), so another WCS image loaded with the cutouts is offered one link to the
reference, which links it to all of them. A collection without SPHEREx data is passed on
unchanged.

glue registers that autolinker when ``glue.plugins.wcs_autolinking.wcs_autolinking`` is
first imported -- when glue loads its ``wcs_autolinking`` plugin, unless the user switched
it off, or when other code imports ``WCSLink``. glue-spherex does not import it: the patch
wraps the autolinker if it is registered already, and wraps it when it is registered later.
"""

from __future__ import annotations

import functools

from glue.config import autolinker

from ..datasets import is_spherex_data
from ..links import reference_cutout
from .registry import Patch

__all__ = ["PATCH", "LABEL"]

LABEL = "Astronomy WCS"


class _WithoutCutouts:
    """What the WCS autolinker sees: non-SPHEREx datasets plus the reference cutout."""

    def __init__(self, data_collection):
        self._dc = data_collection
        reference = reference_cutout(data_collection)
        self._data = [d for d in data_collection if not is_spherex_data(d) or d is reference]

    def __iter__(self):
        return iter(self._data)

    def __len__(self):
        return len(self._data)

    @property
    def data(self):
        return list(self._data)

    def __getattr__(self, name):
        return getattr(self._dc, name)


def _wrap(function):
    @functools.wraps(function)
    def without_cutouts(data_collection):
        if not any(is_spherex_data(d) for d in data_collection):
            return function(data_collection)
        return function(_WithoutCutouts(data_collection))

    without_cutouts._spherex_wrapped = function
    return without_cutouts


def _wrap_registered():
    members = autolinker.members
    for i, (label, function) in enumerate(members):
        if label == LABEL and getattr(function, "_spherex_wrapped", None) is None:
            members[i] = (label, _wrap(function))


def _unwrap_registered():
    members = autolinker.members
    for i, (label, function) in enumerate(members):
        original = getattr(function, "_spherex_wrapped", None)
        if original is not None:
            members[i] = (label, original)


def _apply():
    glue_add = autolinker.add  # the registry's own (bound) method

    def add(label, function):
        glue_add(label, function)
        if label == LABEL:
            _wrap_registered()

    autolinker.add = add  # an instance attribute: glue's decorator calls self.add
    _wrap_registered()

    def undo():
        if autolinker.__dict__.get("add") is add:
            del autolinker.add
        _unwrap_registered()

    return undo


PATCH = Patch(
    name="wcs-autolinker",
    package="glue-core",
    versions=">=1.21,<2",
    changes="the 'Astronomy WCS' autolinker (glue.config.autolinker) is given the non-SPHEREx "
            "datasets plus the reference cutout, whenever it is registered",
    why="it suggests N(N-1)/2 links (244,650 for 700 images, 454 s and 964 MB) on every data "
        "addition, and opens a modal dialog",
    verified_by="tests/glue/test_plugin_links.py (no pairwise suggestions; another WCS image is "
                "offered one link), tests/qt/test_glue_entry.py (wrapped in either order, not "
                "imported when switched off)",
    drop_when="glue's WCS autolinker links a star instead of all pairs",
    apply=_apply,
)
