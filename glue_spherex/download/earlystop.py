"""Early stop: read a pipeline-7 cutout only as far as the run does not already hold it.

A pipeline-7 cutout is PRIMARY, IMAGE, FLAGS, VARIANCE, ZODI, EPSF, WCS-WAVE; the EPSF table
(~3.9 of ~4.1 MB) is the calibration product of its detector, and WCS-WAVE the spectral-WCS
calibration, each named in the IMAGE header (``HISTORY [CALIB] epsf <uuid>``, ``HISTORY
[CALIB] spectral_wcs <uuid>``). :class:`CalibrationStore` keeps, per fetch run, the EPSF data
and the WCS-WAVE extension of the fully downloaded cutouts, keyed by calibration identity:
``(uuid, detector)`` and, for the EPSF, the data layout its own header declares (BITPIX,
NAXISn, PCOUNT). :class:`BodyWatch` follows one body's headers as they arrive; once the EPSF
header has arrived and the store holds that EPSF and the WCS-WAVE named by the IMAGE header, it
hands back the bytes that would follow (EPSF data, WCS-WAVE) so the reader stops there and
closes the connection. While one body of an identity the store lacks is being read in full,
another body of the same identity waits at its EPSF header for it (:meth:`CalibrationStore.
claim`) rather than read the same tables too; it goes on in full only if that one fails or
takes longer than the wait allowed. The reassembled body is then byte for byte what a full download gives
(the Content-Length must agree to the byte, and the whole body is validated as before).

With a directory (the fetcher gives ``<cache>/calibrations`` when it has a cache) the store
also keeps each table on disk, once per calibration identity, so a later run starts with
them and downloads none of them again: ``<kind>-<sha256 of the identity>.bin``, holding the
SHA-256 of the bytes and the bytes, written atomically and checked when read (a file that
does not check out is deleted and ignored).

Nothing is guessed: a body without a Content-Length, with a Content-Encoding, not plain FITS,
without exactly one UUID of each kind or a DETECTOR, with HDUs in another order, with a QR2
``PSF`` cube (which may differ per exposure), or whose calibration the store has seen with two
different contents, is read in full.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..errors import SpherexFormatError
from ..fitsbytes.atomic import remove_stale_temporaries, write_bytes
from ..fitsbytes.scan import BLOCK, CARD, card_value, header_span

__all__ = ["CalibrationStore", "BodyWatch", "CalibrationIdentity", "calibration_identity",
           "EARLY_LAYOUT"]

#: The HDUs that must precede the EPSF, in this order, for an early stop.
EARLY_LAYOUT = ("PRIMARY", "IMAGE", "FLAGS", "VARIANCE", "ZODI")
_CALIB = re.compile(r"HISTORY \[CALIB\] (epsf|spectral_wcs) +(\S+)")


@dataclass(frozen=True)
class CalibrationIdentity:
    """The calibrations an IMAGE header names: one UUID each (None if absent or ambiguous)."""

    detector: str | None
    epsf: str | None
    spectral_wcs: str | None

    @property
    def complete(self):
        return None not in (self.detector, self.epsf, self.spectral_wcs)


def calibration_identity(header):
    """The :class:`CalibrationIdentity` of an IMAGE header (bytes, from XTENSION to END).

    A kind named by two different UUIDs, or by something that is not a UUID, has none.
    """
    text = bytes(header).decode("latin-1")
    found = {"epsf": set(), "spectral_wcs": set()}
    for pos in range(0, len(text) - CARD + 1, CARD):
        card = text[pos:pos + CARD]
        if card.startswith("END "):
            break
        m = _CALIB.match(card) if card.startswith("HISTORY ") else None
        if m is not None:
            found[m.group(1)].add(m.group(2))
    ids = {}
    for kind, values in found.items():
        ids[kind] = None
        if len(values) == 1:
            with contextlib.suppress(ValueError):
                ids[kind] = str(uuid.UUID(values.pop()))
    return CalibrationIdentity(_detector(text), ids["epsf"], ids["spectral_wcs"])


def _detector(text):
    """The IMAGE header's DETECTOR, as text (None if absent or unreadable)."""
    for pos in range(0, len(text) - CARD + 1, CARD):
        card = text[pos:pos + CARD]
        if card.startswith("END "):
            return None
        if card.startswith("DETECTOR= "):
            try:
                return str(card_value(card)).strip() or None
            except SpherexFormatError:
                return None
    return None


