"""Open SPHEREx Level-2 spectral images: full frames, IRSA cutouts and combined cutout files.

A product is recognised by content, never by file name, position or release: an ``IMAGE``
extension with ``DETECTOR`` and the ``W`` spectral WCS, plus ``FLAGS``, ``VARIANCE``,
``ZODI``, a PSF and ``WCS-WAVE``. Both layouts are read -- pipeline < 7 (int32 FLAGS, a
``PSF`` cube) and pipeline 7 (FLAGS possibly tile-compressed, an ``EPSF`` table,
:mod:`glue_spherex.products.epsf`) -- and combined files (:mod:`glue_spherex.products.combined`,
and those of IRSA's cutouts tutorial). Files opened from a path are memory-mapped and no pixel
data is read until asked for; what a user can get wrong raises
:class:`~glue_spherex.errors.SpherexFormatError`. Layouts: ``docs/format.rst``.
"""

from __future__ import annotations

import io
import math
import mmap
import os
import re
import threading
from collections.abc import Mapping
from functools import cached_property

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyError
from astropy.wcs import WCS, NoConvergence
from astropy.wcs.utils import wcs_to_celestial_frame

from ..errors import SpherexError, SpherexFormatError, SpherexInputError
from ..fitsbytes.scan import (
    END_CARD,
    aligned_find,
    card_comment,
    card_value,
    header_cards,
    image_array,
    scan_hdus,
    string_card,
    table_array,
    table_columns,
    table_row,
    unwrap,
)
from .celestial import build_celestial_wcs, celestial_values, separation_deg, sip_matrices
from .epsf import EffectivePSF
from .flags import flag_bits
from .wavelength import SpectralWCS, WaveTable

__all__ = ["SpectralImage", "open_products", "is_spherex_product", "provenance", "KINDS", "open_backing", "read_cutout_info", "backing_products"]

#: The extensions of one spectral image, in file order (PRIMARY excluded). ``PSF`` stands for
#: the image's PSF extension: the ``PSF`` cube or, in pipeline-7 files, the ``EPSF`` table.
KINDS = ("IMAGE", "FLAGS", "VARIANCE", "ZODI", "PSF", "WCS-WAVE")
_IMAGE_KINDS = ("IMAGE", "FLAGS", "VARIANCE", "ZODI")
_INDEXED = re.compile(r"^IMAGE([1-9]\d{0,8})$")  # as the writer names them: no leading 0
_PSF_EXTNAMES = ("PSF", "EPSF")
# The cards astropy needs to decompress a tile-compressed image (the rest, e.g. 80 MSKN/MSKM
# cards, only slows its header conversion down).
_COMPRESSION_CARD = re.compile(
    r"^(XTENSION|BITPIX|NAXIS\d*|PCOUNT|GCOUNT|TFIELDS|THEAP|T(TYPE|FORM|DIM|SCAL|ZERO)\d+|"
    r"Z(IMAGE|SIMPLE|TENSION|BITPIX|NAXIS\d*|TILE\d+|CMPTYPE|NAME\d+|VAL\d+|QUANTIZ|"
    r"DITHER0|BLANK|SCALE|ZERO|PCOUNT|GCOUNT|MASKCMP))$")
_MAX_FLAGS_PIXELS = 4096 * 4096
#: A minimal PRIMARY header, for handing astropy one extension as a whole file.
_EMPTY_PRIMARY = (("SIMPLE  =                    T" + " " * 50
                   + "BITPIX  =                    8" + " " * 50
                   + "NAXIS   =                    0" + " " * 50
                   + "EXTEND  =                    T" + " " * 50
                   + "END").ljust(2880)).encode("ascii")
_PROCESSING = re.compile(r"l2b(?:_retry)?-v\d+-\d{4}-\d{3}", re.IGNORECASE)
_RELEASE = re.compile(r"(?:^|[/_?=&])(qr\d+)(?=$|[/_&?])", re.IGNORECASE)
_GZIP_MAGIC = b"\x1f\x8b"
_FITS_MAGIC = b"SIMPLE  ="
_NEAR_DEG = 10.0
#: Largest image axis accepted (a full frame is 2040 x 2040).
MAX_IMAGE_AXIS = 4096
_MAX_ZONES = 64 * 64
_MAX_PIXEL = 1e6  # |CRPIXnA| bound: parent-frame offsets are a few thousand pixels
# What astropy's table and WCS parsers raise on hostile values (their checks include asserts
# and attribute access on values of the wrong type); caught only around those calls.
_ASTROPY_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, VerifyError,
                   AttributeError, AssertionError)
_CD_PV = re.compile(r"^(CD|PV)\d_\d+$")
_CELESTIAL_KEY = re.compile(
    r"^(NAXIS\d?|WCSAXES|CRPIX\d|CRVAL\d|CDELT\d|CUNIT\d|CTYPE\d|PC\d_\d|CD\d_\d|PV\d_\d+|"
    r"LONPOLE|LATPOLE|RADESYS|EQUINOX|MJDREF|DATE-OBS|MJD-OBS|(A|B|AP|BP)_(ORDER|\d+_\d+))$"
)


# --------------------------------------------------------------------------------------
# The open file behind one or more SpectralImages
# --------------------------------------------------------------------------------------

