"""A live SPHEREx spectrum in glue: the SED inside a subset, from every cutout in the session.

:class:`LiveSpectrum` follows one subset group: it turns the group's region into a sky circle,
runs :func:`glue_spherex.analysis.spectrum.measure_frames` on every SPHEREx cutout (each on its
own pixel grid, so linear in the number of cutouts and needing no links) and keeps the result
as a table dataset ``"SPHEREx spectrum: <subset label>"``. Moving the region recomputes it --
the N update messages of one move collapse into one computation, optionally run off the GUI
thread, latest region wins. Selecting spectrum points gives :attr:`LiveSpectrum.selected_cutouts`
and a companion subset ``"SPHEREx selection: <subset label>"`` that shows the aperture on
exactly those cutouts. Nothing here imports Qt; the user's view is in ``docs/glue.rst``.
"""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from glue.core.exceptions import IncompatibleAttribute
from glue.core.hub import HubListener
from glue.core.message import (
    DataCollectionAddMessage,
    DataCollectionDeleteMessage,
    NumericalDataChangedMessage,
    SubsetCreateMessage,
    SubsetDeleteMessage,
    SubsetUpdateMessage,
)
from glue.core.subset import SubsetState

from ..analysis.spectrum import Frame, measure_frames
from ..errors import SpherexInputError
from ..products.flags import DEFAULT_BAD_FLAGS, DEFAULT_BITS, mask_from_names
from .datasets import cutouts_in, is_spherex_data
from .linkmanager import adding_unlinked

__all__ = [
    "SkyCircle",
    "LiveSpectrum",
    "CutoutSelectionSubsetState",
    "frame_from_data",
    "sky_circle_of",
    "spectrum_label",
    "selection_label",
    "live_spectra",
]

SPECTRUM_PREFIX = "SPHEREx spectrum: "
SELECTION_PREFIX = "SPHEREx selection: "


def spectrum_label(subset_label):
    return SPECTRUM_PREFIX + str(subset_label)


def selection_label(subset_label):
    return SELECTION_PREFIX + str(subset_label)


@dataclass(frozen=True)
class SkyCircle:
    """A circle on the sky: centre (deg, ICRS) and radius (arcsec)."""

    ra: float
    dec: float
    radius_arcsec: float

    @property
    def coord(self):
        return SkyCoord(self.ra * u.deg, self.dec * u.deg, frame="icrs")

    @property
    def radius(self):
        return self.radius_arcsec * u.arcsec

    def key(self):
        """Rounded to 1 milliarcsec: equal keys mean the same spectrum."""
        return (round(self.ra * 3.6e6), round(self.dec * 3.6e6), round(self.radius_arcsec * 1e3))


# --- SPHEREx cutouts in a session ----------------------------------------------------------

def _component(data, name):
    # Look among the dataset's own components: data[name] would search every component
    # derivable through the links too, which grows with the number of linked cutouts.
    for cid in data.main_components:
        if cid.label == name:
            return np.asarray(data.get_component(cid).data)  # no copy (float32, mmap)
    return None


def _celestial(data):
    coords = data.coords
    return getattr(coords, "celestial", coords)


def frame_from_data(data, bad_flags=DEFAULT_BAD_FLAGS, subtract_zodi=True):
    """A :class:`~glue_spherex.analysis.spectrum.Frame` from a SPHEREx cutout ``Data``.

    Pixel values come from the dataset's components (what glue shows); the PSF and the FLAGS
    bit names from the product the dataset was read from -- after a session restore reopened
    from the file it was read from if that still exists; otherwise the PSF is a Gaussian of
    the exposure's ``meta['psf_fwhm']`` (datasets saved before it was recorded can only be
    measured with ``aperture_correction='none'``).
    """
    from scipy.ndimage import map_coordinates

    from ..analysis.spectrum import flag_bits_for, product_psf
    from .datasets import source_product

    flux = _component(data, "flux")
    if flux is None:
        raise SpherexInputError(f"dataset {data.label!r} has no 'flux' component")
    meta = data.meta
    product = source_product(data, reopen=True)
    zodi = _component(data, "zodi")
    if subtract_zodi and zodi is not None:
        flux = flux - zodi
    variance = _component(data, "variance")
    if variance is None:
        variance = np.full(flux.shape, np.nan)
    flags = _component(data, "flags")
    bits = flag_bits_for(product, bad_flags) if product is not None else DEFAULT_BITS
    bad = (mask_from_names(flags, bad_flags, bits=bits) if flags is not None
           else np.zeros(flux.shape, bool))
    wl_map = _component(data, "wavelength")
    bw_map = _component(data, "bandwidth")

    def wave(x, y):
        if wl_map is None:
            nan = np.full(np.shape(x), np.nan)
            return nan, nan
        pos = np.array([np.atleast_1d(y), np.atleast_1d(x)], dtype=float)
        return tuple(map_coordinates(m, pos, order=1, mode="nearest")
                     for m in (wl_map, bw_map if bw_map is not None else wl_map * np.nan))

    if product is not None:
        psf = (lambda x, y: product_psf(product, x, y)) if product.has_psf else None
        fwhm = product.psf_fwhm
    else:
        psf, fwhm = None, meta.get("psf_fwhm")
    mjd = meta.get("mjd_avg", np.nan)
    index = meta.get("cutout_index")
    return Frame(
        image=flux, variance=variance, bad=bad, wcs=_celestial(data), wave=wave, psf=psf,
        psf_fwhm=float(fwhm) if fwhm is not None else np.nan,
        info=dict(obs_id=str(meta.get("obs_id", "")), detector=int(meta.get("detector", 0)),
                  bandpass=str(meta.get("bandpass", "")),
                  mjd=float(mjd) if mjd is not None else np.nan,
                  cutout_index=-1 if index is None else int(index),
                  pipeline=int(meta.get("pipeline") or 0)),
    )