def _layout(span):
    """What an HDU's header declares about its data: BITPIX, shape and byte count."""
    return (span.bitpix, tuple(span.shape), span.data_size)


class CalibrationStore:
    """EPSF data and WCS-WAVE extensions of one fetch run, by calibration identity.

    Thread-safe. Counts in :attr:`held` (entries in memory) and :attr:`conflicts` (identities
    seen with two contents: never used for an early stop again). With ``directory``, every
    table is also kept there and looked up there (see the module docstring).
    """

    def __init__(self, directory=None):
        self._lock = threading.Lock()
        self._epsf = {}      # ('epsf', uuid, detector, layout) -> EPSF data bytes, padded
        self._wave = {}      # ('spectral_wcs', uuid, detector) -> WCS-WAVE extension bytes
        self._bad = set()
        self._leaders = {}   # identity being read in full -> Event set when that read ends
        self.conflicts = 0
        self.directory = Path(directory) if directory is not None else None
        if self.directory is not None and self.directory.is_dir():
            with contextlib.suppress(OSError):
                remove_stale_temporaries(self.directory)   # left by a killed run

    @property
    def held(self):
        with self._lock:
            return len(self._epsf) + len(self._wave)

    def learn(self, data, spans):
        """Remember the EPSF data and WCS-WAVE of a complete, validated cutout ``data``
        (``spans``: its :func:`~glue_spherex.fitsbytes.scan.scan_spectral_image`)."""
        names = [s.extname for s in spans]
        if names != [*EARLY_LAYOUT, "EPSF", "WCS-WAVE"] or spans[-1].end != len(data):
            return
        ident = calibration_identity(memoryview(data)[spans[1].header_start:spans[1].data_start])
        if not ident.complete:
            return
        epsf, wave = spans[5], spans[6]
        view = memoryview(data)
        self._put(self._epsf, ("epsf", ident.epsf, ident.detector, _layout(epsf)),
                  view[epsf.data_start:epsf.end])
        self._put(self._wave, ("spectral_wcs", ident.spectral_wcs, ident.detector),
                  view[wave.header_start:wave.end])

    def _put(self, table, key, view):
        held = self._get(table, key)
        with self._lock:
            if key in self._bad:
                return
            held = table.get(key, held)  # another thread may have put it meanwhile
            if held is None:
                held = table[key] = bytes(view)
                new = True
            elif held != view:  # the same identity, other bytes: trust neither from now on
                table.pop(key, None)
                self._bad.add(key)
                self.conflicts += 1
                held, new = None, False
            else:
                return
        path = self._path(key)
        if path is None:
            return
        with contextlib.suppress(OSError):   # the disk copy is a convenience, never required
            if new:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_bytes(path, hashlib.sha256(held).digest() + held)
            else:
                path.unlink(missing_ok=True)

    def _get(self, table, key):
        """The held bytes of ``key``: from memory, else from the directory (then kept)."""
        with self._lock:
            if key in self._bad:
                return None
            held = table.get(key)
        if held is not None:
            return held
        path = self._path(key)
        if path is None:
            return None
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        held = raw[32:]
        if hashlib.sha256(held).digest() != raw[:32] or not _plausible(key, held):
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        with self._lock:
            if key in self._bad:
                return None
            return table.setdefault(key, held)

    def _path(self, key):
        if self.directory is None:
            return None
        return self.directory / f"{key[0]}-{hashlib.sha256(repr(key).encode()).hexdigest()[:40]}.bin"

    def tail(self, ident, epsf_span):
        """The bytes after the EPSF header -- EPSF data, then WCS-WAVE -- if both are held
        for ``ident`` and the EPSF layout ``epsf_span`` declares; else None."""
        data = self._get(self._epsf, ("epsf", ident.epsf, ident.detector, _layout(epsf_span)))
        if data is None:
            return None
        wave = self._get(self._wave, ("spectral_wcs", ident.spectral_wcs, ident.detector))
        if wave is None:
            return None
        return data + wave


    def claim(self, ident, epsf_span):
        """What a body of ``ident`` should do at its EPSF header: ``('stop', tail)`` when the
        tables are held; ``('lead', key)`` when no other body of this identity is being read
        in full (read on, and :meth:`release` ``key`` when done, learnt or not); else
        ``('wait', event)``: another body is, and ``event`` is set when it is done."""
        tail = self.tail(ident, epsf_span)
        if tail is not None:
            return "stop", tail
        key = (ident.epsf, ident.spectral_wcs, ident.detector, _layout(epsf_span))
        with self._lock:
            event = self._leaders.get(key)
            if event is None:
                self._leaders[key] = threading.Event()
                return "lead", key
        return "wait", event

    def release(self, key):
        """The full read of a :meth:`claim` ``'lead'`` ended (learnt or not): wake its waiters."""
        with self._lock:
            event = self._leaders.pop(key, None)
        if event is not None:
            event.set()


