"""Link every SPHEREx cutout of a session by sky position, in linear time.

:func:`link_cutouts` joins each cutout to one *reference* cutout (a star: N-1 links for N
cutouts) with a :class:`CutoutLink`: identity links between RA/Dec and the per-pixel
quantities (flux, variance, flags, zodi, wavelength, bandwidth), plus pixel x and y through
both WCSs. So a region drawn on any cutout selects the same sky in all of them, a condition
on ``wavelength`` selects each cutout's own pixels, and the image viewer can reproject any
cutout onto any other. glue's WCS autolinker would suggest N(N-1)/2 links and a dialog;
the 'SPHEREx sky' autolinker (:func:`spherex_autolink`, registered by :func:`setup
<glue_spherex.plugin.setup>`) runs :func:`link_cutouts` instead. The graph stays cheap
through :mod:`glue_spherex.plugin.linkmanager`; what users see is in ``docs/glue.rst``.
"""

from __future__ import annotations

import numpy as np
from glue.config import autolinker, settings
from glue.core.component_link import ComponentLink
from glue.core.hub import HubListener
from glue.core.link_helpers import LinkCollection
from glue.core.message import DataCollectionDeleteMessage

from ..errors import SpherexInputError
from .datasets import SPHEREX_COMPONENTS, is_spherex_data
from .linkmanager import use_indexed_link_manager

__all__ = ["link_cutouts", "CutoutLink", "reference_cutout", "sky_component_ids",
           "spherex_autolink",
           "AUTOLINKER_LABEL", "LINKED_COMPONENTS"]

AUTOLINKER_LABEL = "SPHEREx sky"
#: Main components joined by identity links (in addition to RA and Dec).
LINKED_COMPONENTS = SPHEREX_COMPONENTS


def sky_component_ids(data):
    """``(ra, dec)`` world component IDs of a dataset with a 2-D celestial WCS."""
    wcs = getattr(data.coords, "wcs", None)
    if wcs is None or data.ndim != 2 or wcs.lng < 0 or wcs.lat < 0:
        raise SpherexInputError(f"{data.label!r} has no 2-D celestial WCS")
    world = data.world_component_ids  # numpy order: world axis k is entry ndim - 1 - k
    return world[data.ndim - 1 - wcs.lng], world[data.ndim - 1 - wcs.lat]


def _linked_cids(data):
    ra, dec = sky_component_ids(data)
    own = {cid.label: cid for cid in data.main_components}
    try:
        return [ra, dec] + [own[name] for name in LINKED_COMPONENTS]
    except KeyError as exc:
        raise SpherexInputError(f"{data.label!r} has no {exc.args[0]!r} component") from None


class _PixelMap:
    """Pixel (x, y) of one cutout -> pixel (x, y) of another, through the sky (exact WCS).

    glue evaluates the x and the y output of a two-output link separately, with the same
    inputs, one right after the other; the last result is kept so the second costs nothing.
    """

    _last = None  # (pixel map, x, y, result), shared by all maps

    def __init__(self, source, target):
        self.source = source
        self.target = target

    def __call__(self, x, y):
        last = _PixelMap._last
        if last is not None and last[0] is self and np.shape(x) == np.shape(last[1]) \
                and np.array_equal(x, last[1], equal_nan=True) \
                and np.array_equal(y, last[2], equal_nan=True):
            return last[3]
        result = self.target.world_to_pixel_values(*self.source.pixel_to_world_values(x, y))
        _PixelMap._last = (self, x, y, result)
        return result


class _Output:
    """One output (0: x, 1: y) of a :class:`_PixelMap`, as a glue link function."""

    def __init__(self, pixel_map, index):
        self.pixel_map = pixel_map
        self.index = index
        self.__name__ = "sky_to_pixel_" + "xy"[index]

    def __call__(self, x, y):
        return self.pixel_map(x, y)[self.index]


def _pixel_links(data1, data2):
    """x and y of each dataset's pixels from the other's, through the two WCSs."""
    links = []
    for a, b in ((data1, data2), (data2, data1)):
        pixel_map = _PixelMap(a.coords, b.coords)
        inputs = [a.pixel_component_ids[1], a.pixel_component_ids[0]]  # x, y
        for index, output in enumerate((b.pixel_component_ids[1], b.pixel_component_ids[0])):
            links.append(ComponentLink(inputs, output, using=_Output(pixel_map, index),
                                       input_names=["x", "y"], output_name="xy"[index]))
    return links