class _Backing:
    """The bytes of one FITS file, shared by every SpectralImage read from it.

    ``buffer`` is a read-only memory map of a file or a bytes object. The HDUs are located
    by the header scan of :mod:`glue_spherex.fitsbytes.scan` (which also rejects truncated files);
    keywords are read from the cards, a header is parsed by astropy only when someone asks
    for it, and arrays are views of the buffer. Opening a 700-cutout file therefore reads
    4,200 small headers instead of parsing them (about 1 s instead of 7 s).
    """

    def __init__(self, buffer, label):
        self.buffer = buffer
        self.label = label
        self.spans = scan_hdus(buffer, label)
        self.index = {}
        for span in self.spans:
            self.index.setdefault(span.extname, span)
        self._cards = {}
        self._headers = {}
        self._users = 0
        self._lock = threading.Lock()

    @cached_property
    def cutouts(self):
        """Indices n of the IMAGEn extensions, in file order."""
        return [int(m.group(1)) for name in self.index if (m := _INDEXED.match(name))]

    def __contains__(self, name):
        return name.upper() in self.index

    def span(self, name):
        try:
            return self.index[name.upper()]
        except KeyError:
            raise SpherexFormatError(f"{self.label}: no {name} extension") from None

    def read(self, offset, n):
        """``n`` bytes of the file from ``offset`` (a view, not a copy)."""
        return memoryview(self.buffer)[offset:offset + n]

    def keywords(self, name):
        """The value cards of a header as a read-only mapping (values parsed on access)."""
        cards = self._cards.get(name)
        if cards is None:
            cards = self._cards[name] = _Keywords(header_cards(self.buffer, self.span(name)),
                                                  f"{self.label} {name}")
        return cards

    def header(self, name):
        """The astropy Header of one HDU (parsed on first use)."""
        header = self._headers.get(name)
        if header is None:
            span = self.span(name)
            raw = bytes(self.read(span.header_start, span.data_start - span.header_start))
            try:
                header = fits.Header.fromstring(raw.decode("latin-1"))
            except (ValueError, VerifyError) as exc:
                raise SpherexFormatError(f"{self.label}: unreadable {name} header ({exc})") \
                    from None
            self._headers[name] = header
        return header

    def array(self, name):
        """The data of an image HDU, a view of the file."""
        return image_array(self.buffer, self.span(name), f"{self.label} {name}")

    def hdu(self, name):
        """An astropy BinTableHDU (header and data) of one table extension.

        The table's layout is checked first (:func:`~glue_spherex.fitsbytes.scan.table_columns`),
        so astropy only ever sees column formats and heap pointers that fit the bytes.
        """
        span = self.span(name)
        where = f"{self.label} {name}"
        table_columns(self.buffer, span, self.keywords(name).cards, where)
        try:
            hdu = fits.BinTableHDU.fromstring(bytes(self.read(span.header_start,
                                                              span.end - span.header_start)))
            hdu.data  # noqa: B018 -- parse the columns here, where errors are converted
        except _ASTROPY_ERRORS as exc:
            raise SpherexFormatError(f"{where}: unreadable table ({exc})") from None
        return hdu

    def is_compressed(self, name):
        """True if the HDU is a tile-compressed image (a BINTABLE with ``ZIMAGE = T``)."""
        h = self.keywords(name)
        return (str(h.get("XTENSION", "")).strip() == "BINTABLE"
                and h.get("ZIMAGE") is True)

    def table(self, name):
        """Every row of a binary table HDU as a structured array over the file (no copy)."""
        return table_array(self.buffer, self.span(name), self.keywords(name).cards,
                           f"{self.label} {name}")

    def compressed_hdu(self, name, full_header=False):
        """The :class:`astropy.io.fits.CompImageHDU` of a tile-compressed image HDU.

        astropy's own codec does the decompression, on just this HDU's bytes. Unless
        ``full_header``, astropy sees only the structural and Z cards (the data bytes are the
        same), which makes its header conversion several times cheaper.
        """
        span = self.span(name)
        label = f"{self.label} {name}"
        h = self.keywords(name)
        table_columns(self.buffer, span, h.cards, label)  # every tile inside the heap
        try:
            zbitpix = int(h["ZBITPIX"])
            axes = [int(h[f"ZNAXIS{i}"]) for i in range(1, int(h["ZNAXIS"]) + 1)]
        except (KeyError, TypeError, ValueError):
            raise SpherexFormatError(f"{label}: compressed image without valid "
                                     "ZBITPIX/ZNAXIS/ZNAXISn cards") from None
        if zbitpix not in (8, 16, 32, 64, -32, -64) or not axes or \
                any(n < 0 for n in axes) or math.prod(axes) > _MAX_FLAGS_PIXELS:
            raise SpherexFormatError(f"{label}: compressed image of unsupported type or size "
                                     f"(ZBITPIX {zbitpix}, ZNAXISn {axes})")
        if full_header:
            raw = bytes(self.read(span.header_start, span.end - span.header_start))
        else:
            cards = "".join(card for key, card in h.cards.items()
                            if _COMPRESSION_CARD.match(key))
            head = (cards + END_CARD.decode()).encode("latin-1")
            head += b" " * (-len(head) % 2880)
            raw = head + bytes(self.read(span.data_start, span.end - span.data_start))
        try:
            # behind an empty PRIMARY, astropy's reader recognises the tile-compressed table
            # itself (every astropy version we support; CompImageHDU(bintable=) is 7.0+ only)
            hdul = fits.open(io.BytesIO(_EMPTY_PRIMARY + raw), mode="readonly")
            hdu = hdul[1]
            if not isinstance(hdu, fits.CompImageHDU):
                raise ValueError("not recognised as a compressed image")
            return hdu
        except Exception as exc:  # noqa: BLE001 -- astropy's VerifyError is no ValueError
            raise SpherexFormatError(f"{label}: unreadable compressed image ({exc})") from None

    def decompressed(self, name):
        """The data of a tile-compressed image HDU as a numpy array (decompressed now)."""
        hdu = self.compressed_hdu(name)
        try:
            data = hdu.data
        except Exception as exc:  # noqa: BLE001 -- the codec raises its own CfitsioException
            raise SpherexFormatError(f"{self.label} {name}: cannot decompress ({exc})") from None
        if data is None:
            raise SpherexFormatError(f"{self.label} {name}: compressed image has no data")
        return data

    def acquire(self):
        with self._lock:
            self._users += 1

    def release(self):
        # Arrays handed out keep the mapping alive (numpy holds a reference); the backing
        # only forgets it, so a closed image cannot read any more.
        with self._lock:
            self._users -= 1
            if self._users == 0:
                self.buffer = b""

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


class _Keywords(Mapping):
    """``{keyword: value}`` of one header, each value parsed from its card when read."""

    def __init__(self, cards, label):
        self.cards = cards
        self.label = label

    def __getitem__(self, key):
        return card_value(self.cards[key], self.label)

    def __contains__(self, key):
        return key in self.cards

    def __iter__(self):
        return iter(self.cards)

    def __len__(self):
        return len(self.cards)


def open_backing(source):
    """Open ``source`` (path, bytes, file object or HDUList) as a :class:`_Backing`."""
    if isinstance(source, fits.HDUList):
        info = source.fileinfo(0) if len(source) else None
        label = (info or {}).get("filename") or "<HDUList>"
        buf = io.BytesIO()
        if len(source) and not isinstance(source[0], fits.PrimaryHDU):  # extensions only
            source = fits.HDUList([fits.PrimaryHDU(), *source])
        try:
            source.writeto(buf, output_verify="ignore")
        except (OSError, ValueError, TypeError) as exc:
            raise SpherexFormatError(f"{label}: cannot serialise the HDUList ({exc})") from None
        return _from_bytes(buf.getvalue(), label)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _from_bytes(bytes(source), f"<{len(source)} bytes>")
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            with open(path, "rb") as f:
                head = f.read(len(_FITS_MAGIC))
                if head.startswith(_GZIP_MAGIC):
                    f.seek(0)
                    return _from_bytes(f.read(), path)
        except FileNotFoundError:
            raise SpherexInputError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise SpherexInputError(f"{path}: is a directory, expected a FITS file") from None
        except OSError as exc:
            raise SpherexInputError(f"{path}: cannot read the file ({exc.strerror})") from None
        _check_magic(head, path)
        return _mapped_backing(path)
    if hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise SpherexInputError("file objects must be opened in binary mode ('rb')")
        return _from_bytes(bytes(data), str(getattr(source, "name", "<file object>")))
    raise SpherexInputError(
        f"cannot open a {type(source).__name__}; expected a path, bytes, a binary file object "
        "or an astropy HDUList"
    )