# --- region of a subset ------------------------------------------------------------------

def _pixel_geometry(data):
    from ..analysis.spectrum import pixel_geometry as geometry

    return geometry(_celestial(data))


def _sky_of_pixel_circle(data, x, y, r_pix):
    wcs = _celestial(data)
    ra, dec = wcs.pixel_to_world_values(x, y)
    _omega, scale = _pixel_geometry(data)
    return SkyCircle(float(ra), float(dec), float(r_pix * scale))


def _polygon_centroid_area(vx, vy):
    vx, vy = np.asarray(vx, float), np.asarray(vy, float)
    x1, y1 = np.roll(vx, -1), np.roll(vy, -1)
    cross = vx * y1 - x1 * vy
    area = cross.sum() / 2.0
    if abs(area) < 1e-12:
        return float(vx.mean()), float(vy.mean()), 0.0
    cx = ((vx + x1) * cross).sum() / (6 * area)
    cy = ((vy + y1) * cross).sum() / (6 * area)
    return float(cx), float(cy), abs(float(area))


def _roi_circle(state):
    """Sky circle of a ``RoiSubsetState`` drawn on a cutout's pixel or world axes, or None."""
    from glue.core.roi import CircularROI

    xatt, yatt, roi = getattr(state, "xatt", None), getattr(state, "yatt", None), state.roi
    data = getattr(xatt, "parent", None)
    if data is None or not is_spherex_data(data) or getattr(yatt, "parent", None) is not data:
        return None
    pix = data.pixel_component_ids   # [y, x]
    world = data.world_component_ids  # [Dec, RA]
    if {xatt, yatt} == set(pix):
        swap = xatt is pix[0]   # ROI x drawn along the y axis
        if isinstance(roi, CircularROI):
            cx, cy, r = roi.xc, roi.yc, roi.radius
        else:
            vx, vy = roi.to_polygon()
            cx, cy, area = _polygon_centroid_area(vx, vy)
            r = np.sqrt(area / np.pi)
        if swap:
            cx, cy = cy, cx
        return _sky_of_pixel_circle(data, cx, cy, r)
    if {xatt, yatt} == set(world):
        vx, vy = roi.to_polygon()
        ra, dec = (vx, vy) if xatt is world[1] else (vy, vx)
        px, py = _celestial(data).world_to_pixel_values(np.asarray(ra), np.asarray(dec))
        cx, cy, area = _polygon_centroid_area(px, py)
        return _sky_of_pixel_circle(data, cx, cy, np.sqrt(area / np.pi))
    return None


def _mask_circle(state, data_collection):
    """Sky circle with the centroid and area of the subset's mask on a cutout."""
    for data in cutouts_in(data_collection):
        try:
            mask = np.asarray(state.to_mask(data), bool)
        except IncompatibleAttribute:
            continue
        n = int(mask.sum())
        if n == 0:
            continue
        yy, xx = np.nonzero(mask)
        cx, cy = float(xx.mean()), float(yy.mean())
        omega, _scale = _pixel_geometry(data)
        r_arcsec = np.sqrt(n * omega / np.pi) * 180 / np.pi * 3600
        wcs = _celestial(data)
        ra, dec = wcs.pixel_to_world_values(cx, cy)
        return SkyCircle(float(ra), float(dec), float(r_arcsec))
    return None


