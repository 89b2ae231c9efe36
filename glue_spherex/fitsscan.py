"""Cheap structural check of a downloaded SPHEREx product, without parsing it with astropy.

A download is accepted only if its bytes are a complete FITS file holding every HDU of a
Level-2 spectral image. :func:`scan_spectral_image` walks the headers (a few hundred cards),
computes each HDU's data size from BITPIX/NAXISn/PCOUNT/GCOUNT and checks that the byte string
is long enough to hold them all: it catches HTML error pages, truncated bodies and files missing
an extension for well under a millisecond, where a full ``fits.open`` takes tens.
:func:`unwrap` undoes a gzip body (IRSA's cutout service may gzip cutouts).
"""

from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass

from .errors import SpherexFormatError

__all__ = ["HDUSpan", "REQUIRED_EXTENSIONS", "scan_hdus", "scan_spectral_image", "unwrap",
           "is_gzip"]

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


def unwrap(data, label="body"):
    """``data`` itself if it is plain, else its gunzipped content (one or more gzip members)."""
    if not is_gzip(data):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise SpherexFormatError(f"{label}: truncated or corrupt gzip data ({exc})") from None


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