def _mapped_backing(path):
    """A backing over a read-only memory map of the file at ``path``."""
    try:
        with open(path, "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        raise SpherexInputError(f"{path}: cannot map the file ({exc})") from None
    # The header scan touches a few blocks per HDU, and a combined file's image planes are
    # small and spread over gigabytes the page cache may not hold (they are written past
    # it): no read-ahead for those (opening a cold 700-cutout file and reading its images:
    # 2.5 s instead of 4.1 s); a single product's big planes keep normal read-ahead.
    advise = getattr(mapped, "madvise", None)
    if advise is not None and hasattr(mmap, "MADV_RANDOM"):
        advise(mmap.MADV_RANDOM)
    backing = _Backing(np.frombuffer(mapped, np.uint8), path)
    if advise is not None and hasattr(mmap, "MADV_NORMAL") and "IMAGE" in backing:
        advise(mmap.MADV_NORMAL)
    return backing


def _from_bytes(data, label):
    data = unwrap(data, label)  # gzip: inflated up to fitsscan.MAX_INFLATED, else an error
    _check_magic(data[: len(_FITS_MAGIC)], label)
    return _Backing(data, label)


def _check_magic(head, label):
    if not head.startswith(_FITS_MAGIC):
        raise SpherexFormatError(f"{label}: not a FITS file (it does not start with 'SIMPLE  =')")


# --------------------------------------------------------------------------------------
# Recognising products and cutouts
# --------------------------------------------------------------------------------------

def _cutout_indices(backing):
    """``None`` for a single product, else the cutout indices present (IMAGEn) in file order."""
    if "IMAGE" in backing:
        return None
    found = backing.cutouts
    if not found:
        raise SpherexFormatError(
            f"{backing.label}: not a SPHEREx spectral image (no IMAGE extension; "
            f"extensions are {', '.join(backing.index) or 'none'})"
        )
    return found


def _resolve(backing, suffix):
    """``{kind: EXTNAME}`` of one image, after checking it looks like a SPHEREx product."""
    where = backing.label + (f" cutout {suffix}" if suffix else "")
    names = {kind: f"{kind}{suffix}" for kind in KINDS}
    header = backing.keywords(names["IMAGE"])
    if "DETECTOR" not in header or str(header.get("CTYPE1W", "")).strip() != "WAVE-TAB":
        raise SpherexFormatError(
            f"{where}: not a SPHEREx spectral image (IMAGE{suffix} has no DETECTOR keyword "
            "or no WAVE-TAB spectral WCS 'W')"
        )
    # The tutorial's combined files rename the table but leave PS1_0W = 'WCS-WAVE'.
    table = str(header.get("PS1_0W", "WCS-WAVE")).strip()
    names["WCS-WAVE"] = table if table in backing else names["WCS-WAVE"]
    # The PSF extension: the PSF cube (pipeline < 7) or the EPSF table (pipeline 7)
    present = [f"{n}{suffix}" for n in _PSF_EXTNAMES if f"{n}{suffix}" in backing]
    if len(present) == 2:  # never seen; the file's VERSION says which one applies
        present = present[1:] if (_pipeline(_primary_version(backing)) or 0) >= 7 \
            else present[:1]
    if present:
        names["PSF"] = present[0]
    elif suffix and psf_omitted(backing):  # a combined file written with psf='none'
        names["PSF"] = None
    else:
        raise SpherexFormatError(f"{where}: missing extension PSF{suffix} (or EPSF{suffix})")
    for kind, name in names.items():
        if name is not None and name not in backing:
            what = "wavelength table" if kind == "WCS-WAVE" else "extension"
            raise SpherexFormatError(f"{where}: missing {what} {name}")
    _check_planes(backing, names, where)
    return names


#: PRIMARY keyword of a combined file whose cutouts were written without their PSF extension
PSF_OMITTED_KEY = "PSFOMIT"


def psf_omitted(backing):
    """True if ``backing`` is a combined file written without PSF extensions (``PSFOMIT = T``)."""
    first = backing.spans[0]
    return first.extname == "PRIMARY" and backing.keywords("PRIMARY").get(PSF_OMITTED_KEY) is True


def _check_planes(backing, names, where):
    """IMAGE is a 2-D image of at most MAX_IMAGE_AXIS pixels a side; the other image
    extensions (FLAGS too, unless it is a tile-compressed table) have its shape."""
    shape = backing.span(names["IMAGE"]).shape
    if len(shape) != 2 or not all(1 <= n <= MAX_IMAGE_AXIS for n in shape):
        raise SpherexFormatError(
            f"{where}: {names['IMAGE']} is not a 2-D image of 1 to {MAX_IMAGE_AXIS} pixels a "
            f"side (NAXIS = {len(shape)}, NAXISn = {tuple(reversed(shape))})")
    for kind in _IMAGE_KINDS[1:]:
        span = backing.span(names[kind])
        if kind == "FLAGS" and len(span.shape) == 2 and span.bitpix == 8 \
                and "ZIMAGE" in backing.keywords(names[kind]):
            # tile-compressed: the image it holds must have IMAGE's shape
            h = backing.keywords(names[kind])
            zshape = tuple(h.get(f"ZNAXIS{i}") for i in (2, 1))
            if h.get("ZNAXIS") != 2 or zshape != shape:
                raise SpherexFormatError(
                    f"{where}: {names[kind]} holds a compressed image of ZNAXISn = "
                    f"{tuple(reversed(zshape))} (ZNAXIS = {h.get('ZNAXIS')}), IMAGE has "
                    f"{tuple(reversed(shape))}")
            continue
        if span.shape != shape:
            raise SpherexFormatError(
                f"{where}: {names[kind]} has shape NAXISn = {tuple(reversed(span.shape))}, "
                f"IMAGE has {tuple(reversed(shape))}")



def _primary_version(backing):
    first = backing.spans[0]
    if first.extname != "PRIMARY":
        return None
    return backing.keywords("PRIMARY").get("VERSION")


def _pipeline(version):
    """Major pipeline version of a ``VERSION`` string such as ``'7.0.5'`` or ``'6.4+psffix1'``."""
    m = re.match(r"\s*v?(\d+)", str(version)) if version is not None else None
    return int(m.group(1)) if m else None


def _from_path(pattern, *texts):
    for text in texts:
        m = pattern.search(text or "") if isinstance(text, str) else None
        if m:
            return m.group(m.lastindex or 0).lower()
    return None


def provenance(*texts):
    """``{'release': 'qr3' | ..., 'processing': 'l2b-v27-2026-222' | ...}`` from URLs or paths.

    The first text holding a release (``/qr3/``, ``spherex_qr2``, ...) or an IRSA processing
    tag (``l2b-v27-…``, ``l2b_retry-v26-…``) gives it; None where none does.
    """
    return {"release": _from_path(_RELEASE, *texts),
            "processing": _from_path(_PROCESSING, *texts)}


def read_cutout_info(backing, complete=False):
    """``{cutout_index: row dict}`` from CUTOUT_INFO (empty if the file has none).

    With ``complete``, a row with status 'ok' whose cutout is not in the file (a file cut
    short at an HDU boundary) is a SpherexFormatError rather than silence.
    """
    if "CUTOUT_INFO" not in backing:
        return {}
    rows = _info_rows(backing)
    if complete:
        present = set(backing.cutouts)
        absent = [i for i, row in rows.items() if row.get("status") == "ok" and i not in present]
        if absent:
            raise SpherexFormatError(f"{backing.label}: {_truncation(backing, absent)}")
    return rows


def _info_rows(backing):
    try:
        data = backing.hdu("CUTOUT_INFO").data
        columns = [c.lower() for c in data.columns.names]
        rows = {}
        for rec in data:
            row = {c: _plain(rec[i]) for i, c in enumerate(columns)}
            rows[int(row["cutout_index"])] = row
        return rows
    except SpherexFormatError:
        raise
    except _ASTROPY_ERRORS as exc:
        raise SpherexFormatError(f"{backing.label}: unreadable CUTOUT_INFO table ({exc})") from None


def _plain(value):
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, str):  # printable ASCII, as FITS allows (and astropy requires)
        return "".join(c if " " <= c <= "~" else "?" for c in value).rstrip()
    return value.item() if hasattr(value, "item") else value


