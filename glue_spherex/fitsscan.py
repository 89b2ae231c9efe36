"""FITS files read at the byte level: where each HDU is, and the few keywords we need.

A download is accepted only if its bytes are a complete FITS file holding every HDU of a
Level-2 spectral image. :func:`scan_spectral_image` walks the headers (a few hundred cards),
computes each HDU's data size from BITPIX/NAXISn/PCOUNT/GCOUNT and checks that the byte string
is long enough to hold them all: it catches HTML error pages, truncated bodies and files missing
an extension for well under a millisecond, where a full ``fits.open`` takes tens.
:func:`unwrap` undoes a gzip body (IRSA's cutout service may gzip cutouts).

The same scan is how :mod:`glue_spherex.products` opens files: astropy parses a whole header
(milliseconds each, six per cutout) where :func:`header_cards` and :func:`card_value` read the
handful of keywords a reader needs, :func:`image_array` maps the data without copying and
:func:`table_row` reads the one-row WCS-WAVE table from its bytes.
"""

from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass

import numpy as np

from .errors import SpherexFormatError

__all__ = ["HDUSpan", "REQUIRED_EXTENSIONS", "scan_hdus", "scan_spectral_image", "unwrap",
           "is_gzip", "header_cards", "card_value", "card_comment", "string_card", "image_array",
           "table_row"]

BLOCK = 2880
CARD = 80
REQUIRED_EXTENSIONS = ("IMAGE", "FLAGS", "VARIANCE", "ZODI", "PSF", "WCS-WAVE")
_GZIP_MAGIC = b"\x1f\x8b"
_FITS_MAGIC = b"SIMPLE  =                    T"
_END_CARD = b"END" + b" " * 77
_END = re.compile(_END_CARD)


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

    With ``max_size``, content that inflates to more than ``max_size`` bytes is an error
    (a gzip bomb), found after inflating at most that much."""
    if not is_gzip(data):
        return data
    if max_size is None:
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise SpherexFormatError(f"{label}: truncated or corrupt gzip data ({exc})") from None
    out = bytearray()
    rest = bytes(data)
    try:
        while rest:
            d = zlib.decompressobj(wbits=31)
            out += d.decompress(rest, max_size + 1 - len(out))
            if len(out) > max_size:
                raise SpherexFormatError(f"{label}: gzip data inflates to more than "
                                         f"{max_size:,} bytes (the limit)")
            if not d.eof:
                raise SpherexFormatError(f"{label}: truncated or corrupt gzip data")
            rest = d.unused_data.lstrip(b"\0")
    except zlib.error as exc:
        raise SpherexFormatError(f"{label}: truncated or corrupt gzip data ({exc})") from None
    return bytes(out)


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
        header_start = offset
        while True:  # find the block holding the END card
            if offset + BLOCK > n:
                raise SpherexFormatError(
                    f"{label} is truncated: header of HDU {len(spans)} ends after byte {n}")
            block = bytes(view[offset:offset + BLOCK])
            offset += BLOCK
            if any(m.start() % CARD == 0 for m in _END.finditer(block)):
                break
        cards = _cards(bytes(view[header_start:offset]))
        if "XTENSION" not in cards and spans:
            raise SpherexFormatError(f"{label}: HDU {len(spans)} has no XTENSION card")
        size, bitpix, shape = _data_size(cards, label, len(spans))
        data_start = offset
        offset += -(-size // BLOCK) * BLOCK
        if offset > n:  # the standard pads every HDU to 2880 bytes
            raise SpherexFormatError(
                f"{label} is truncated: HDU {len(spans)} needs {offset} bytes, got {n}")
        extname = _string(cards.get("EXTNAME", "'PRIMARY'" if not spans else "''"))
        spans.append(HDUSpan(len(spans), extname.upper(), header_start, data_start, size,
                             offset, bitpix, shape, _float(cards, "BSCALE", 1.0),
                             _float(cards, "BZERO", 0.0)))
    return spans


def scan_spectral_image(data, label="body"):
    """:func:`scan_hdus`, then check that every Level-2 extension is present."""
    spans = scan_hdus(data, label)
    names = {s.extname for s in spans}
    missing = [name for name in REQUIRED_EXTENSIONS if name not in names]
    if missing:
        raise SpherexFormatError(
            f"{label} is not a SPHEREx spectral image: no {', '.join(missing)} extension")
    return spans


def _cards(header):
    """``{keyword: value field}`` of the structural keywords of one header.

    Each keyword is looked up with ``bytes.find`` (only matches at card boundaries, before
    END count), which is many times faster than walking the cards in Python.
    """
    end = _aligned_find(header, _END_CARD)
    limit = end if end >= 0 else len(header)
    cards = {}
    keys = ["SIMPLE", "XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "EXTNAME", "BSCALE",
            "BZERO"]
    for key in keys:  # NAXISn are appended once NAXIS is known
        pos = _aligned_find(header, f"{key:8}= ".encode(), limit)
        if pos < 0:
            continue
        cards[key] = header[pos + 10:pos + CARD].decode("latin-1")
        if key == "NAXIS":
            try:
                naxis = int(cards[key].split("/")[0])
            except ValueError:
                continue
            keys += [f"NAXIS{i}" for i in range(1, min(naxis, 999) + 1)]
    return cards


def _aligned_find(header, needle, limit=None):
    """Offset of ``needle`` at the start of a card (before ``limit``), or -1."""
    pos = header.find(needle, 0, limit)
    while pos >= 0 and pos % CARD:
        pos = header.find(needle, pos + 1, limit)
    return pos


def _int(cards, key, label, index, default=None):
    raw = cards.get(key)
    if raw is None:
        if default is None:
            raise SpherexFormatError(f"{label}: HDU {index} has no {key} card")
        return default
    try:
        return int(raw.split("/")[0])
    except ValueError:
        raise SpherexFormatError(f"{label}: HDU {index} has a malformed {key} card") from None


def _data_size(cards, label, index):
    """``(bytes, BITPIX, numpy shape)`` of the HDU's data."""
    naxis = _int(cards, "NAXIS", label, index)
    bitpix = _int(cards, "BITPIX", label, index)
    if naxis == 0:
        return 0, bitpix, ()
    axes = [_int(cards, f"NAXIS{k}", label, index) for k in range(1, naxis + 1)]
    count = 1
    for n in axes:
        count *= n
    pcount = _int(cards, "PCOUNT", label, index, 0)
    gcount = _int(cards, "GCOUNT", label, index, 1)
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