def _plausible(key, held):
    """Whether bytes read back from disk have the shape of what ``key`` names."""
    if key[0] == "epsf":
        size = key[3][2]
        return len(held) == -(-size // BLOCK) * BLOCK
    try:
        span = header_span(held, 0, 1)
    except SpherexFormatError:
        return False
    return span is not None and span.extname == "WCS-WAVE" and span.end == len(held)


class BodyWatch:
    """Follows the headers of one arriving body; tells the reader how much to read next and
    when the rest can come from a :class:`CalibrationStore`.

    Call :meth:`next_read` for the size of the next read, and :meth:`update` with the whole
    buffer after each read: it returns the missing bytes once the body may stop, else None.
    :attr:`active` turns false as soon as no early stop is possible (read on in full).
    """

    def __init__(self, store, content_length, *, max_wait=60.0, stopped=None):
        self.store = store
        self.length = content_length
        self.max_wait = max_wait          # seconds to wait for another body's full read
        self.stopped = stopped            # callable: True when the run is being cancelled
        self.waited = 0.0
        self._lead = None
        self.active = True
        self._offset = 0         # where the next header starts
        self._want = BLOCK       # bytes needed before the next header can be parsed
        self._names = []
        self._ident = None

    def next_read(self, received, chunk):
        """How many bytes to read next: up to the next decision point, at most ``chunk``."""
        if not self.active or received >= self._want:
            return chunk
        return min(chunk, self._want - received)

    def update(self, buf):
        """Parse every header now complete in ``buf``; the missing bytes if the body may stop
        here (then ``len(buf) + len(result) == content_length``), else None."""
        while self.active and len(buf) >= self._want:
            if bytes(buf[:6]) != b"SIMPLE":
                self.active = False
                return None
            try:
                piece = bytes(buf[self._offset:])   # no view of buf is kept: it must grow
                span = header_span(piece, 0, len(self._names))
            except SpherexFormatError:
                self.active = False                 # the full body will be judged as before
                return None
            if span is None:                        # no END card yet: one more block
                self._want = len(buf) + BLOCK
                continue
            header = piece[:span.data_start]
            result = self._header(span, header)
            if result is not None or not self.active:
                return result
            self._offset += span.end
            self._want = self._offset + BLOCK
        return None

    def _header(self, span, header):
        name = span.extname or ("PRIMARY" if not self._names else "")
        position = len(self._names)
        self._names.append(name)
        if position < len(EARLY_LAYOUT):
            if name != EARLY_LAYOUT[position]:
                self.active = False
            elif name == "IMAGE":
                self._ident = calibration_identity(header)
                if not self._ident.complete:
                    self.active = False
            return None
        self.active = False          # the EPSF header, or something else: decided either way
        if name != "EPSF":
            return None
        here = self._offset + span.data_start
        if here >= self.length:
            return None
        action, value = self.store.claim(self._ident, span)
        if action == "lead":
            self._lead, tail = value, None
        elif action == "wait":
            self._wait(value)
            tail = self.store.tail(self._ident, span)
        else:
            tail = value
        if tail is None or here + len(tail) != self.length:
            return None
        return tail

    def _wait(self, event):
        started = time.monotonic()
        while not event.wait(0.05):
            if (time.monotonic() - started >= self.max_wait
                    or (self.stopped is not None and self.stopped())):
                break
        self.waited = time.monotonic() - started

    def finish(self):
        """Call when the body's attempt is over (after the store learnt from it, if it did):
        a body that led a full read wakes the bodies waiting for it."""
        if self._lead is not None:
            self.store.release(self._lead)
            self._lead = None