def _image(backing, index, info):
    indices = _cutout_indices(backing)
    if indices is None:
        if index is not None:
            raise SpherexFormatError(
                f"{backing.label}: index={index!r} given, but this is a single spectral image, "
                "not a combined cutout file"
            )
        return SpectralImage(backing, "")
    if index is None:
        if len(indices) != 1:
            raise SpherexFormatError(
                f"{backing.label}: combined file with {len(indices)} cutouts; "
                f"pass index= one of {_brief(sorted(indices))}"
            )
        index = indices[0]
    try:
        index = int(index)
    except (TypeError, ValueError):
        raise SpherexFormatError(f"{backing.label}: bad cutout index {index!r}") from None
    if index not in indices:
        row = info.get(index, {})
        if row.get("status") == "ok":
            raise SpherexFormatError(f"{backing.label}: {_truncation(backing, [index])}")
        if row.get("status") in ("failed", "missing"):
            raise SpherexFormatError(
                f"{backing.label}: cutout {index} is not in the file (status {row['status']}: "
                f"{row.get('reason') or 'no reason recorded'})"
            )
        raise SpherexFormatError(
            f"{backing.label}: no cutout {index}; available: {_brief(sorted(indices))}"
        )
    row = info.get(index, {})
    return SpectralImage(
        backing, str(index), version=row.get("version") or None,
        access_url=row.get("access_url") or None, cutout_index=index,
        release=row.get("release") or None, processing=row.get("processing") or None,
    )


def _truncation(backing, absent):
    """Why cutouts CUTOUT_INFO lists as downloaded are absent: the file was cut short."""
    last = backing.spans[-1]
    return (f"the file is truncated: CUTOUT_INFO lists cutout(s) {_brief(sorted(absent))} as "
            f"downloaded, but the file ends after {last.extname or 'HDU ' + str(last.index)} "
            f"(byte {last.end}); the complete cutouts open one by one with "
            "SpectralImage.open(path, index=n)")


def _brief(values, n=10):
    shown = ", ".join(str(v) for v in values[:n])
    return shown + (f", ... ({len(values)} in all)" if len(values) > n else "")


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------

