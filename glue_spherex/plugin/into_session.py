"""Query the archive and add the cutouts to a running glue session as they arrive.

:func:`fetch_into` is the import dialog's search-and-fetch without the dialog: the same
validation (:func:`glue_spherex.plugin.import_request.build_request`), query and download, and
the same batches (every ``batch_seconds`` the arrived cutouts are added in one ``extend`` and
linked, by :func:`add_cutouts`, which keeps the session's cutouts in wavelength order). Downloads run on worker threads; the data collection is touched only on the
session's own thread -- the Qt GUI thread (a glue-qt ``GlueApplication``), the asyncio loop
of the calling thread (a Jupyter kernel: the call returns at once), or else the calling
thread, which waits. Failures are kept in :attr:`SessionFetch.failures`; arrived cutouts stay
whatever happens later. Usage: ``docs/glue.rst``.
"""

from __future__ import annotations

import asyncio
import queue
import threading

from glue.core.data_collection import DataCollection

from ..errors import SpherexError, SpherexInputError
from ..irsa.config import settings as client_settings

__all__ = ["fetch_into", "SessionFetch", "add_cutouts"]


def add_cutouts(data_collection, datasets):
    """Add SPHEREx cutouts to ``data_collection`` in one batch, linked by sky position.

    The session then lists its SPHEREx cutouts in order of central wavelength (shortest
    first, ties by time): the new ones are put among those already there, in the places the
    collection gives to SPHEREx cutouts, so other data keep their places. A label that is
    already in the collection (the same exposure fetched twice, e.g. in two releases) gets
    ``' (2)'``, ``' (3)'``... Returns the datasets that are now in the collection.
    """
    from .datasets import is_spherex_data
    from .links import link_cutouts

    dc = data_collection
    present = {id(d) for d in dc.data}
    datasets = [d for d in datasets if id(d) not in present]
    taken = {d.label for d in dc.data}
    for data in sorted(datasets, key=_wavelength_order):
        label, n = data.label, 1
        while label in taken:
            n += 1
            label = f"{data.label} ({n})"
        if label != data.label:
            data.label = label
        taken.add(label)
    try:
        with dc.delay_link_manager_update():
            dc.extend(sorted(datasets, key=_wavelength_order))
            link_cutouts(dc, datasets)
    finally:
        # glue's own list (DataCollection.data): the cutouts' slots, refilled in order
        items = dc.data
        slots = [i for i, d in enumerate(items) if is_spherex_data(d)]
        for i, data in zip(slots, sorted((items[i] for i in slots), key=_wavelength_order)):
            items[i] = data
    present = {id(d) for d in dc.data}
    return [d for d in datasets if id(d) in present]


def _wavelength_order(data):
    meta = data.meta
    lam = meta.get("central_wavelength")
    lam = lam if isinstance(lam, float) and lam == lam else float("inf")
    mjd = meta.get("mjd_avg")
    mjd = mjd if isinstance(mjd, float) and mjd == mjd else float("inf")
    return lam, mjd


def _collection_of(session):
    if isinstance(session, DataCollection):
        return session
    dc = getattr(session, "data_collection", None)
    if isinstance(dc, DataCollection):
        return dc
    raise SpherexInputError(
        f"fetch_into() needs a glue application or DataCollection, got {type(session).__name__}")


def _is_qt_app(session):
    return any(cls.__module__.startswith("glue_qt") for cls in type(session).__mro__)


def _one_line(exc):
    text = str(exc) if isinstance(exc, SpherexError) else f"{type(exc).__name__}: {exc}"
    return next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)


