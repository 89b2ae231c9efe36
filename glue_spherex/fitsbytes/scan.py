"""FITS files read at the byte level: where each HDU is, and the few keywords we need.

:func:`scan_spectral_image` accepts a download only if its bytes are a complete FITS file
holding every HDU of a Level-2 spectral image, from the headers alone (HTML pages, truncated
bodies and missing extensions are caught in well under a millisecond; ``fits.open`` takes
tens). :func:`unwrap` undoes a gzip body. The reader (:mod:`glue_spherex.products.spectral_image`)
opens files through the same scan: :func:`header_cards`/:func:`card_value` read the keywords
it needs, :func:`image_array` maps data without copying, :func:`table_row` reads WCS-WAVE.
Every count, length and offset a header claims is checked before use, so any input ends in a
:class:`~glue_spherex.errors.SpherexFormatError` in time and memory proportional to its size
(the contract is in ``docs/errors.rst``).
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass

import numpy as np

from ..errors import SpherexFormatError

__all__ = ["HDUSpan", "REQUIRED_EXTENSIONS", "PSF_EXTENSIONS", "scan_hdus", "header_span",
           "scan_spectral_image", "IMAGE_DTYPES", "unwrap", "is_gzip", "header_cards", "card_value",
           "card_comment", "string_card", "image_array", "table_row", "table_columns",
           "table_array", "TableColumn", "MAX_INFLATED", "MAX_HEADER_BLOCKS", "END_CARD", "aligned_find"]

BLOCK = 2880
CARD = 80
#: Extensions every Level-2 spectral image has, in both layouts (pipeline < 7 and 7).
REQUIRED_EXTENSIONS = ("IMAGE", "FLAGS", "VARIANCE", "ZODI", "WCS-WAVE")
#: The PSF extension, one of: the ``PSF`` cube (pipeline < 7) or the ``EPSF`` table (7).
PSF_EXTENSIONS = ("PSF", "EPSF")
_GZIP_MAGIC = b"\x1f\x8b"
_FITS_MAGIC = b"SIMPLE  =                    T"
END_CARD = b"END" + b" " * 77
_END = re.compile(END_CARD)

#: Largest size (bytes) gzip data may inflate to: a full frame is about 75 MB; more is refused
#: as a decompression bomb (pass ``max_size=`` to :func:`unwrap` for another bound).
MAX_INFLATED = 128 << 20
#: Largest header, in 2880-byte blocks (36,000 cards; a SPHEREx header has a few hundred).
MAX_HEADER_BLOCKS = 1000
_MAX_NAXIS = 999  # the FITS standard's limits on NAXIS and TFIELDS
_MAX_TFIELDS = 999
_BITPIX = (8, 16, 32, 64, -32, -64)
_INFLATE_CHUNK = 1 << 20
_INTEGER = re.compile(r"^\s*[+-]?\d{1,30}\s*$")


@dataclass(frozen=True)
class HDUSpan:
    """Where one HDU sits in the byte string (offsets in bytes; ``end`` includes the padding).

    ``shape`` is the data's numpy shape (NAXISn reversed), ``bitpix`` its FITS BITPIX.
    """

    index: int
    extname: str
    header_start: int
    data_start: int
    data_size: int
    end: int
    bitpix: int = 8
    shape: tuple = ()
    bscale: float = 1.0
    bzero: float = 0.0


def is_gzip(data):
    return bytes(data[:2]) == _GZIP_MAGIC


def unwrap(data, label="body", max_size=None):
    """``data`` itself if it is plain, else its gunzipped content (one or more gzip members).

    Inflating stops, with a :class:`~glue_spherex.errors.SpherexFormatError` naming the
    limit, as soon as the output would exceed ``max_size`` bytes (None: the default,
    :data:`MAX_INFLATED`), so a gzip bomb costs at most that much memory.
    """
    if not is_gzip(data):
        return data
    try:
        return _inflate(data, label, MAX_INFLATED if max_size is None else max_size)
    except (OSError, EOFError, zlib.error) as exc:
        raise SpherexFormatError(f"{label}: truncated or corrupt gzip data ({exc})") from None


def _inflate(data, label, limit):
    """Every gzip member of ``data``, inflated, refusing more than ``limit`` bytes of output."""
    src = memoryview(data).cast("B")
    n, pos, total, out = len(src), 0, 0, []
    inflater = zlib.decompressobj(wbits=31)
    while True:
        if inflater.eof:  # a member ended: another may follow, or zero padding
            pos -= len(inflater.unused_data)
            if not any(bytes(src[i:i + _INFLATE_CHUNK]).strip(b"\0")
                       for i in range(pos, n, _INFLATE_CHUNK)):
                return b"".join(out)
            if bytes(src[pos:pos + 2]) != _GZIP_MAGIC:
                raise SpherexFormatError(f"{label}: unexpected bytes after the gzip data "
                                         f"(at byte {pos})")
            inflater = zlib.decompressobj(wbits=31)
        if inflater.unconsumed_tail:
            chunk = inflater.unconsumed_tail
        elif pos < n:
            chunk = bytes(src[pos:pos + _INFLATE_CHUNK])
            pos += len(chunk)
        else:
            raise SpherexFormatError(f"{label}: truncated or corrupt gzip data (it ends inside a "
                                     "member)")
        piece = inflater.decompress(chunk, min(8 * _INFLATE_CHUNK, limit - total + 1))
        total += len(piece)
        if total > limit:
            raise SpherexFormatError(
                f"{label}: gzip data inflates to more than {limit:,} bytes, the limit "
                f"(a decompression bomb or not a SPHEREx product; gunzip it first if it is real)")
        out.append(piece)


def _describe_start(data):
    head = bytes(data[:40])
    text = head.decode("latin-1")
    if text.lstrip().lower().startswith(("<!doctype", "<html", "<?xml", "<votable")):
        return f"an HTML/XML page ({text.strip()[:30]!r}...)"
    return f"bytes {head[:16]!r}"


def scan_hdus(data, label="body"):
    """The :class:`HDUSpan` of every HDU in ``data``; raises SpherexFormatError if incomplete.

    ``data`` is any bytes-like object: bytes, a memoryview, or an :class:`mmap.mmap` of a file
    (only the header blocks are then read from disk).
    """
    n = len(data)
    if bytes(data[:len(_FITS_MAGIC)]) != _FITS_MAGIC:
        raise SpherexFormatError(f"{label} is not FITS: it starts with {_describe_start(data)}")
    spans = []
    offset = 0
    view = memoryview(data)
    while offset < n:
        if spans and not bytes(view[offset:offset + BLOCK]).strip(b"\0 "):
            break  # trailing padding after the last HDU
        span = header_span(view, offset, len(spans), label)
        if span is None:
            raise SpherexFormatError(
                f"{label} is truncated: header of HDU {len(spans)} ends after byte {n}")
        if span.end > n:  # the standard pads every HDU to 2880 bytes
            raise SpherexFormatError(
                f"{label} is truncated: HDU {len(spans)} ({span.extname or 'no EXTNAME'}) "
                f"needs {span.end} bytes, got {n}")
        spans.append(span)
        offset = span.end
    return spans


def header_span(data, offset, index, label="body"):
    """The :class:`HDUSpan` of the HDU whose header starts at ``offset`` of ``data``.

    Returns None when ``data`` ends before the header's END card (a reader of byte ranges then
    fetches more); the data need not be present, only the header. ``index`` is the HDU's
    number (0 for the primary HDU).
    """
    view = memoryview(data)
    n = len(view)
    header_start = offset
    while True:  # find the block holding the END card
        if offset + BLOCK > n:
            return None
        if offset - header_start >= MAX_HEADER_BLOCKS * BLOCK:
            raise SpherexFormatError(
                f"{label}: HDU {index} has no END card in its first "
                f"{MAX_HEADER_BLOCKS} header blocks (the limit)")
        block = bytes(view[offset:offset + BLOCK])
        offset += BLOCK
        if any(m.start() % CARD == 0 for m in _END.finditer(block)):
            break
    cards = _cards(bytes(view[header_start:offset]))
    if "XTENSION" not in cards and index:
        raise SpherexFormatError(f"{label}: HDU {index} has no XTENSION card")
    extname = _string(cards.get("EXTNAME", "'PRIMARY'" if not index else "''"))
    where = f"{label}: HDU {index} ({extname or 'no EXTNAME'})"
    size, bitpix, shape = _data_size(cards, where, bool(index))
    end = offset + -(-size // BLOCK) * BLOCK
    return HDUSpan(index, extname.upper(), header_start, offset, size, end, bitpix, shape,
                   _float(cards, "BSCALE", 1.0), _float(cards, "BZERO", 0.0))


def scan_spectral_image(data, label="body"):
    """:func:`scan_hdus`, then check that every Level-2 extension is present.

    Both layouts pass: a ``PSF`` cube (pipeline < 7) or an ``EPSF`` table (pipeline 7); FLAGS
    may be an image or a tile-compressed image (a BINTABLE; its size is NAXIS1 x NAXIS2 +
    PCOUNT like any table's, so a truncated heap is caught like a truncated image).
    """
    spans = scan_hdus(data, label)
    names = {s.extname for s in spans}
    missing = [name for name in REQUIRED_EXTENSIONS if name not in names]
    if not names & set(PSF_EXTENSIONS):
        missing.insert(4, " or ".join(PSF_EXTENSIONS))
    if missing:
        raise SpherexFormatError(
            f"{label} is not a SPHEREx spectral image: no {', '.join(missing)} extension")
    return spans


def _cards(header):
    """``{keyword: value field}`` of the structural keywords of one header.

    Each keyword is looked up with ``bytes.find`` (only matches at card boundaries, before
    END count), which is many times faster than walking the cards in Python.
    """
    end = aligned_find(header, END_CARD)
    limit = end if end >= 0 else len(header)
    cards = {}
    keys = ["SIMPLE", "XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "EXTNAME", "BSCALE",
            "BZERO"]
    for key in keys:  # NAXISn are appended once NAXIS is known
        pos = aligned_find(header, f"{key:8}= ".encode(), limit)
        if pos < 0:
            continue
        cards[key] = header[pos + 10:pos + CARD].decode("latin-1")
        if key == "NAXIS":
            raw = cards[key].split("/")[0]
            if _INTEGER.match(raw):
                keys += [f"NAXIS{i}" for i in range(1, min(int(raw), _MAX_NAXIS) + 1)]
    return cards


def aligned_find(header, needle, limit=None):
    """Offset of ``needle`` at the start of a card (before ``limit``), or -1."""
    pos = header.find(needle, 0, limit)
    while pos >= 0 and pos % CARD:
        pos = header.find(needle, pos + 1, limit)
    return pos


def _int(cards, key, where, default=None, low=0, high=None):
    """An integer structural keyword, checked to lie in ``low .. high``."""
    raw = cards.get(key)
    if raw is None:
        if default is None:
            raise SpherexFormatError(f"{where} has no {key} card")
        return default
    value = raw.split("/")[0]
    if not _INTEGER.match(value):
        raise SpherexFormatError(f"{where}: {key} = {value.strip()[:20]!r} is not an integer")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f"{low} .. {high}" if high is not None else f">= {low}"
        raise SpherexFormatError(f"{where}: {key} = {value} is out of range ({bound})")
    return value


def _data_size(cards, where, extension):
    """``(bytes, BITPIX, numpy shape)`` of the HDU's data, every count checked."""
    bitpix = _int(cards, "BITPIX", where, low=-64, high=64)
    if bitpix not in _BITPIX:
        raise SpherexFormatError(f"{where}: BITPIX = {bitpix} is not one of {_BITPIX}")
    naxis = _int(cards, "NAXIS", where, high=_MAX_NAXIS)
    axes = [_int(cards, f"NAXIS{k}", where) for k in range(1, naxis + 1)]
    xtension = _string(cards.get("XTENSION", "''")).upper()
    pcount = _int(cards, "PCOUNT", where, 0)
    gcount = _int(cards, "GCOUNT", where, 1)
    if (not extension or xtension in ("IMAGE", "BINTABLE", "TABLE")) and gcount != 1:
        raise SpherexFormatError(f"{where}: GCOUNT = {gcount}, but an image or table HDU "
                                 "has GCOUNT = 1")
    if (not extension or xtension == "IMAGE") and pcount != 0:
        raise SpherexFormatError(f"{where}: PCOUNT = {pcount}, but an image HDU has PCOUNT = 0")
    if naxis == 0:
        return 0, bitpix, ()
    count = 1
    for n in axes:
        count *= n
    return abs(bitpix) // 8 * gcount * (pcount + count), bitpix, tuple(reversed(axes))


def _float(cards, key, default):
    raw = cards.get(key)
    if raw is None:
        return default
    try:
        return float(raw.split("/")[0].replace("D", "E"))
    except ValueError:
        return default


def _string(raw):
    text = raw.strip()
    if text.startswith("'"):
        end = text.find("'", 1)
        while end != -1 and text[end + 1:end + 2] == "'":
            end = text.find("'", end + 2)
        text = text[1:end if end != -1 else None].replace("''", "'")
    return text.strip()


# --------------------------------------------------------------------------------------
# Keywords and data of one HDU
# --------------------------------------------------------------------------------------

#: numpy dtype of an image HDU's data by BITPIX (big-endian, as FITS stores it)
IMAGE_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
_TFORM_BYTES = {"L": 1, "B": 1, "A": 1, "I": 2, "J": 4, "K": 8, "E": 4, "D": 8, "C": 8, "M": 16}
_TFORM_DTYPE = {"I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8"}


def header_cards(data, span):
    """``{keyword: 80-character card}`` of the value cards of one header (first occurrence)."""
    text = bytes(memoryview(data)[span.header_start:span.data_start]).decode("latin-1")
    cards = {}
    for pos in range(0, len(text), CARD):
        card = text[pos:pos + CARD]
        key = card[:8].rstrip()
        if key == "END":
            break
        if card[8:10] == "= ":
            cards.setdefault(key, card)
        elif key == "HIERARCH" and "=" in card:  # e.g. FLAGS' MP_TRANSIENT: kept as an
            name, value = card[9:].split("=", 1)  # 8-character card of the same value
            cards.setdefault(name.strip(), f"{'HIERARCH':<8}= {value}"[:CARD])
    return cards


def card_value(card, label="header"):
    """The value of one FITS value card (string, logical, integer or real)."""
    text = card[10:].lstrip()
    if text.startswith("'"):
        out, pos = [], 1
        while True:
            end = text.find("'", pos)
            if end < 0:
                raise SpherexFormatError(f"{label}: unterminated string in {card[:8].strip()}")
            if text[end + 1:end + 2] == "'":  # '' is a quote inside the string
                out.append(text[pos:end + 1])
                pos = end + 2
                continue
            out.append(text[pos:end])
            return "".join(out).rstrip()
    text = text.split("/", 1)[0].strip()
    if text in ("T", "F"):
        return text == "T"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text.replace("D", "E"))
    except ValueError:
        raise SpherexFormatError(f"{label}: cannot read the value of {card[:8].strip()}") from None