class SpectralImage:
    """One SPHEREx Level-2 spectral image (full frame or cutout) and its calibration.

    Open with :meth:`open` or :func:`open_products`; close with :meth:`close` or a
    ``with`` block. Pixel coordinates are 0-based ``(x, y)``, arrays are ``[y, x]``.
    """

    def __init__(self, backing, suffix, *, version=None, access_url=None, cutout_index=None,
                 release=None, processing=None):
        names = _resolve(backing, suffix)
        self._backing = backing
        self._names = names
        self._closed = False
        self.suffix = suffix
        #: ``{keyword: value}`` of the IMAGE header, read from its cards without astropy
        self.keywords = h = backing.keywords(names["IMAGE"])
        #: astropy Headers of PRIMARY and of each extension, each parsed on first access
        self.headers = _Headers(backing, names)
        if suffix:
            primary = fits.Header()
            if version:
                primary["VERSION"] = version
            self.headers.set("PRIMARY", primary)
        else:
            if backing.spans[0].extname == "PRIMARY":
                version = version or backing.keywords("PRIMARY").get("VERSION")
        self.version = str(version).strip() if version is not None else None
        self.shape = backing.span(names["IMAGE"]).shape  # checked 2-D by _resolve
        self.obsid = str(h.get("OBSID", "")).strip()
        self.detector = _integer(h, "DETECTOR", f"{backing.label} {names['IMAGE']}", 1, 6)
        self.bandpass = f"SPHEREx-D{self.detector}"
        self.mjd_beg = _float(h, "MJD-BEG", _MAX_MJD)
        self.mjd_avg = _float(h, "MJD-AVG", _MAX_MJD)
        self.mjd_end = _float(h, "MJD-END", _MAX_MJD)
        self.exptime = _float(h, "XPOSURE")
        self.psf_fwhm = _float(h, "PSF_FWHM")
        self.access_url = access_url
        self.cutout_index = cutout_index
        #: ``'cube'`` (the PSF extension, pipeline < 7), ``'epsf'`` (the EPSF table), or
        #: None: a cutout of a combined file written with ``psf='none'`` (no PSF extension;
        #: :attr:`psf_fwhm` is what is left of the PSF)
        self.psf_kind = None if names["PSF"] is None else \
            "epsf" if names["PSF"].startswith("EPSF") else "cube"
        #: True if FLAGS is stored tile-compressed (decompressed by astropy when read)
        self.flags_compressed = backing.is_compressed(names["FLAGS"])
        #: major pipeline version (``6``, ``7``); from VERSION, else from the layout
        self.pipeline = _pipeline(self.version)
        if self.pipeline is None:
            self.pipeline = 7 if self.psf_kind == "epsf" or self.flags_compressed else None
        label = backing.label if isinstance(backing.label, str) else None
        #: processing tag such as ``'l2b-v27-2026-222'`` (from the URL or file name), or None
        self.processing = processing or _from_path(_PROCESSING, access_url, label)
        #: ``'qr2'``, ``'qr3'``, ... from a ``RELEASE`` card, the URL or the path, or None
        card = h.get("RELEASE") or (backing.keywords("PRIMARY").get("RELEASE")
                                    if not suffix and backing.spans[0].extname == "PRIMARY"
                                    else None)
        self.release = (release or (str(card).strip().lower() if card else None)
                        or _from_path(_RELEASE, access_url, label))
        self._wave = None
        self._flags = None
        backing.acquire()

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, source, index=None):
        """Open a spectral image from a path, (gzipped) bytes, a binary file object or an HDUList.

        ``index`` picks the cutout of a combined file (``IMAGE{index}`` ...); it is required
        when that file holds more than one cutout.
        """
        with open_backing(source) as backing:
            return _image(backing, index, read_cutout_info(backing))

    @classmethod
    def from_buffer(cls, buffer, label, **provenance):
        """A single spectral image over ``buffer`` (a 1-D uint8 array), without copying it.

        For files read in part by byte ranges (:mod:`glue_spherex.products.partial`): every
        header must be in place; data not yet read are zeros. ``provenance`` is
        ``access_url``, ``release`` and ``processing``, as the fetcher records them.
        """
        if not (isinstance(buffer, np.ndarray) and buffer.dtype == np.uint8 and buffer.ndim == 1):
            raise SpherexInputError("from_buffer needs a 1-D uint8 numpy array")
        _check_magic(bytes(buffer[:len(_FITS_MAGIC)]), label)
        with _Backing(buffer, label) as backing:
            return cls(backing, "", **provenance)

    def close(self):
        """Release the file (closed when the last image read from it is closed)."""
        if not self._closed:
            self._closed = True
            self._backing.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def keywords_of(self, kind):
        """``{keyword: value}`` of one extension's header (``'FLAGS'``, ``'PSF'``, ...), read
        from its cards without astropy, like :attr:`keywords` for IMAGE."""
        if kind == "PSF" and self._names.get("PSF", "") is None:
            raise SpherexInputError(self._no_psf())
        if kind not in self._names:
            raise SpherexInputError(f"no {kind!r} extension; the extensions are "
                                    f"{', '.join(self._names)}")
        return self._backing.keywords(self._names[kind])

    @property
    def header(self):
        """The astropy Header of IMAGE (parsed on first access; :attr:`keywords` is cheaper)."""
        return self.headers["IMAGE"]

    def __repr__(self):
        where = f" cutout {self.cutout_index}" if self.cutout_index is not None else ""
        return (f"<SpectralImage {self.obsid} D{self.detector} {self.shape[1]}x{self.shape[0]}"
                f"{where} from {self._backing.label}>")

    # -- pixel data ------------------------------------------------------------------------

    def _check_open(self):
        if self._closed:
            raise SpherexInputError(f"{self!r} is closed")

    @property
    def has_psf(self):
        """False for a cutout of a combined file written with ``psf='none'``."""
        return self.psf_kind is not None

    def _no_psf(self):
        return (f"{self._backing.label} cutout {self.suffix}: no PSF extension (the file was "
                "written with psf='none'); only the header's PSF_FWHM is known")

    def _data(self, kind):
        self._check_open()
        if kind == "PSF" and self.psf_kind is None:
            raise SpherexInputError(self._no_psf())
        try:
            if kind == "WCS-WAVE":
                return self._backing.hdu(self._names[kind]).data
            if kind == "PSF" and self.psf_kind == "epsf":
                return self._epsf._rows["EPSF"]
            if kind == "FLAGS" and self.flags_compressed:
                if self._flags is None:
                    flags = self._backing.decompressed(self._names[kind])
                    if flags.shape != self.shape:
                        raise SpherexFormatError(
                            f"{self._backing.label}: {self._names[kind]} is {flags.shape}, "
                            f"IMAGE is {self.shape}")
                    self._flags = flags
                return self._flags
            return self._backing.array(self._names[kind])
        except (OSError, ValueError, TypeError) as exc:
            raise SpherexFormatError(
                f"{self._backing.label}: cannot read {self._names[kind]} ({exc})"
            ) from None

    @property
    def image(self):
        """Surface brightness (MJy/sr), zodiacal light not subtracted."""
        return self._data("IMAGE")

    @property
    def flags(self):
        """int32 bitmap; see :mod:`glue_spherex.products.flags` and :attr:`flag_bits`.

        A tile-compressed FLAGS (pipeline 7) is decompressed on first access and kept.
        """
        return self._data("FLAGS")

    def compressed_flags(self):
        """The tile-compressed FLAGS as an astropy CompImageHDU (its ``section`` decompresses
        only the tiles of the rows asked for); SpherexFormatError if FLAGS is not compressed."""
        if not self.flags_compressed:
            raise SpherexFormatError(f"{self._backing.label}: FLAGS is not tile-compressed")
        return self._backing.compressed_hdu(self._names["FLAGS"])

    @property
    def variance(self):
        """Variance of :attr:`image`, (MJy/sr)^2."""
        return self._data("VARIANCE")

    @property
    def zodi(self):
        """Zodiacal light model (MJy/sr)."""
        return self._data("ZODI")

    @property
    def psf(self):
        """The PSF of every zone, ``(zones, ny, nx)``; read on first use.

        Pipeline < 7: the ``(121, 101, 101)`` PSF cube (11x11 zones, 10x oversampled).
        Pipeline 7: the EPSF table's arrays, ``(441, 33, 33)`` (``(451, 33, 33)`` on D3),
        effective PSFs 5x oversampled -- see :attr:`psf_kind` and :attr:`epsf`.
        """
        return self._data("PSF")

    @property
    def psf_oversampling(self):
        """PSF samples per detector pixel (``OVERSAMP`` of the cube, ``OVSMPX`` of the EPSF)."""
        if self.psf_kind == "epsf":
            return self._epsf.oversampling[1]
        if self.psf_kind is None:
            raise SpherexInputError(self._no_psf())
        return int(self._backing.keywords(self._names["PSF"]).get("OVERSAMP", 10))

    @property
    def epsf(self):
        """The :class:`~glue_spherex.products.epsf.EffectivePSF` of a pipeline-7 file, else None."""
        return self._epsf if self.psf_kind == "epsf" else None

    @cached_property
    def _epsf(self):
        name = self._names["PSF"]
        h = self._backing.keywords(name)
        over = (h.get("OVSMPY", 5), h.get("OVSMPX", 5))
        return EffectivePSF(self._backing.table(name), over, f"{self._backing.label} {name}")

    # -- metadata --------------------------------------------------------------------------

    @cached_property
    def wcs(self):
        """Celestial WCS of the image (TAN with SIP)."""
        return celestial_wcs(self.keywords, label=self._backing.label)

    @property
    def parent_origin(self):
        """0-based parent-frame pixel ``(x0, y0)`` of this image's pixel (0, 0)."""
        where = f"{self._backing.label} {self._names['IMAGE']}"
        return tuple(_integral(1.0 - _real(self.keywords, f"CRPIX{i}A", where, 1.0, _MAX_PIXEL))
                     for i in (1, 2))

    @cached_property
    def flag_bits(self):
        """``{flag name: bit number}`` from the FLAGS header (``MP_*`` or ``MSKNnnnn`` cards)."""
        name = self._names["FLAGS"]
        try:  # the cards as the byte-level reader has them: no astropy Header to build
            return flag_bits(self.keywords_of("FLAGS"))
        except SpherexFormatError as exc:
            raise SpherexFormatError(f"{self._backing.label}: {exc}") from None
        except (ValueError, fits.VerifyError) as exc:  # an unparsable card
            raise SpherexFormatError(f"{self._backing.label}: unreadable {name} card ({exc})") \
                from None

    # -- wavelengths -----------------------------------------------------------------------

    @cached_property
    def spectral_wcs(self):
        """The ``W`` WCS: 0-based pixel -> (wavelength, bandwidth) in µm (read on first use).

        The table is read straight from the WCS-WAVE row bytes (astropy's table machinery
        costs milliseconds per cutout); the numbers are the same.
        """
        name = self._names["WCS-WAVE"]  # resolved by _resolve (tutorial files misname it)
        try:
            _, columns = SpectralWCS.table_reference(self.keywords)
            row = table_row(self._backing.buffer, self._backing.span(name),
                            self._backing.keywords(name).cards, name)
            return SpectralWCS.from_table(self.keywords,
                                          WaveTable.from_row(row, *columns, label=name))
        except SpherexFormatError as exc:
            raise SpherexFormatError(f"{self._backing.label}: {exc}") from None

    def _grid(self):
        if self._wave is None:
            self._wave = self.spectral_wcs.grid(self.shape)
        return self._wave

    def wavelength(self):
        """Central wavelength (µm) of every pixel, shape ``(ny, nx)``."""
        return self._grid()[0]

    def bandwidth(self):
        """Bandwidth (µm) of every pixel, shape ``(ny, nx)``."""
        return self._grid()[1]

    def pixel_to_wave(self, x, y):
        """(wavelength, bandwidth) in µm at 0-based pixel positions."""
        return self.spectral_wcs.pixel_to_wave(x, y)

    def wavelength_at(self, coord):
        """(wavelength, bandwidth) in µm at a sky position (NaN outside the table's range).

        Sky to pixel uses the celestial WCS with SIP, pixel to wavelength the ``W`` WCS
        without it -- what IRSA's tutorials call the central wavelength of a cutout.
        """
        if coord.isscalar and str(self.keywords.get("RADESYS", "ICRS")).strip() == "ICRS":
            # the fetcher asks this once per cutout: the same wcslib calls on the same
            # numbers, without SkyCoord's frame machinery (a few ms each)
            icrs = coord if coord.frame.name == "icrs" else coord.icrs
            lon, lat = np.array([icrs.ra.deg], float), np.array([icrs.dec.deg], float)
        else:
            try:
                frame = wcs_to_celestial_frame(self.wcs)
            except ValueError as exc:  # RADESYS/EQUINOX astropy has no frame for
                raise SpherexFormatError(f"{self._backing.label}: the celestial WCS has no "
                                         f"sky frame ({_one_line(exc)})") from None
            sky = coord.transform_to(frame)
            lon = np.atleast_1d(sky.spherical.lon.deg).astype(float)
            lat = np.atleast_1d(sky.spherical.lat.deg).astype(float)
        # Far from the image the TAN projection and the SIP inverse break down; such
        # positions are outside the table anyway (it spans at most the 3.5 deg parent frame).
        ny, nx = self.shape
        clon, clat = self.wcs.all_pix2world([(nx - 1) / 2], [(ny - 1) / 2], 0)
        near = separation_deg(lon, lat, float(clon[0]), float(clat[0])) < _NEAR_DEG
        x = np.full(lon.shape, np.nan)
        y = np.full(lon.shape, np.nan)
        if near.any():
            try:
                x[near], y[near] = self.wcs.all_world2pix(lon[near], lat[near], 0, quiet=False)
            except NoConvergence as exc:
                best = np.array(exc.best_solution, float)
                bad = np.union1d(np.asarray(exc.divergent or [], int),
                                 np.asarray(exc.slow_conv or [], int))
                best[bad] = np.nan
                x[near], y[near] = best[:, 0], best[:, 1]
        wl, bw = self.spectral_wcs.pixel_to_wave(x, y)
        if coord.isscalar:
            return float(wl[0]), float(bw[0])
        return wl.reshape(coord.shape), bw.reshape(coord.shape)

    # -- PSF -------------------------------------------------------------------------------

    def psf_zone(self, x, y):
        """``(ix, iy)`` PSF zone containing 0-based pixel (x, y) of this image.

        PSF cube: the zone whose centre (``XCTR_k``/``YCTR_k``, 1-based parent pixels) is
        nearest along each axis. Only the set of centre values is used, never the keyword
        number ``k``, so files hit by the ``VERSION <= 6.5.5`` erratum (zone keywords written
        y-fast while the planes are x-fast) give the same, correct zone as fixed files.
        EPSF table: ``(BINX, BINY)`` of the row whose (``XCENTER``, ``YCENTER``) (0-based
        parent pixels) is nearest to the pixel, as IRSA's PSF tutorial chooses it.
        """
        x0, y0 = self.parent_origin
        if self.psf_kind == "epsf":
            return self._epsf.bin_of(self.psf_row(x, y))
        xc, yc = self._zone_centres
        px, py = x0 + float(x) + 1.0, y0 + float(y) + 1.0
        return int(np.argmin(np.abs(xc - px))), int(np.argmin(np.abs(yc - py)))

    def psf_row(self, x, y):
        """Index into :attr:`psf` of the zone containing 0-based pixel (x, y)."""
        if self.psf_kind == "epsf":
            x0, y0 = self.parent_origin
            return self._epsf.zone(x0 + float(x), y0 + float(y))
        ix, iy = self.psf_zone(x, y)
        return iy * len(self._zone_centres[0]) + ix

    def psf_at(self, x, y):
        """The oversampled PSF of the zone containing 0-based pixel (x, y).

        101x101 at 10x for the PSF cube, 33x33 at 5x for the EPSF (an effective PSF).
        """
        return self.psf[self.psf_row(x, y)]

    @cached_property
    def _zone_centres(self):
        if self.psf_kind is None:
            raise SpherexInputError(self._no_psf())
        h = self._backing.keywords(self._names["PSF"])
        where = f"{self._backing.label} {self._names['PSF']}"
        shape = self._backing.span(self._names["PSF"]).shape
        nzone = shape[0] if len(shape) == 3 else 0
        n = math.isqrt(nzone)
        if nzone == 0 or n * n != nzone or nzone > _MAX_ZONES:
            raise SpherexFormatError(
                f"{self._backing.label}: PSF{self.suffix} is not a cube of n x n zones "
                f"(NAXIS3 = {nzone})"
            )
        centres = []
        for axis in "XY":
            keys = [f"{axis}CTR_{k}" for k in range(1, nzone + 1)]
            if any(key not in h for key in keys):  # no zone keywords: the nominal equal grid
                centres.append(0.5 + (np.arange(n) + 0.5) * 2040 / n)
                continue
            values = [_real(h, key, where, bound=_MAX_PIXEL) for key in keys]
            unique = np.unique(np.round(np.asarray(values, float), 3))
            if len(unique) != n:
                raise SpherexFormatError(
                    f"{self._backing.label}: PSF{self.suffix} zone keywords {axis}CTR_* give "
                    f"{len(unique)} distinct centres, expected {n}"
                )
            centres.append(unique)
        return tuple(centres)

    # -- writing -----------------------------------------------------------------------------

    def _extension_bytes(self, suffix, psf=True):
        """The six extensions as file bytes, renamed for ``suffix`` (five without the PSF
        extension when ``psf`` is false or the image has none).

        Header and data blocks are copied byte for byte from the source; only the EXTNAME
        and PS1_0W/PS2_0W cards are replaced (CHECKSUM/DATASUM, now stale, are blanked), so
        the header keeps its length. This is what makes appending to a combined file cheap.
        """
        self._check_open()
        kinds = self._kinds if psf else tuple(k for k in self._kinds if k != "PSF")
        spans = [self._backing.span(self._names[kind]) for kind in kinds]
        names = [base for kind, base in zip(self._kinds, self._base_names) if kind in kinds]
        return renamed_extensions(self._backing.buffer, spans, suffix, names, kinds)

    def without_psf(self):
        """This image as a new SpectralImage held in memory without its PSF extension (as a
        cutout of a file fetched with ``psf='none'``: :attr:`psf_kind` None, aperture
        corrections from :attr:`psf_fwhm`); this one is closed. Returns self if it has none.
        """
        self._check_open()
        if self.psf_kind is None:
            return self
        index = self.cutout_index if self.cutout_index is not None else 1
        primary = fits.PrimaryHDU().header
        primary[PSF_OMITTED_KEY] = (True, "PSF extensions left out (psf='none')")
        if self.version:
            primary["VERSION"] = self.version
        chunks = [primary.tostring().encode("ascii")]
        chunks += self._extension_bytes(str(index), psf=False)
        data = b"".join(bytes(c) for c in chunks)
        image = SpectralImage(_from_bytes(data, f"{self._backing.label} (no PSF)"), str(index),
                              version=self.version, access_url=self.access_url,
                              cutout_index=self.cutout_index, release=self.release,
                              processing=self.processing)
        self.close()
        return image

    @property
    def psf_nbytes(self):
        """Bytes (header and data) of the PSF extension in the file, 0 if it has none."""
        if self.psf_kind is None:
            return 0
        span = self._backing.span(self._names["PSF"])
        return span.end - span.header_start

    @property
    def _kinds(self):
        """The kinds of extension this image has: :data:`KINDS`, less PSF if it has none."""
        return KINDS if self.psf_kind is not None else tuple(k for k in KINDS if k != "PSF")

    @property
    def _base_names(self):
        """EXTNAMEs of the extensions without the cutout index, in :attr:`_kinds` order."""
        return tuple("EPSF" if kind == "PSF" and self.psf_kind == "epsf" else kind
                     for kind in self._kinds)

    def hdulist(self, suffix=""):
        """The six extensions IMAGE ... WCS-WAVE, EXTNAME + ``suffix``, without PRIMARY.

        ``PS1_0W``/``PS2_0W`` of the image headers are pointed at ``'WCS-WAVE' + suffix`` so
        that ``WCS(hdul['IMAGE' + suffix].header, fobj=hdul, key='W')`` keeps working. The
        PSF extension keeps its name (``PSF`` or ``EPSF``); a compressed FLAGS stays a
        :class:`~astropy.io.fits.CompImageHDU` with the same compression and tiles.
        """
        hdus = []
        for kind, base in zip(self._kinds, self._base_names):
            header = self.headers[kind].copy()
            for key in ("CHECKSUM", "DATASUM", "BSCALE", "BZERO"):
                header.remove(key, ignore_missing=True, remove_all=True)
            header["EXTNAME"] = f"{base}{suffix}"
            if kind in _IMAGE_KINDS:
                for key in ("PS1_0W", "PS2_0W"):
                    if key in header:
                        header[key] = f"WCS-WAVE{suffix}"
            if kind in ("WCS-WAVE", "PSF") and base != "PSF":
                hdus.append(fits.BinTableHDU(data=self._backing.hdu(self._names[kind]).data,
                                             header=header))
            elif kind == "FLAGS" and self.flags_compressed:
                z = self._backing.keywords(self._names[kind])
                tile = tuple(int(z.get(f"ZTILE{i}", 1)) for i in (2, 1))
                hdus.append(fits.CompImageHDU(
                    data=self.flags, header=header, name=header["EXTNAME"],
                    compression_type=str(z.get("ZCMPTYPE", "RICE_1")).strip(),
                    tile_shape=tile))
            else:
                hdus.append(fits.ImageHDU(data=self._data(kind), header=header))
        return fits.HDUList(hdus)


