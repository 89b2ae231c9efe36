"""A full-frame spectral image read in part: its headers, and only the rows that are asked for.

:class:`PartialImage` reads a Level-2 file through a ``read(start, stop)`` callable (HTTP
byte ranges of the public S3 copy, or a local file) into a zero-filled buffer of the file's
size, which the operating system backs with memory only where bytes were written. First the
headers (one read per HDU); then :meth:`~PartialImage.load_rows` reads the pixel rows of
IMAGE, VARIANCE, ZODI and FLAGS (a tile-compressed FLAGS by its tiles) and
:meth:`~PartialImage.load_psf` the PSF planes of the zones wanted, or the whole EPSF table.
Calibrations that are the same in many files -- the WCS-WAVE table and the EPSF, named by
``HISTORY [CALIB] spectral_wcs|epsf <uuid>`` in the IMAGE header -- come from a
:class:`CalibrationStore` after the first file that has them. :attr:`~PartialImage.product`
is an ordinary :class:`~glue_spherex.products.spectral_image.SpectralImage` over the buffer,
so the numbers measured on the rows read are those of the whole file.
"""

from __future__ import annotations

import re
import threading

import numpy as np

from ..errors import SpherexFormatError
from ..fitsbytes.scan import header_span
from .spectral_image import SpectralImage

__all__ = ["PartialImage", "CalibrationStore", "HEADER_CHUNK"]

#: Bytes asked for when a header is read (a SPHEREx header is 6-23 KB; a longer one is
#: read on in further chunks).
HEADER_CHUNK = 32 * 1024
#: Rows closer than this are read in one range (a request costs more than 16 rows of bytes).
_ROW_GAP = 16
_CALIB = re.compile(rb"HISTORY \[CALIB\] (spectral_wcs|epsf) ([0-9A-Za-z-]{8,64})")
_MAX_FILE = 2 ** 31  # a Level-2 file is ~70 MB; anything claiming more is not one


class CalibrationStore:
    """Calibration tables shared by the files of a run: ``(kind, uuid, detector, size) -> bytes``.

    Thread-safe. The key holds the detector and the table's size as well as the UUID, so a
    file is given a stored table only when every piece of its identity agrees.
    """

    def __init__(self):
        self._tables = {}
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            return self._tables.get(key)

    def put(self, key, data):
        with self._lock:
            self._tables.setdefault(key, bytes(data))

    def __len__(self):
        with self._lock:
            return len(self._tables)


