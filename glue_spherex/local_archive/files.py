"""``/ibe/data/spherex/<key>``: whole Level-2 files and IBE cutouts, with HEAD and byte ranges.

Whole frames (70 MB) are generated on first request into a small per-process LRU directory
and served with ``Accept-Ranges: bytes`` and single-range ``206`` answers, so
``fits.open(url, use_fsspec=True)`` reads sections without downloading the file. A ranged GET
of a frame not in that directory is assembled from the frame's layout
(:mod:`.synthetic.layout`: the same bytes, only the rows asked for rendered), and a HEAD
renders nothing.
``?center=..&size=..`` renders an IBE cutout per request (:mod:`glue_spherex.irsa.cutout_params`; no overlap is
HTTP 400, partial overlap is clipped), plain FITS unless ``gzip=true``. Pipeline-7 cutouts keep
the EPSF table whole, FLAGS compressed or plain (``cutout_flags``). Where IRSA's behaviour is
unknown, the choices are in ``docs/archive.rst``.
"""

from __future__ import annotations

import atexit
import gzip
import os
import re
import shutil
import tempfile
import threading
from collections import OrderedDict

from ..errors import SpherexInputError
from ..fitsbytes.atomic import write_bytes
from ..irsa.cutout_params import parse_cutout
from .response import FileBody, Response, error_document

__all__ = ["FrameCache", "serve_file", "serve_frame", "frame_cache", "parse_range", "ranged",
           "QR2_FRAME_BYTES", "LAZY_MAX_ROWS"]

FITS_TYPE = "application/fits"


class FrameCache:
    """Generated full frames on disk, at most ``max_files`` of them (least recently used go)."""

    def __init__(self, max_files=4, directory=None):
        self.max_files = max_files
        self.directory = directory or tempfile.mkdtemp(prefix="glue-spherex-frames-")
        self._lock = threading.Lock()
        self._files = OrderedDict()          # key -> path
        self._sizes = {}                     # key -> size of every frame ever generated
        self._key_locks = {}

    def cached(self, spec):
        """An open binary file with the frame's bytes if they are on disk, else None."""
        with self._lock:
            path = self._files.get(spec.key)
            if path is None:
                return None
            self._files.move_to_end(spec.key)
            return open(path, "rb")

    def open(self, spec):
        """An open binary file with the frame's bytes (generated if not cached)."""
        from .synthetic import frame_bytes

        with self._lock:
            key_lock = self._key_locks.setdefault(spec.key, threading.Lock())
        with key_lock:                       # one generation per frame, however many requests
            with self._lock:
                path = self._files.get(spec.key)
                if path is not None:
                    self._files.move_to_end(spec.key)
                    return open(path, "rb")
            data = frame_bytes(spec)
            path = os.path.join(self.directory, spec.file_name)
            write_bytes(path, data)
            with self._lock:
                self._files[spec.key] = path
                self._sizes[spec.key] = len(data)
                while len(self._files) > self.max_files:
                    _, old = self._files.popitem(last=False)
                    os.remove(old)           # readers that opened it keep their handle
                return open(path, "rb")

    def size(self, spec):
        """The frame's size in bytes, without generating it where its layout fixes it."""
        with self._lock:
            known = self._sizes.get(spec.key)
        if known is not None:
            return known
        if not _variable_size(spec):
            return QR2_FRAME_BYTES
        fixed = getattr(spec, "file_size", None)   # pipeline 7: padded to a known size
        if fixed is not None:
            return fixed
        with self.open(spec) as f:
            return os.fstat(f.fileno()).st_size

    def clear(self):
        with self._lock:
            for path in self._files.values():
                os.remove(path)
            self._files.clear()

    def close(self):
        shutil.rmtree(self.directory, ignore_errors=True)


#: Every pipeline < 7 frame: six uncompressed HDUs of fixed shapes (a test checks it).
QR2_FRAME_BYTES = 71_637_120


def _variable_size(spec):
    """Whether a frame's size depends on its content (tile-compressed FLAGS, pipeline 7)."""
    return getattr(spec, "pipeline", 6) >= 7


_frames = None
_frames_lock = threading.Lock()


def frame_cache():
    """The process-wide frame cache (its directory is removed at exit)."""
    global _frames
    with _frames_lock:
        if _frames is None:
            _frames = FrameCache()
            atexit.register(_frames.close)
        return _frames


_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def parse_range(header, size):
    """``(start, stop)`` of a single-range ``Range`` header, None to send everything, or
    ``'unsatisfiable'``."""
    if not header:
        return None
    m = _RANGE.fullmatch(header.strip())
    if not m or not (m.group(1) or m.group(2)):
        return None                          # multi-range or malformed: RFC 9110 lets us ignore
    if m.group(1):
        start = int(m.group(1))
        stop = min(int(m.group(2)) + 1, size) if m.group(2) else size
        if m.group(2) and int(m.group(2)) < start:
            return None
    else:
        start, stop = max(size - int(m.group(2)), 0), size
    if start >= size or stop <= start:
        return "unsatisfiable"
    return start, stop