def renamed_extensions(buffer, spans, suffix, names=KINDS, kinds=KINDS):
    """Header and data bytes of the six extensions (``spans`` in :data:`KINDS` order) renamed
    for ``suffix``: EXTNAME (and PS1_0W/PS2_0W of the image HDUs) rewritten in place with
    their comments, CHECKSUM/DATASUM (now stale) blanked, every other byte copied.

    ``names`` are the EXTNAMEs without index (``EPSF`` for a pipeline-7 PSF table); a
    compressed FLAGS is copied compressed (its ZHECKSUM/ZDATASUM blanked too)."""
    view = memoryview(buffer)
    chunks = []
    for kind, name, span in zip(kinds, names, spans):
        header = bytearray(view[span.header_start:span.data_start])
        limit = aligned_find(header, END_CARD)
        new = {"EXTNAME": f"{name}{suffix}"}
        if kind in _IMAGE_KINDS:
            new["PS1_0W"] = new["PS2_0W"] = f"WCS-WAVE{suffix}"
        for key, value in new.items():
            pos = aligned_find(header, f"{key:8}= ".encode(), limit)
            if pos >= 0:
                card = header[pos:pos + 80].decode("latin-1")
                header[pos:pos + 80] = string_card(key, value, card_comment(card))
        for key in (b"CHECKSUM= ", b"DATASUM = ", b"ZHECKSUM= ", b"ZDATASUM= "):
            pos = aligned_find(header, key, limit)
            while pos >= 0:
                header[pos:pos + 80] = b" " * 80
                pos = aligned_find(header, key, limit)
        chunks += [bytes(header), view[span.data_start:span.end]]
    return chunks