class SessionFetch:
    """One :func:`fetch_into` run: what was found, what arrived, what failed.

    Attributes
    ----------
    table : Table
        The query result (one row per cutout).
    datasets : list of Data
        The cutouts added to the session so far, in arrival order.
    failures : list of (int, str)
        ``(cutout_index, reason)`` of each cutout that could not be fetched or read.
    batches : int
        How many times cutouts were added (one ``extend`` + link each).
    done : bool
        True once every cutout has arrived, failed or been cancelled, and all are added.
    error : str or None
        A one-line message if linking or the download loop itself failed.
    """

    def __init__(self, data_collection, table, *, workers, cache_dir, batch_seconds):
        self.data_collection = data_collection
        self.table = table
        self.datasets = []
        self.failures = []
        self.batches = 0
        self.done = False
        self.error = None
        self.batch_seconds = float(batch_seconds)
        self._workers, self._cache_dir = workers, cache_dir
        self._queue = queue.Queue()
        self._cancel = threading.Event()
        self._finished = threading.Event()
        self._thread = None

    def __repr__(self):
        state = "done" if self.done else "running"
        return (f"<SessionFetch {state}: {len(self.datasets)} of {len(self.table)} cutouts "
                f"added, {len(self.failures)} failed>")

    # -- worker thread ---------------------------------------------------------------------

    def start(self):
        self._thread = threading.Thread(target=self._download, name="glue-spherex-fetch-into",
                                        daemon=True)
        self._thread.start()
        return self

    def _download(self):
        from ..download.fetcher import fetch_cutouts
        from .datasets import product_to_data

        cache = self._cache_dir if self._cache_dir is not None else ""  # "" = no cache
        try:
            for result in fetch_cutouts(self.table, workers=self._workers, cache_dir=cache,
                                        cancel=self._cancel):
                if result.status != "ok":
                    self._queue.put(("failed", (result.cutout_index,
                                                result.reason or result.status)))
                    continue
                try:
                    data = product_to_data(result.product)
                except Exception as exc:  # noqa: BLE001 -- recorded as this cutout's failure
                    self._queue.put(("failed", (result.cutout_index, _one_line(exc))))
                else:
                    self._queue.put(("data", data))
        except BaseException as exc:  # noqa: BLE001 -- reported as one line, data kept
            self._queue.put(("error", _one_line(exc)))
        finally:
            self._finished.set()

    # -- session thread --------------------------------------------------------------------

    def flush(self):
        """Add what arrived since the last call, in one batch, linked; True when all is in."""
        finished = self._finished.is_set()  # read first: nothing can be queued after it
        batch = []
        while True:
            try:
                kind, payload = self._queue.get_nowait()
            except queue.Empty:
                break
            if kind == "data":
                batch.append(payload)
            elif kind == "failed":
                self.failures.append(payload)
            else:
                self.error = payload
        if batch:
            dc = self.data_collection
            try:
                add_cutouts(dc, batch)
            except Exception as exc:  # noqa: BLE001 -- the data stay loaded
                self.error = f"linking the cutouts failed: {_one_line(exc)}"
            self.datasets.extend(d for d in batch if d in dc.data)
            self.batches += 1
        if finished and self._queue.empty():
            self.done = True
        return self.done

    def cancel(self):
        """Stop downloading; cutouts already added stay, those in flight are still added."""
        self._cancel.set()

    def wait(self):
        """Add batches on the calling thread until everything is in (Ctrl-C cancels)."""
        try:
            while not self.flush():
                self._finished.wait(self.batch_seconds)
        except KeyboardInterrupt:
            self.cancel()
            self._finished.wait(30)
            self.flush()
            raise
        return self

    def _tick_asyncio(self, loop):
        if not self.flush():
            loop.call_later(self.batch_seconds, self._tick_asyncio, loop)

    def _tick_qt(self, single_shot):
        if not self.flush():
            single_shot(int(self.batch_seconds * 1000), lambda: self._tick_qt(single_shot))