class PartialImage:
    """One spectral image, of which only the headers and the requested rows are read.

    Parameters
    ----------
    read : callable
        ``read(start, stop) -> bytes``: bytes ``start`` to ``stop - 1`` of the file (fewer
        only at its end).
    size : int
        The file's length in bytes.
    label : str
        How errors name the file (its URL).
    head : bytes, optional
        The file's first bytes, if already read (learning its size).
    calibrations : CalibrationStore, optional
        Where WCS-WAVE tables and EPSFs are shared between files.
    provenance
        ``access_url``, ``release``, ``processing`` for the product.
    """

    def __init__(self, read, size, label, head=b"", calibrations=None, **provenance):
        if not 0 < int(size) <= _MAX_FILE:
            raise SpherexFormatError(f"{label}: a file of {size} bytes is not a spectral image")
        self._read = read
        self.label = label
        self.size = int(size)
        self.calibrations = calibrations if calibrations is not None else CalibrationStore()
        self.buffer = np.zeros(self.size, np.uint8)  # calloc: pages exist once written
        #: bytes read, and the number of reads, for this file
        self.bytes_read = 0
        self.reads = 0
        self.calibrations_reused = 0
        self._fetched = []
        if head:
            head = head[:self.size]
            self.buffer[:len(head)] = np.frombuffer(head, np.uint8)
            self._fetched.append((0, len(head)))
        self.spans = self._read_headers(len(head))
        self.product = SpectralImage.from_buffer(self.buffer, label, **provenance)
        self._names = {s.extname: s for s in self.spans}
        self._identity = self._calibration_identity()
        self._load_wave_table()
        self._dense_flags = None
        self._rows_loaded = np.zeros(self.product.shape[0], bool)
        self._planes_loaded = set()

    # -- reading ---------------------------------------------------------------------------

    def _fetch(self, start, stop):
        """Read ``start:stop`` into the buffer (clipped to the file)."""
        stop = min(stop, self.size)
        if stop <= start:
            return
        data = self._read(start, stop)
        if len(data) != stop - start:
            raise SpherexFormatError(f"{self.label}: asked for bytes {start}-{stop - 1}, got "
                                     f"{len(data)} bytes")
        self.buffer[start:stop] = np.frombuffer(data, np.uint8)
        self.bytes_read += len(data)
        self.reads += 1
        self._fetched.append((start, stop))

    def _has(self, start, stop):
        """True if bytes ``start:stop`` were read (within one read)."""
        return any(a <= start and stop <= b for a, b in self._fetched)

    def _read_headers(self, have):
        spans, offset = [], 0  # bytes [offset, have) are in the buffer
        while offset < self.size:
            while True:
                span = header_span(self.buffer[:have], offset, len(spans), self.label)
                if span is not None:
                    break
                if have >= self.size:
                    raise SpherexFormatError(f"{self.label} is truncated: header of HDU "
                                             f"{len(spans)} ends after byte {self.size}")
                start = max(have, offset)
                self._fetch(start, start + HEADER_CHUNK)
                have = min(start + HEADER_CHUNK, self.size)
            if span.end > self.size:
                raise SpherexFormatError(f"{self.label} is truncated: HDU {len(spans)} needs "
                                         f"{span.end} bytes, the file has {self.size}")
            spans.append(span)
            offset = span.end
            if offset >= have:  # the next header is beyond what was read: read it afresh
                have = offset
        return spans

    def _calibration_identity(self):
        image = self._names.get("IMAGE")
        head = self.buffer[image.header_start:image.data_start].tobytes() if image else b""
        uuids = {kind.decode(): uid.decode() for kind, uid in _CALIB.findall(head)}
        return uuids

    def _shared(self, kind, name, span):
        """The store's key of an extension's data, or None if its identity is not known."""
        uid = self._identity.get(kind)
        if uid is None:
            return None
        return kind, uid, int(self.product.detector), span.data_size, span.shape

    def _load_shared(self, kind, name):
        """Load an extension's data from the store or by reading it (then store it)."""
        span = self._names[name]
        key = self._shared(kind, name, span)
        stop = span.data_start + span.data_size
        if key is not None:
            stored = self.calibrations.get(key)
            if stored is not None:
                self.buffer[span.data_start:stop] = np.frombuffer(stored, np.uint8)
                self.calibrations_reused += 1
                return
        if not self._has(span.data_start, stop):  # else it came with its header
            self._fetch(span.data_start, stop)
        if key is not None:
            self.calibrations.put(key, self.buffer[span.data_start:stop])

    def _load_wave_table(self):
        name = next((n for n in self._names if n == "WCS-WAVE"), None)
        if name is not None:
            self._load_shared("spectral_wcs", name)

    # -- rows ------------------------------------------------------------------------------

    def load_rows(self, bands):
        """Read the rows ``y0 <= y < y1`` of each ``(y0, y1)`` of IMAGE, VARIANCE, ZODI, FLAGS.

        Bands closer than a few rows are read as one; rows already read are not read again.
        """
        ny = self.product.shape[0]
        want = np.zeros(ny, bool)
        for y0, y1 in bands:
            want[max(int(y0), 0):min(int(y1), ny)] = True
        want &= ~self._rows_loaded
        runs = _runs(want, _ROW_GAP)
        for y0, y1 in runs:
            for name in ("IMAGE", "VARIANCE", "ZODI", "FLAGS"):
                if name == "FLAGS" and self.product.flags_compressed:
                    continue
                span = self._names[name]
                row = span.data_size // ny
                self._fetch(span.data_start + y0 * row, span.data_start + y1 * row)
        if runs and self.product.flags_compressed:
            self._load_flag_tiles(runs)
        for y0, y1 in runs:
            self._rows_loaded[y0:y1] = True

    def _load_flag_tiles(self, runs):
        """Read the tiles of a tile-compressed FLAGS that hold ``runs`` and decompress them."""
        span = self._names["FLAGS"]
        product = self.product
        keys = product.keywords_of("FLAGS")
        ny, nx = product.shape
        tile_rows = _keyword_int(keys, "ZTILE2", 1)
        if _keyword_int(keys, "ZTILE1", nx) != nx or tile_rows < 1:
            raise SpherexFormatError(f"{self.label}: FLAGS tiles are not whole rows "
                                     "(ZTILE1 must equal the image width)")
        width, nrows = _keyword_int(keys, "NAXIS1", 0), _keyword_int(keys, "NAXIS2", 0)
        table_end = span.data_start + width * nrows
        if nrows != -(-ny // tile_rows) or width < 8 or table_end > span.data_start + span.data_size:
            raise SpherexFormatError(f"{self.label}: FLAGS has {nrows} tiles of {width} bytes, "
                                     f"not one per {tile_rows} of its {ny} rows")
        if not self._has(span.data_start, table_end):
            self._fetch(span.data_start, table_end)   # the tile descriptors, 8-16 B a tile
        descriptors = self._descriptors(keys, width, nrows)
        heap = span.data_start + _keyword_int(keys, "THEAP", width * nrows)
        tiles = [(y0 // tile_rows, -(-y1 // tile_rows)) for y0, y1 in runs]
        for t0, t1 in tiles:
            count, offset = descriptors[t0:t1, 0], descriptors[t0:t1, 1]
            lo, hi = int(offset.min()), int((offset + count).max())
            if lo < 0 or heap + hi > span.data_start + span.data_size:
                raise SpherexFormatError(f"{self.label}: FLAGS tiles point outside its heap")
            self._fetch(heap + lo, heap + hi)
        hdu = product.compressed_flags()   # astropy's codec, on the tiles just read
        if self._dense_flags is None:
            self._dense_flags = np.zeros(product.shape, np.int32)
        for t0, t1 in tiles:
            r0, r1 = t0 * tile_rows, min(t1 * tile_rows, ny)
            try:
                self._dense_flags[r0:r1] = hdu.section[r0:r1]
            except Exception as exc:  # noqa: BLE001 -- the codec raises its own errors
                raise SpherexFormatError(f"{self.label} FLAGS: cannot decompress rows "
                                         f"{r0}-{r1 - 1} ({exc})") from None

    def _descriptors(self, keys, width, nrows):
        form = str(keys.get("TFORM1", "")).strip().upper()
        wide = "Q" in form[:2]
        dtype = ">i8" if wide else ">i4"
        span = self._names["FLAGS"]
        table = self.buffer[span.data_start:span.data_start + width * nrows].view(dtype)
        return table.reshape(nrows, -1)[:, :2].astype(np.int64)

    # -- PSF -------------------------------------------------------------------------------

    def load_psf(self, x, y):
        """Read what the PSF at pixels ``(x, y)`` needs: the cube's planes of their zones
        (pipeline < 7), or the EPSF table (pipeline 7; once per calibration)."""
        product = self.product
        if product.psf_kind == "epsf":
            if "epsf" not in self._planes_loaded:
                self._load_shared("epsf", "EPSF")
                self._planes_loaded.add("epsf")
            return
        if product.psf_kind != "cube":
            return
        span = self._names["PSF"]
        nplanes = span.shape[0]
        plane = span.data_size // nplanes
        rows = sorted({int(product.psf_row(float(a), float(b))) for a, b in zip(x, y)}
                      - self._planes_loaded)
        want = np.zeros(nplanes, bool)
        want[rows] = True
        for k0, k1 in _runs(want, 0):
            self._fetch(span.data_start + k0 * plane, span.data_start + k1 * plane)
        self._planes_loaded.update(rows)

    # -- data ------------------------------------------------------------------------------

    @property
    def flags(self):
        """FLAGS as an int32 array of the full frame (rows not loaded are zero)."""
        if self.product.flags_compressed:
            if self._dense_flags is None:
                self._dense_flags = np.zeros(self.product.shape, np.int32)
            return self._dense_flags
        return self.product.flags

    def rows_loaded(self, y0, y1):
        """True if every row ``y0 <= y < y1`` has been read."""
        return bool(self._rows_loaded[max(y0, 0):max(y1, 0)].all())


def _keyword_int(keys, key, default):
    value = keys.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SpherexFormatError(f"FLAGS {key} = {value!r} is not an integer")
    return int(value)


def _runs(mask, gap):
    """``[(start, stop)]`` of the True runs of ``mask``, runs less than ``gap`` apart joined."""
    idx = np.flatnonzero(mask)
    if not len(idx):
        return []
    breaks = np.flatnonzero(np.diff(idx) > gap + 1)
    starts = np.r_[idx[0], idx[breaks + 1]]
    stops = np.r_[idx[breaks], idx[-1]] + 1
    return list(zip(starts.tolist(), stops.tolist()))