class _Headers(Mapping):
    """``{'PRIMARY' | kind: astropy Header}`` of one image, each parsed on first access."""

    def __init__(self, backing, names):
        self._backing = backing
        self._names = names
        self._set = {}

    def set(self, kind, header):
        self._set[kind] = header

    def __getitem__(self, kind):
        if kind in self._set:
            return self._set[kind]
        if kind == "PRIMARY":
            first = self._backing.spans[0]
            return self._backing.header("PRIMARY") if first.extname == "PRIMARY" \
                else fits.Header()
        if kind == "EPSF" and (self._names["PSF"] or "").startswith("EPSF"):
            kind = "PSF"
        name = self._names[kind]
        if name is None:
            raise KeyError(kind)  # no PSF extension (a file written with psf='none')
        if kind == "FLAGS" and self._backing.is_compressed(name):
            # what astropy shows for the HDU: the image header (Z cards converted)
            header = self._set.get("FLAGS")
            if header is None:
                header = self._set["FLAGS"] = self._backing.compressed_hdu(name, True).header
            return header
        return self._backing.header(name)

    def __iter__(self):
        return iter(("PRIMARY",) + tuple(k for k in KINDS if self._names[k] is not None))

    def __len__(self):
        return 1 + sum(self._names[k] is not None for k in KINDS)