def card_comment(card):
    """The comment of a card holding a string value (text after the '/' that follows it)."""
    text = card[10:]
    start = text.find("'")
    pos = start + 1
    while start >= 0:
        end = text.find("'", pos)
        if end < 0:
            return ""
        if text[end + 1:end + 2] == "'":
            pos = end + 2
            continue
        text = text[end + 1:]
        break
    slash = text.find("/")
    return text[slash + 1:].strip() if slash >= 0 else ""


def string_card(key, value, comment):
    """An 80-byte card ``KEY = 'value'`` (+ `` / comment``), laid out as astropy writes it."""
    quoted = "'" + f"{value.replace(chr(39), chr(39) * 2):8}" + "'"
    image = f"{key:8}= {quoted:20}".rstrip()
    if comment:
        image += " / " + comment
    return image[:CARD].ljust(CARD).encode("ascii", "replace")


def image_array(data, span, label="image"):
    """The data of an image HDU as an array over ``data`` (no copy unless it is scaled).

    Scaled data (BSCALE/BZERO) is returned as astropy would: unsigned integers for the
    ``BZERO = 2**(BITPIX-1)`` convention, physical floats otherwise. None if NAXIS = 0.
    """
    if not span.shape:
        return None
    if span.bitpix not in IMAGE_DTYPES:
        raise SpherexFormatError(f"{label}: unsupported BITPIX {span.bitpix}")
    array = np.ndarray(span.shape, IMAGE_DTYPES[span.bitpix], buffer=data, offset=span.data_start)
    bscale, bzero = span.bscale, span.bzero
    if (bscale, bzero) == (1.0, 0.0):
        return array
    if span.bitpix > 8 and bscale == 1.0 and bzero == 2.0 ** (span.bitpix - 1):
        unsigned = np.dtype(f">u{span.bitpix // 8}")
        return array.view(unsigned) ^ unsigned.type(1 << (span.bitpix - 1))
    kind = np.float32 if span.bitpix in (8, 16, -32) else np.float64
    return array.astype(kind) * kind(bscale) + kind(bzero)