def _state_circle(state):
    """The circle of a :class:`~glue_spherex.plugin.subsets.SkyCircleSubsetState`, or None."""
    from .subsets import SkyCircleSubsetState

    if isinstance(state, SkyCircleSubsetState):
        return SkyCircle(state.ra, state.dec, state.radius * 3600.0)
    return None


def sky_circle_of(subset_state, data_collection):
    """The sky circle a subset state selects (see the module docstring), or raise.

    Raises
    ------
    SpherexInputError
        If the subset selects nothing on any SPHEREx cutout.
    """
    from glue.core.subset import RoiSubsetState

    circle = _state_circle(subset_state)
    if circle is None and isinstance(subset_state, RoiSubsetState):
        circle = _roi_circle(subset_state)
    if circle is None:
        circle = _mask_circle(subset_state, data_collection)
    if circle is None or not circle.radius_arcsec > 0:
        raise SpherexInputError(
            "the subset selects no pixel of any SPHEREx cutout; draw a region on a cutout "
            "or use a sky-circle subset")
    return circle


# --- companion selection state ------------------------------------------------------------

class CutoutSelectionSubsetState(SubsetState):
    """The pixels inside a sky circle, on the chosen cutouts only (empty on the others)."""

    def __init__(self, uuids=(), ra=0.0, dec=0.0, radius_arcsec=0.0):
        super().__init__()
        self.uuids = frozenset(uuids)
        self.ra, self.dec, self.radius_arcsec = float(ra), float(dec), float(radius_arcsec)

    def to_mask(self, data, view=None):
        if not is_spherex_data(data):
            raise IncompatibleAttribute("not a SPHEREx cutout")
        shape = data.shape
        if data.uuid not in self.uuids:
            mask = np.zeros(shape, bool)
            return mask[view] if view is not None else mask
        yy, xx = np.indices(shape)
        if view is not None:
            yy, xx = yy[view], xx[view]
        ra, dec = _celestial(data).pixel_to_world_values(xx, yy)
        ra, dec, ra0, dec0 = map(np.radians, (ra, dec, self.ra, self.dec))
        s = (np.sin((dec - dec0) / 2) ** 2
             + np.cos(dec) * np.cos(dec0) * np.sin((ra - ra0) / 2) ** 2)
        return 2 * np.degrees(np.arcsin(np.sqrt(s))) * 3600 <= self.radius_arcsec

    def copy(self):
        return CutoutSelectionSubsetState(self.uuids, self.ra, self.dec, self.radius_arcsec)

    def __gluestate__(self, context):
        return dict(uuids=sorted(self.uuids), ra=self.ra, dec=self.dec,
                    radius_arcsec=self.radius_arcsec)

    @classmethod
    def __setgluestate__(cls, rec, context):
        return cls(rec["uuids"], rec["ra"], rec["dec"], rec["radius_arcsec"])


# --- the live spectrum ---------------------------------------------------------------------

_REGISTRY = weakref.WeakKeyDictionary()


def live_spectra(data_collection):
    """``{subset group: LiveSpectrum}`` of the live spectra following ``data_collection``."""
    return _REGISTRY.setdefault(data_collection, {})


def _immediate(fn):
    fn()


def _inline(work, done, failed):
    try:
        result = work()
    except Exception as exc:  # noqa: BLE001 -- handed to ``failed`` as in the threaded case
        failed(exc)
        return
    done(result)