def celestial_wcs(keywords, cls=WCS, cname=None, label=None):
    """The 2-D celestial WCS (TAN with SIP) from ``{keyword: value}`` of an image header.

    SPHEREx's layout (PC + CDELT, ``-TAN-SIP``) is set on wcslib directly, a tenth of the
    time of astropy's header parser (which would also digest the alternate ``A`` and ``W``
    WCSs); the same numbers reach wcslib either way. Any other layout is parsed by astropy
    from the primary WCS cards only (``fix=False``: wcslib's date fix-ups would only warn).
    """
    label = label or getattr(keywords, "label", "image")
    get = keywords.get
    layout = [str(get(f"CTYPE{i}", "")).strip() for i in (1, 2)]
    if layout == ["RA---TAN-SIP", "DEC--TAN-SIP"] and not any(_CD_PV.match(k) for k in keywords):
        try:
            return build_celestial_wcs(celestial_values(get, keywords), sip_matrices(get),
                                       cls, cname=cname)
        except (KeyError, ValueError, TypeError, OverflowError) as exc:
            raise SpherexFormatError(f"{label}: invalid celestial WCS ({_one_line(exc)})") \
                from None
    try:  # wcslib and astropy's header parser judge any other layout (and may refuse it)
        if isinstance(keywords, _Keywords):
            header = fits.Header.fromstring("".join(card for key, card in keywords.cards.items()
                                                    if _CELESTIAL_KEY.match(key)))
        else:
            header = fits.Header([(k, v) for k, v in keywords.items()
                                  if _CELESTIAL_KEY.match(k)])
        w = cls(header, naxis=2, fix=False)
        if cname:
            w.wcs.cname = list(cname)
        w.wcs.set()
    except _ASTROPY_ERRORS as exc:
        raise SpherexFormatError(f"{label}: invalid celestial WCS (CTYPE1/2 = {layout}: "
                                 f"{_one_line(exc)})") from None
    return w


def _one_line(exc):
    """An exception's message on one line (wcslib's span several), shortened."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


_MAX_MJD = 1e6  # MJD 1e6 is the year 4596


def _float(header, key, bound=1e30):
    """A descriptive number (a time, an exposure): NaN, meaning unknown, when the card is
    missing or is not a finite number of magnitude at most ``bound``."""
    value = header.get(key)
    if isinstance(value, bool):
        return math.nan
    try:
        value = float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan
    return value if math.isfinite(value) and abs(value) <= bound else math.nan


def _real(header, key, where, default=None, bound=1e30):
    """A number the reader computes with: a finite real of magnitude at most ``bound``."""
    value = header.get(key, default)
    if value is None:
        raise SpherexFormatError(f"{where}: no {key} card")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpherexFormatError(f"{where}: {key} = {str(value)[:20]!r} is not a number")
    if not (math.isfinite(value) and abs(value) <= bound):
        raise SpherexFormatError(f"{where}: {key} = {value} is not a finite number "
                                 f"within +-{bound:g}")
    return float(value)


def _integer(header, key, where, low, high):
    """An integer keyword in ``low .. high`` (an integral real or a digit string accepted:
    pipeline 7 writes some as strings)."""
    if key not in header:
        raise SpherexFormatError(f"{where}: no {key} card")
    value = header[key]
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 10:
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SpherexFormatError(f"{where}: {key} = {str(value)[:20]!r} is not an integer "
                                 f"{low}-{high}")
    return value


def _integral(value):
    return int(round(value)) if abs(value - round(value)) < 1e-9 else value


def open_products(source):
    """Every spectral image in ``source``: one for a single file, each cutout of a combined one.

    Cutouts come in CUTOUT_INFO order (then any not listed there); rows recorded as failed
    or missing have no images and are skipped.
    """
    with open_backing(source) as backing:
        return backing_products(backing)


def backing_products(backing):
    """The :class:`SpectralImage` objects of an open backing (one per cutout of a combined file)."""
    indices = _cutout_indices(backing)
    if indices is None:
        return [SpectralImage(backing, "")]
    info = read_cutout_info(backing, complete=True)
    present = set(indices)
    order = [i for i in info if i in present] + [i for i in indices if i not in info]
    images = []
    try:
        for i in order:
            images.append(_image(backing, i, info))
    except BaseException:
        for image in images:
            image.close()
        raise
    return images


def is_spherex_product(source):
    """True if ``source`` is a SPHEREx spectral image or combined cutout file (headers only)."""
    try:
        with open_backing(source) as backing:
            indices = _cutout_indices(backing)
            _resolve(backing, "" if indices is None else str(indices[0]))
        return True
    except SpherexError:
        return False
