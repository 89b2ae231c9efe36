"""Writing FITS header cards and HDUs straight to bytes.

The archive serves hundreds of cutouts per second, so headers are kept as lists of 80-byte
card images and HDUs are assembled by concatenation; only the cards that differ between
frames are formatted, with astropy's own rules (value right-justified in columns 11-30,
strings quoted and padded to 8 characters, floats as ``str()`` with an upper-case exponent,
``HIERARCH`` for long or spaced keywords). The tests check that astropy reads every card back
unchanged.
"""

from __future__ import annotations

import numpy as np

__all__ = ["card_image", "header_bytes", "data_bytes", "hdu_bytes", "BLOCK"]

BLOCK = 2880


def _value_str(value):
    if isinstance(value, (bool, np.bool_)):
        return "T" if value else "F"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        s = str(float(value)).replace("e", "E")
        if len(s) > 20:
            idx = s.find("E")
            s = s[:20] if idx < 0 else s[: 20 - (len(s) - idx)] + s[idx:]
        return s
    if isinstance(value, str):
        if value == "":
            return "''"
        return "'" + f"{value.replace(chr(39), chr(39) * 2):8}" + "'"
    raise TypeError(f"cannot write a {type(value).__name__} to a FITS card")


def card_image(keyword, value, comment="", hierarch=None):
    """One 80-character card image, formatted as astropy would write it.

    ``hierarch=None`` uses the HIERARCH convention only when the keyword needs it; the real
    headers also use it for some short keywords (``HIERARCH CONTRAST``), hence ``True``.
    """
    v = _value_str(value)
    if hierarch is None:
        hierarch = len(keyword) > 8 or " " in keyword
    if not hierarch:
        head = f"{keyword:8}= " + (f"{v:20}" if isinstance(value, str) else f"{v:>20}")
    else:
        head = f"HIERARCH {keyword} = {v}"
    image = f"{head} / {comment}" if comment else head
    if len(image) > 80:
        if len(head) > 80:
            raise ValueError(f"card {keyword} = {value!r} does not fit in 80 characters")
        image = image[:80]
    return image.ljust(80)


def header_bytes(cards):
    """Header block: the card images, END, padded with blanks to a multiple of 2880."""
    text = "".join(cards) + "END".ljust(80)
    text += " " * (-len(text) % BLOCK)
    return text.encode("ascii")


def data_bytes(array):
    """Data block: big-endian array bytes padded with zeros to a multiple of 2880."""
    a = np.asarray(array)
    raw = a.astype(a.dtype.newbyteorder(">"), copy=False).tobytes()
    return raw + b"\0" * (-len(raw) % BLOCK)


def hdu_bytes(cards, array):
    return header_bytes(cards) + data_bytes(array)