class LiveSpectrum(HubListener):
    """Keep a spectrum table dataset in step with one subset group (see the module docstring).

    Parameters
    ----------
    data_collection : glue DataCollection
    subset_group : glue SubsetGroup
        The region; it may be a sky-circle subset or drawn on any cutout.
    schedule : callable, optional
        ``schedule(fn)`` runs ``fn`` later (debounce); default: at once.
    background : callable, optional
        ``background(work, done, failed)`` runs ``work()`` elsewhere (a worker thread) and
        then calls ``done(result)`` or ``failed(exception)`` on the caller's thread; default:
        at once, here (:meth:`refresh` then returns with the table published).
    radius : angle, optional
        Override the region's radius (the centre still follows the region).
    bad_flags, subtract_zodi, annulus, aperture_correction, min_unmasked_fraction
        As for :func:`glue_spherex.analysis.spectrum.extract_spectrum`.
    """

    def __init__(self, data_collection, subset_group, *, schedule=None, background=None,
                 radius=None,
                 bad_flags=DEFAULT_BAD_FLAGS, subtract_zodi=True, annulus=None,
                 aperture_correction="psf", min_unmasked_fraction=0.5):
        self.data_collection = data_collection
        self.subset_group = subset_group
        self.schedule = schedule or _immediate
        self.background = background or _inline
        self.radius = None if radius is None else u.Quantity(radius, u.arcsec)
        self.bad_flags = tuple(bad_flags)
        self.subtract_zodi = subtract_zodi
        self.options = dict(annulus=annulus, aperture_correction=aperture_correction,
                            min_unmasked_fraction=min_unmasked_fraction)
        self.circle = None
        self.table = None
        self.spectrum = None       # the glue table Data
        self.selection = None      # the companion SubsetGroup
        self.selected_cutouts = []
        self.selection_callbacks = []
        self.spectrum_callbacks = []
        self.error = None          # one line, when the last measurement failed
        self.n_computations = 0
        self._row_cutouts = []     # cutout Data of each table row
        self._frames = {}          # Data uuid -> Frame
        self._pending = False
        self._running = None       # the circle being measured off the caller's thread
        self._again = False
        self._force = False
        self._closed = False
        self._selection_source = None
        self._in_selection = False
        self.refresh(force=True)
        hub = data_collection.hub
        hub.subscribe(self, SubsetUpdateMessage, handler=self._on_subset_update)
        hub.subscribe(self, SubsetCreateMessage, handler=self._on_subset_update)
        hub.subscribe(self, SubsetDeleteMessage, handler=self._on_subset_delete)
        hub.subscribe(self, DataCollectionAddMessage, handler=self._on_data_change)
        hub.subscribe(self, DataCollectionDeleteMessage, handler=self._on_data_change)
        hub.subscribe(self, NumericalDataChangedMessage, handler=self._on_numerical_change)
        live_spectra(data_collection)[subset_group] = self

    @property
    def label(self):
        return self.subset_group.label

    # -- computing -----------------------------------------------------------------------

    def _frame(self, data):
        frame = self._frames.get(data.uuid)
        if frame is None:
            frame = frame_from_data(data, self.bad_flags, self.subtract_zodi)
            self._frames[data.uuid] = frame
        return frame

    def refresh(self, force=False):
        """Recompute if the region moved (or always with ``force``); True if it started.

        Without ``background`` the table is published before this returns; with it, when
        the measurement ends (a request made while one runs is measured after it).
        """
        if self._closed:
            return False
        circle = sky_circle_of(self.subset_group.subset_state, self.data_collection)
        if self.radius is not None:
            circle = SkyCircle(circle.ra, circle.dec, float(self.radius.to_value(u.arcsec)))
        if self._running is not None:
            if force or circle.key() != self._running.key():
                self._again = True
                self._force = self._force or force
            return True
        if not force and self.circle is not None and circle.key() == self.circle.key():
            return False
        cutouts = cutouts_in(self.data_collection)
        if not cutouts:
            raise SpherexInputError("there are no SPHEREx cutouts in this session")
        options = dict(self.options)
        self._running = circle

        def work():
            frames = [self._frame(d) for d in cutouts]
            return measure_frames(frames, circle.coord, circle.radius, **options)

        self.background(work, lambda table: self._measured(circle, cutouts, table),
                        self._measure_failed)
        return True

    def _measured(self, circle, cutouts, table):
        self._running = None
        if self._closed:
            return
        self.error = None
        table.meta.update(subset=self.label, bad_flags=list(self.bad_flags),
                          subtract_zodi=self.subtract_zodi)
        self.circle, self.table = circle, table
        self._row_cutouts = [cutouts[i] for i in np.asarray(table["product_index"])]
        self.n_computations += 1
        self._publish()
        self._update_selection()
        for callback in list(self.spectrum_callbacks):
            callback(self)
        self._rerun()

    def _measure_failed(self, exc):
        self._running = None
        if self.background is _inline:
            raise exc
        from ..errors import SpherexError

        self.error = exc if isinstance(exc, str) else str(exc) if isinstance(
            exc, SpherexError) else f"{type(exc).__name__}: {exc}"
        for callback in list(self.spectrum_callbacks):
            callback(self)
        self._rerun()

    def _rerun(self):
        if self._again and not self._closed:
            self._again = False
            self._request(force=self._force)

    def _table_data(self):
        from glue.core import Component, Data
        from glue.core.component import CategoricalComponent

        t = self.table
        data = Data(label=spectrum_label(self.label))
        for name, column, unit in (("wavelength", "wavelength", "um"),
                                   ("flux", "flux", "uJy"), ("error", "flux_err", "uJy"),
                                   ("bandwidth", "bandwidth", "um"), ("mjd", "mjd", "d"),
                                   ("cutout_index", "cutout_index", ""),
                                   ("detector", "detector", ""), ("n_masked", "n_masked", ""),
                                   ("pipeline", "pipeline", "")):
            values = np.asarray(u.Quantity(t[column]).value if hasattr(t[column], "unit")
                                else t[column], dtype=float)
            data.add_component(Component(values, units=unit), name)
        for name, values in (("obs_id", t["obs_id"]), ("status", t["status"]),
                             ("cutout", [d.label for d in self._row_cutouts])):
            data.add_component(CategoricalComponent(np.asarray(values, dtype=str)), name)
        data.meta.update(spherex_spectrum=True, subset=self.label, ra=self.circle.ra,
                         dec=self.circle.dec, radius_arcsec=self.circle.radius_arcsec,
                         mixed_pipelines=bool(t.meta.get("mixed_pipelines")),
                         warnings=list(t.meta.get("warnings", [])))
        return data

    def _publish(self):
        new = self._table_data()
        if self.spectrum is None or not any(d is self.spectrum for d in self.data_collection):
            existing = [d for d in self.data_collection if d.label == new.label
                        and d.meta.get("spherex_spectrum")]
            if existing:
                self.spectrum = existing[0]
            else:
                self.spectrum = new
                with adding_unlinked(self.data_collection, new):  # no link-graph update
                    self.data_collection.append(new)
                return
        self.spectrum.update_values_from_data(new)
        self.spectrum.meta.update(new.meta)

    # -- selection on the spectrum ------------------------------------------------------------

    def _selected_rows(self, subset):
        try:
            mask = np.asarray(subset.to_mask(), bool)
        except IncompatibleAttribute:
            return None
        return mask if mask.shape == (len(self._row_cutouts),) else None

    def _update_selection(self, subset=None):
        """Recompute the selected cutouts from ``subset`` (or the last subset used)."""
        if subset is None:
            subset = self._selection_source
            if subset is None or not any(s is subset for s in self.spectrum.subsets):
                return
        rows = self._selected_rows(subset)
        if rows is None:
            return
        self._selection_source = subset
        chosen, seen = [], set()
        for d, selected in zip(self._row_cutouts, rows):
            if selected and d.uuid not in seen:
                seen.add(d.uuid)
                chosen.append(d)
        self.selected_cutouts = chosen
        state = CutoutSelectionSubsetState(seen, self.circle.ra, self.circle.dec,
                                           self.circle.radius_arcsec)
        self._in_selection = True  # our own subset messages must not come back here
        try:
            if self.selection is None or not any(
                    g is self.selection for g in self.data_collection.subset_groups):
                self.selection = self.data_collection.new_subset_group(
                    selection_label(self.label), state)
            else:
                self.selection.subset_state = state
        finally:
            self._in_selection = False
        for callback in list(self.selection_callbacks):
            callback(chosen)

    # -- hub messages ----------------------------------------------------------------------

    def _request(self, force=False):
        self._force = self._force or force
        if self._pending:
            return
        self._pending = True
        self.schedule(self._run)

    def _run(self):
        self._pending = False
        force, self._force = self._force, False
        # A region emptied or off every cutout keeps the last spectrum.
        with contextlib.suppress(SpherexInputError):
            self.refresh(force=force)

    def _on_subset_update(self, message):
        subset = message.sender
        group = getattr(subset, "group", None)
        if (self._closed or self._in_selection or group is self.selection
                or isinstance(subset.subset_state, CutoutSelectionSubsetState)):
            return
        if group is self.subset_group:
            if getattr(message, "attribute", None) in (None, "subset_state"):
                self._request()
            return
        if self.spectrum is not None and subset.data is self.spectrum:
            self._update_selection(subset)

    def _on_subset_delete(self, message):
        if getattr(message.sender, "group", None) is self.subset_group:
            self.close()

    def _on_data_change(self, message):
        data = getattr(message, "data", None)
        if data is not None and is_spherex_data(data):
            self._frames.pop(data.uuid, None)
            self._request(force=True)

    def _on_numerical_change(self, message):
        data = message.sender
        if is_spherex_data(data):
            self._frames.pop(data.uuid, None)
            self._request(force=True)

    def close(self):
        """Stop following the region (the spectrum dataset stays in the session)."""
        if self._closed:
            return
        self._closed = True
        self.data_collection.hub.unsubscribe_all(self)
        spectra = live_spectra(self.data_collection)
        if spectra.get(self.subset_group) is self:
            del spectra[self.subset_group]