_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
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
    if span.bitpix not in _DTYPES:
        raise SpherexFormatError(f"{label}: unsupported BITPIX {span.bitpix}")
    array = np.ndarray(span.shape, _DTYPES[span.bitpix], buffer=data, offset=span.data_start)
    bscale, bzero = span.bscale, span.bzero
    if (bscale, bzero) == (1.0, 0.0):
        return array
    if span.bitpix > 8 and bscale == 1.0 and bzero == 2.0 ** (span.bitpix - 1):
        unsigned = np.dtype(f">u{span.bitpix // 8}")
        return array.view(unsigned) ^ unsigned.type(1 << (span.bitpix - 1))
    kind = np.float32 if span.bitpix in (8, 16, -32) else np.float64
    return array.astype(kind) * kind(bscale) + kind(bzero)


def table_row(data, span, cards, label="table"):
    """``{TTYPE: float array}`` of the numeric columns of row 0 of a binary table HDU."""
    row = memoryview(data)[span.data_start:span.data_start + span.data_size]
    columns, offset = {}, 0
    for n in range(1, int(card_value(cards.get("TFIELDS", "TFIELDS = 0"), label)) + 1):
        try:
            form = str(card_value(cards[f"TFORM{n}"], label)).strip()
            count, code = int(form[:-1] or 1), form[-1]
        except (KeyError, ValueError, IndexError):
            raise SpherexFormatError(f"{label}: column {n} has no valid TFORM{n}") from None
        if code in _TFORM_DTYPE:
            name = str(card_value(cards.get(f"TTYPE{n}", f"TTYPE{n} = ''"), label)).strip()
            if offset + count * _TFORM_BYTES[code] > len(row):
                raise SpherexFormatError(f"{label}: row 0 is shorter than its columns")
            columns[name] = np.frombuffer(row, _TFORM_DTYPE[code], count, offset).astype(float)
        offset += count * _TFORM_BYTES.get(code, 0)
    return columns