def fetch_into(session, target, size="1 arcmin", bandpass=None, *, collection="wide",
               time_range=None, via="tap", workers=8, archive_url=None, cache_dir=None,
               batch_seconds=0.5, block=None):
    """Query SPHEREx cutouts around ``target`` and add them to ``session`` as they arrive.

    Parameters
    ----------
    session : glue application or DataCollection
        A glue-jupyter ``JupyterApplication`` (``jglue()``), a glue-qt ``GlueApplication``
        or a bare ``DataCollection``.
    target : str, SkyCoord or (ra, dec)
        Object name or ``'RA Dec'`` in degrees, as in the import dialog.
    size : str or Quantity
        Cutout width, e.g. ``'2 arcmin'``, ``'30 px'`` or ``2 * u.arcmin``.
    bandpass : str, int or sequence, optional
        ``'D2'``, 2, ``['D1', 'D6']``...; default all six bands.
    collection, via, workers, archive_url, cache_dir
        As in the import dialog; ``archive_url`` defaults to ``GLUE_SPHEREX_ARCHIVE_URL`` or
        ``conf.archive_url``.
    time_range : (float, float), optional
        MJD interval the images must overlap.
    batch_seconds : float
        How often arrived cutouts are added (one batch each time).
    block : bool, optional
        Wait on the calling thread until all cutouts are in. By default only when there is
        no event loop to add them from (see the module docstring).

    Returns
    -------
    SessionFetch
        Already finished when the call blocked; otherwise it fills in as cutouts arrive
        (``.cancel()`` stops it).

    Raises
    ------
    SpherexInputError
        For an invalid argument (nothing is sent to the archive then).
    SpherexError
        If the archive query fails.
    """
    from ..irsa.core import SpherexClass
    from .import_request import build_request

    dc = _collection_of(session)
    value, unit = _split_size(size)
    detectors = _detectors(bandpass)
    target_text = _target_text(target)
    request = build_request(
        target=target_text, size=value, size_unit=unit, detectors=detectors,
        collection=collection, time=time_range, via=via, workers=workers,
        archive_url=client_settings(archive_url=archive_url).archive_url, cache_dir=cache_dir or "")
    try:
        batch = float(batch_seconds)
    except (TypeError, ValueError):
        batch = float("nan")
    if not 0 < batch <= 60:
        raise SpherexInputError(f"batch_seconds must be in (0, 60], got {batch_seconds!r}")
    archive = SpherexClass(archive_url=request.archive_url)
    table = archive.query_region(
        request.query_target, size=request.size, bandpass=list(request.bandpasses),
        collection=request.collection, time=request.time, via=request.via)
    run = SessionFetch(dc, table, workers=request.workers, cache_dir=request.cache_dir,
                       batch_seconds=batch).start()
    if block:
        return run.wait()
    if _is_qt_app(session):
        from ..qt.session_fetch import single_shot

        run._tick_qt(single_shot)
        return run
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is None:
        if block is False:
            run.cancel()
            raise SpherexInputError(
                "block=False needs a glue-qt application or a running asyncio loop (e.g. "
                "Jupyter's); from a plain script call fetch_into() with block=True")
        return run.wait()
    loop.call_soon(run._tick_asyncio, loop)
    return run


def _split_size(size):
    import astropy.units as u

    if isinstance(size, u.Quantity):
        unit = {"arcmin": "arcmin", "arcsec": "arcsec", "deg": "deg", "pix": "px"}.get(
            str(size.unit))
        if unit is None:
            raise SpherexInputError(f"size unit {size.unit} is not accepted; give arcmin, "
                                    "arcsec, deg or px")
        return str(size.value), unit
    text = str(size).strip()
    for unit in ("arcmin", "arcsec", "deg", "px"):
        if text.endswith(unit):
            return text[: -len(unit)].strip(), unit
    raise SpherexInputError(f"size {size!r} needs a unit: e.g. '2 arcmin', '30 arcsec', "
                            "'0.05 deg' or '40 px'")


def _detectors(bandpass):
    from ..irsa.core import parse_bandpasses

    return list(parse_bandpasses(bandpass))


def _target_text(target):
    ra = getattr(target, "ra", None)
    if ra is not None:  # SkyCoord
        icrs = target.icrs
        return f"{icrs.ra.deg:.8f} {icrs.dec.deg:.8f}"
    if isinstance(target, (tuple, list)) and len(target) == 2:
        return f"{float(target[0]):.8f} {float(target[1]):.8f}"
    return str(target)