@dataclass(frozen=True)
class TableColumn:
    """One column of a binary table: TTYPE, TFORM code and repeat count, byte offset and width
    in the row (for ``P``/``Q`` descriptors ``element`` is the code of the heap array)."""

    name: str
    code: str
    count: int
    offset: int
    width: int
    element: str = ""


_TFORM = re.compile(r"^\s*(\d{0,12})([LXBIJKAEDCMPQ])([LXBIJKAEDCM]?)(\(\s*\d{1,12}\s*\))?\s*$")


def _keyword_int(cards, key, label, default=None, low=0, high=None):
    """An integer keyword of a header read with :func:`header_cards`, range-checked."""
    card = cards.get(key)
    if card is None:
        if default is None:
            raise SpherexFormatError(f"{label}: no {key} card")
        return default
    value = card_value(card, label)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpherexFormatError(f"{label}: {key} = {str(value)[:20]!r} is not an integer")
    if value < low or (high is not None and value > high):
        bound = f"{low} .. {high}" if high is not None else f">= {low}"
        raise SpherexFormatError(f"{label}: {key} = {value} is out of range ({bound})")
    return value


def table_columns(data, span, cards, label="table"):
    """The :class:`TableColumn` list of a binary table HDU, after checking its layout.

    TFIELDS and every TFORMn must parse, the columns must add up to the row width NAXIS1,
    and THEAP and every ``P``/``Q`` heap descriptor must point inside the HDU's data, so
    that a reader given these columns (ours or astropy's) stays inside the bytes present.
    """
    if len(span.shape) != 2 or span.bitpix != 8:
        raise SpherexFormatError(f"{label}: a binary table has BITPIX = 8 and NAXIS = 2 "
                                 f"(got {span.bitpix} and {len(span.shape)})")
    nrows, width = span.shape
    tfields = _keyword_int(cards, "TFIELDS", label, high=_MAX_TFIELDS)
    columns, offset = [], 0
    for n in range(1, tfields + 1):
        key = f"TFORM{n}"
        if key not in cards:
            raise SpherexFormatError(f"{label}: column {n} has no {key} card")
        form = card_value(cards[key], label)
        m = _TFORM.match(form) if isinstance(form, str) else None
        if m is None:
            raise SpherexFormatError(f"{label}: {key} = {str(form)[:20]!r} is not a binary "
                                     "table format (rTa with a in LXBIJKAEDCMPQ)")
        count, code, element = int(m.group(1) or 1), m.group(2), m.group(3)
        if code in "PQ":
            if count > 1 or not element:
                raise SpherexFormatError(f"{label}: {key} = {form!r} is not a valid "
                                         "array descriptor")
            size = count * (8 if code == "P" else 16)
        elif code == "X":
            size = -(-count // 8)
        else:
            size = count * _TFORM_BYTES[code]
        name = str(card_value(cards.get(f"TTYPE{n}", f"TTYPE{n} = ''"), label)).strip()
        columns.append(TableColumn(name, code, count, offset, size, element))
        offset += size
    if offset != width:
        raise SpherexFormatError(f"{label}: the TFORMs add up to {offset} bytes per row, "
                                 f"but NAXIS1 = {width}")
    if any(c.code in "PQ" for c in columns):
        _check_heap(data, span, cards, columns, label)
    return columns


def _check_heap(data, span, cards, columns, label):
    """Every P/Q descriptor of every row lies within the heap."""
    nrows, width = span.shape
    main = nrows * width
    theap = _keyword_int(cards, "THEAP", label, main, low=main, high=span.data_size)
    heap = span.data_size - theap
    for c in columns:
        if c.code not in "PQ" or c.count == 0:
            continue
        kind = ">i4" if c.code == "P" else ">i8"
        desc = np.ndarray((nrows, 2), kind, buffer=data, offset=span.data_start + c.offset,
                          strides=(width, np.dtype(kind).itemsize))
        counts, offsets = desc[:, 0].astype(np.int64), desc[:, 1].astype(np.int64)
        item = _TFORM_BYTES.get(c.element, 0)
        nbytes = (counts + 7) // 8 if c.element == "X" else counts * item
        bad = ((counts < 0) | (offsets < 0) | (counts > heap) | (offsets > heap)
               | (np.where(counts > heap, 0, nbytes) + offsets > heap))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise SpherexFormatError(
                f"{label}: the heap descriptor of column {c.name or c.offset!r} in row {row} "
                f"({int(counts[row])} elements at heap byte {int(offsets[row])}) lies outside "
                f"the {heap}-byte heap (THEAP = {theap})")


def table_row(data, span, cards, label="table"):
    """``{TTYPE: float array}`` of the numeric columns of row 0 of a binary table HDU."""
    columns = table_columns(data, span, cards, label)
    if span.shape[0] < 1:
        raise SpherexFormatError(f"{label}: the table has no rows (NAXIS2 = 0)")
    row = memoryview(data)[span.data_start:span.data_start + span.shape[1]]
    return {c.name: np.frombuffer(row, _TFORM_DTYPE[c.code], c.count, c.offset).astype(float)
            for c in columns if c.code in _TFORM_DTYPE}


_TABLE_DTYPE = {"L": "i1", "B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8",
                "C": ">c8", "M": ">c16", "P": ">i4", "Q": ">i8"}
_TDIM = re.compile(r"^\s*\(\s*(\d+(?:\s*,\s*\d+)*)\s*\)\s*$")


def table_array(data, span, cards, label="table"):
    """Every row of a binary table HDU as a numpy structured array over ``data`` (no copy).

    ``cards`` is :func:`header_cards` of the HDU. Field names are the TTYPEs as written;
    ``TDIMn`` gives a field its (C-order) shape; variable-length (P/Q) fields hold their
    descriptors, not the heap data.
    """
    table_columns(data, span, cards, label)  # the layout is checked before any view is made
    try:
        nrows = int(card_value(cards["NAXIS2"], label))
        width = int(card_value(cards["NAXIS1"], label))
        nfields = int(card_value(cards.get("TFIELDS", "TFIELDS = 0"), label))
    except (KeyError, TypeError, ValueError):
        raise SpherexFormatError(f"{label}: not a binary table (NAXIS1/NAXIS2/TFIELDS)") from None
    names, formats, offsets, offset = [], [], [], 0
    for n in range(1, nfields + 1):
        form = str(card_value(cards.get(f"TFORM{n}", f"TFORM{n} = ''"), label)).upper()
        m = _TFORM.match(form)
        if not m:
            raise SpherexFormatError(f"{label}: column {n} has no valid TFORM{n} ({form!r})")
        count, code = int(m.group(1) or 1), m.group(2)
        if code == "A":
            dtype, nbytes = np.dtype(f"S{count}"), count
        elif code == "X":
            dtype, nbytes = np.dtype(("u1", (-(-count // 8),))), -(-count // 8)
        else:
            base = np.dtype(_TABLE_DTYPE[code])
            shape = (2,) if code in "PQ" else ()
            if code not in "PQ" and count != 1:
                shape = (count,)
                tdim = cards.get(f"TDIM{n}")
                if tdim is not None:
                    d = _TDIM.match(str(card_value(tdim, label)))
                    dims = tuple(int(v) for v in d.group(1).split(",")) if d else ()
                    if not d or math.prod(dims) != count:
                        raise SpherexFormatError(
                            f"{label}: TDIM{n} does not match TFORM{n} ({form!r})")
                    shape = tuple(reversed(dims))
            dtype = np.dtype((base, shape)) if shape else base
            nbytes = dtype.itemsize
        name = str(card_value(cards.get(f"TTYPE{n}", f"TTYPE{n} = 'COL{n}'"), label)).strip()
        names.append(name or f"COL{n}")
        formats.append(dtype)
        offsets.append(offset)
        offset += nbytes
    if offset > width or width * nrows > span.data_size:
        raise SpherexFormatError(f"{label}: rows are shorter than their columns")
    if len(set(names)) != len(names):
        raise SpherexFormatError(f"{label}: repeated column names {names}")
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets,
                      "itemsize": width})
    return np.ndarray((nrows,), dtype, buffer=data, offset=span.data_start)