class CutoutLink(LinkCollection):
    """Two SPHEREx cutouts share the sky and their per-pixel quantities.

    * identity links between ``Right Ascension``, ``Declination`` and each of
      :data:`LINKED_COMPONENTS` of ``data1`` and the same components of ``data2``;
    * each dataset's pixel x and y from the other's, through both WCSs (with SIP): the
      shortest chain for pixel selections and image reprojection, one WCS round trip.
    """

    display = "SPHEREx cutouts: same sky and quantities"
    description = ("Identifies the right ascension, declination, flux, variance, flags, "
                   "zodi, wavelength and bandwidth of two SPHEREx cutouts, and maps their "
                   "pixels onto each other through their WCSs, so that selections made on "
                   "one apply to the other and each can be shown in the other's image "
                   "viewer.")
    labels1 = [f"{name}_1" for name in ("ra", "dec") + LINKED_COMPONENTS]
    labels2 = [f"{name}_2" for name in ("ra", "dec") + LINKED_COMPONENTS]

    def __init__(self, data1=None, data2=None, cids1=None, cids2=None):
        if cids1 is None:
            cids1 = _linked_cids(data1)
        if cids2 is None:
            cids2 = _linked_cids(data2)
        if len(cids1) != len(cids2):
            raise SpherexInputError("a CutoutLink needs as many components on each side")
        data1 = data1 if data1 is not None else cids1[0].parent
        data2 = data2 if data2 is not None else cids2[0].parent
        sky_component_ids(data1), sky_component_ids(data2)  # both need a celestial WCS
        super().__init__(data1=data1, data2=data2, cids1=list(cids1), cids2=list(cids2))
        self._links = [ComponentLink([a], b) for a, b in zip(self.cids1, self.cids2)]
        self._links += _pixel_links(data1, data2)


def _star_links(data_collection):
    """``{reference: set of datasets linked to it}`` from the CutoutLinks present."""
    star = {}
    for link in data_collection.external_links:
        if isinstance(link, CutoutLink):
            star.setdefault(link.data1, set()).add(link.data2)
    return star


def reference_cutout(data_collection):
    """The cutout the others are (or will be) linked to, or None if there is no cutout.

    It is the reference of the existing links if any (the one with most cutouts linked),
    else the first SPHEREx dataset of the collection.
    """
    members = set(data_collection.data)
    star = {ref: linked for ref, linked in _star_links(data_collection).items()
            if ref in members}
    if star:
        return max(star, key=lambda ref: len(star[ref]))
    return next((d for d in data_collection if is_spherex_data(d)), None)


def link_cutouts(data_collection, datasets=None):
    """Link SPHEREx cutouts by sky position (and same-named quantities) to one reference.

    Parameters
    ----------
    data_collection : glue.core.DataCollection
        The session's data collection.
    datasets : list of Data, optional
        The cutouts to link (all must be SPHEREx datasets in ``data_collection``); by
        default every SPHEREx dataset of the collection.

    Returns
    -------
    list of CutoutLink
        The links added (none for cutouts that were already linked).  Calling it again is
        cheap and adds nothing.
    """
    members = set(data_collection.data)
    if datasets is None:
        datasets = [d for d in data_collection if is_spherex_data(d)]
    else:
        datasets = list(datasets)
        for d in datasets:
            if not is_spherex_data(d):
                raise SpherexInputError(
                    f"{getattr(d, 'label', d)!r} is not a SPHEREx cutout; link_cutouts() "
                    "accepts datasets made by the SPHEREx reader only")
            if d not in members:
                raise SpherexInputError(f"{d.label!r} is not in the data collection")
    if not datasets:
        return []

    use_indexed_link_manager(data_collection)
    _Relinker.watch(data_collection)
    reference = reference_cutout(data_collection)
    linked = _star_links(data_collection).get(reference, set())
    ref_cids = _linked_cids(reference)
    new = []
    for d in datasets:
        if d is reference or d in linked:
            continue
        new.append(CutoutLink(reference, d, cids1=ref_cids))
        linked.add(d)
    if new:
        data_collection.add_link(new)
    return new


class _Relinker(HubListener):
    """Re-links the cutouts to a new reference when the reference is removed."""

    @classmethod
    def watch(cls, data_collection):
        if getattr(data_collection, "_spherex_relinker", None) is None:
            data_collection._spherex_relinker = cls(data_collection)

    def __init__(self, data_collection):
        self._dc = data_collection
        data_collection.hub.subscribe(self, DataCollectionDeleteMessage, handler=self._removed,
                                      filter=lambda msg: msg.sender is data_collection)

    def _removed(self, msg):
        if is_spherex_data(msg.data) and any(is_spherex_data(d) for d in self._dc):
            # the link manager has dropped the removed dataset's links by now
            link_cutouts(self._dc)


def spherex_autolink(data_collection):
    """The 'SPHEREx sky' autolinker: link new cutouts right away, suggest nothing."""
    if settings.AUTOLINK.get(AUTOLINKER_LABEL) == "always_ignore":
        return []
    link_cutouts(data_collection)
    return []


def register_autolinker():
    """Add the 'SPHEREx sky' autolinker to glue's registry (once)."""
    if not any(label == AUTOLINKER_LABEL for label, _ in autolinker.members):
        autolinker.add(AUTOLINKER_LABEL, spherex_autolink)