def ranged(body_at, size, range_header, headers):
    """Apply a Range header; ``body_at(start, stop)`` makes the body for a byte span."""
    span = parse_range(range_header, size)
    if span == "unsatisfiable":
        return Response(416, "text/plain", b"", [("Content-Range", f"bytes */{size}")] + headers)
    if span is None:
        return Response(200, FITS_TYPE, body_at(0, size), headers)
    start, stop = span
    return Response(206, FITS_TYPE, body_at(start, stop),
                    [("Content-Range", f"bytes {start}-{stop - 1}/{size}")] + headers)


def _flag(value, name):
    v = value.strip().lower()
    if v in ("true", "1", "yes", "on"):
        return True
    if v in ("false", "0", "no", "off"):
        return False
    raise SpherexInputError(f"{name}={value!r}: use true or false")


#: A ranged GET of a frame not in the frame cache is assembled from the frame's layout
#: (:mod:`.synthetic.layout`) when it needs at most this many rows of image planes; a larger
#: span renders the whole frame into the cache, as a GET without ``Range`` does.
LAZY_MAX_ROWS = 512


class _LayoutFile:
    """A full frame as a read-only file assembled from its layout (only what is read is made)."""

    def __init__(self, spec):
        self.spec, self.pos = spec, 0

    def seek(self, pos):
        self.pos = pos

    def read(self, n):
        from .synthetic.layout import frame_layout

        data = frame_layout(self.spec).bytes_at(self.pos, self.pos + n)
        self.pos += len(data)
        return data

    def close(self):
        pass


def serve_frame(spec, range_header, headers, method="GET"):
    """Answer a GET/HEAD of a whole frame (``headers``: extra response headers).

    A frame in the frame cache is served from disk. Otherwise a HEAD renders nothing, a
    ranged GET of at most :data:`LAZY_MAX_ROWS` rows is assembled from the layout (the same
    bytes), and any other GET renders the frame into the cache.
    """
    cache = frame_cache()
    size = cache.size(spec)
    f = cache.cached(spec)
    if f is None:
        span = parse_range(range_header, size)
        if method == "HEAD":
            f = _LayoutFile(spec)              # never read: the HTTP layer sends headers only
        elif isinstance(span, tuple):
            from .synthetic.layout import frame_layout

            layout = frame_layout(spec)
            if layout.rows_needed(*span) <= LAZY_MAX_ROWS:
                return ranged(layout.bytes_at, layout.size, range_header, headers)
        if f is None:
            f = cache.open(spec)
    response = ranged(lambda a, b: FileBody(f, a, b - a), size, range_header, headers)
    if not isinstance(response.body, FileBody):
        f.close()                              # else the HTTP layer closes it after sending
    return response


def serve_file(spec, params, range_header=None, gzip_default=False, cutout_flags="compressed",
               method="GET"):
    """Answer a GET/HEAD for one file (``params``: lower-case name -> first value);
    ``cutout_flags`` says how FLAGS of a pipeline-7 cutout is written."""
    headers = [("Accept-Ranges", "bytes"),
               ("Content-Disposition", f'inline; filename="{spec.file_name}"')]
    if "center" not in params and "size" not in params:
        return serve_frame(spec, range_header, headers, method)
    try:
        cut = parse_cutout(params.get("center"), params.get("size"))
        use_gzip = _flag(params["gzip"], "gzip") if "gzip" in params else gzip_default
    except SpherexInputError as e:
        return error_document(400, f"UsageFault: BAD_REQUEST: {e}")
    body = _cutout_body(spec, cut, use_gzip, cutout_flags)
    if body is None:
        return error_document(400, "UsageFault: BAD_REQUEST: the requested region does not "
                                   f"overlap the image {spec.file_name}")
    return ranged(lambda a, b: body[a:b], len(body), range_header, headers)


def _cutout_body(spec, cut, use_gzip, cutout_flags="compressed"):
    from .synthetic import cutout_bytes, cutout_window, frame_wcs

    ra, dec = cut.ra, cut.dec
    if cut.in_pixels:
        ra, dec = (float(v) for v in frame_wcs(spec).all_pix2world(cut.x, cut.y, 0))
    window = cutout_window(spec, ra, dec, cut.width_px, cut.height_px)
    if window is None:
        return None
    body = cutout_bytes(spec, *window, flags=cutout_flags)
    return gzip.compress(body, compresslevel=6, mtime=0) if use_gzip else body
