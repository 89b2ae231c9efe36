"""The SPHEREx FLAGS bitmap: bit names, masks built from names, and decoding of values.

Each FLAGS pixel is an int32 whose bit ``b`` (value ``1 << b``) marks one condition. The
FLAGS header lists the bits as ``MP_<NAME> = <bit>`` keywords (HIERARCH for long names,
plain 8-character keywords such as ``MP_HOT``) in pipeline < 7 files, and as
``MSKNnnnn = 'NAME'`` / ``MSKMnnnn = 1 << nnnn`` pairs in pipeline-7 files (QR3 and the QR2
reprocessing). :func:`flag_bits` reads whichever the header has; :data:`FLAG_TABLE` (the QR2
``l2b-v21`` bits plus the three pipeline-7 additions, which reuse no QR2 bit) is used when a
header carries no bit definitions.
"""

from __future__ import annotations

import re

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyError

from ..errors import SpherexFormatError, SpherexInputError

__all__ = [
    "FLAG_TABLE",
    "DEFAULT_BITS",
    "DEFAULT_BAD_FLAGS",
    "flag_bits",
    "mask_from_names",
    "describe",
]

#: (bit, name, description): the real QR2 FLAGS header (``MP_*`` keywords and comments) and
#: the bits pipeline-7 cutouts add (20, 25, 29; their descriptions are ours).
FLAG_TABLE = (
    (0, "TRANSIENT", "Transient detected during SUR"),
    (1, "OVERFLOW", "Overflow detected during SUR"),
    (2, "SUR_ERROR", "Error in onboard processing"),
    (4, "PHANTOM", "Phantom pixel"),
    (5, "REFERENCE", "Reference pixel"),
    (6, "NONFUNC", "Permanently unusable"),
    (7, "DICHROIC", "Low efficiency due to dichroic"),
    (9, "MISSING_DATA", "Onboard data lost"),
    (10, "HOT", "Hot pixel"),
    (11, "COLD", "Anomalously low signal"),
    (12, "FULLSAMPLE", "Pixel full sample history is available"),
    (14, "PHANMISS", "Phantom correction was not applied"),
    (15, "NONLINEAR", "Nonlinearity correction cannot be applied reliably"),
    (17, "PERSIST", "Persistent charge above threshold"),
    (19, "OUTLIER", "Pixel flagged by Detect Outliers"),
    (20, "CROSSTALK", "Affected by electronic crosstalk (pipeline 7)"),
    (21, "SOURCE", "Pixel mapped to a known source"),
    (22, "GHOST", "Affected by a bright source inside the exposure"),
    (23, "GHOST_FPA", "Affected by a bright source on another detector"),
    (24, "GHOST_EXT", "Pixel affected by a bright source outside FOV"),
    (25, "STREAK", "Pixel on a satellite streak (pipeline 7)"),
    (26, "BLOOM", "Pixel part of a bloom artifact"),
    (27, "SNOWBALL", "Pixel part of a snowball artifact"),
    (28, "HALO", "Pixel part of a transient halo"),
    (29, "SATELLITE_HALO", "Halo of a satellite streak (pipeline 7, optional)"),
)

#: name -> bit number of :data:`FLAG_TABLE`.
DEFAULT_BITS = {name: bit for bit, name, _ in FLAG_TABLE}

#: Flags whose pixels carry no trustworthy surface brightness: readout or onboard-processing
#: failures (TRANSIENT, OVERFLOW, SUR_ERROR, MISSING_DATA), dead or abnormal pixels (NONFUNC,
#: HOT, COLD), pixels whose nonlinearity or persistence could not be corrected (NONLINEAR,
#: PERSIST), and statistical outliers (OUTLIER). IRSA's mosaic tool trusts OUTLIER; for
#: aperture photometry a masked pixel costs little while an outlier left in biases the sum, so
#: we mask it (pass ``bad_flags`` to choose otherwise; spectra report ``n_masked``). Left out on
#: purpose: SOURCE (40-70 % of pixels, it marks sky, not defects), FULLSAMPLE (information
#: only), DICHROIC (low but calibrated throughput) and the ghost/artifact bits, which depend on
#: the science.
DEFAULT_BAD_FLAGS = (
    "TRANSIENT", "OVERFLOW", "SUR_ERROR", "NONFUNC", "MISSING_DATA",
    "HOT", "COLD", "NONLINEAR", "PERSIST", "OUTLIER",
)

_MSKN = re.compile(r"^MSK([NM])(\d{4})$")


def flag_bits(header):
    """``{name: bit}`` from the FLAGS header's bit definitions, whichever scheme it uses.

    ``HIERARCH MP_<NAME> = bit`` (pipeline < 7) or ``MSKNnnnn = 'NAME'`` (pipeline 7; the
    bit is ``nnnn``; an ``MSKMnnnn`` mask that is not ``1 << nnnn`` makes the card pair
    ambiguous and that bit is left out). ``header`` is any ``{keyword: value}`` mapping
    (an astropy Header). Falls back to :data:`DEFAULT_BITS` when it defines no bits at all.
    """
    bits, masks = {}, {}
    for key, value in _bit_cards(header):
        key = key.upper()
        if key.startswith("HIERARCH "):
            key = key[len("HIERARCH "):]
        if key.startswith("MP_") and _is_int(value) and 0 <= value < 64:
            bits[key[3:]] = value
        elif m := _MSKN.match(key):
            bit = int(m.group(2))
            if m.group(1) == "N" and isinstance(value, str) and value.strip() and bit < 64:
                bits[value.strip().upper()] = bit
            elif m.group(1) == "M" and _is_int(value):
                masks[bit] = value
    for name, bit in list(bits.items()):
        if bit in masks and masks[bit] != 1 << bit:
            del bits[name]
    out_of_range = [name for name, bit in bits.items() if not 0 <= bit < 32]
    if out_of_range:
        raise SpherexFormatError(f"FLAGS: flag {out_of_range[0]} is bit {bits[out_of_range[0]]}, "
                                 "but FLAGS pixels have bits 0-31")
    return bits or dict(DEFAULT_BITS)


def _bit_cards(header):
    """``(keyword, value)`` of the cards that may define bits.

    Of an astropy Header only those cards' values are parsed, so an unreadable card
    elsewhere (a garbled BUNIT) does not hide the bit map; an unreadable bit card is a
    :class:`~glue_spherex.errors.SpherexFormatError` naming it.
    """
    if not isinstance(header, fits.Header):
        # any other mapping (the byte-level reader's keywords parse a value when it is read)
        for key in list(header):
            if str(key).upper().removeprefix("HIERARCH ").startswith(("MP_", "MSK")):
                try:
                    value = header[key]
                except (VerifyError, ValueError):
                    raise SpherexFormatError(f"FLAGS: unreadable flag card {key}") from None
                yield key, value
        return
    for card in header.cards:
        key = card.keyword.upper()
        if not key.removeprefix("HIERARCH ").startswith(("MP_", "MSK")):
            continue
        try:
            value = card.value
        except (VerifyError, ValueError):
            raise SpherexFormatError(f"FLAGS: unreadable flag card {key}") from None
        yield key, value


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _bit_of(name, bits):
    key = str(name).strip().upper()
    if key.startswith("MP_"):
        key = key[3:]
    if key not in bits:
        known = ", ".join(sorted(bits, key=bits.get))
        raise SpherexInputError(f"unknown flag name {name!r}; known flags: {known}")
    return bits[key]


def mask_from_names(flags_array, names=DEFAULT_BAD_FLAGS, bits=None):
    """Boolean array, True where any of the named flags is set in ``flags_array``.

    ``names`` are flag names (case-insensitive, ``MP_`` prefix optional); ``bits`` maps
    names to bit numbers (default :data:`DEFAULT_BITS`, or ``SpectralImage.flag_bits``).
    """
    bits = DEFAULT_BITS if bits is None else bits
    if isinstance(names, str):
        names = [names]
    value = 0
    for name in names:
        value |= 1 << _bit_of(name, bits)
    return (np.asarray(flags_array).astype(np.int64) & value) != 0


def describe(value, bits=None):
    """Names of the flags set in one FLAGS value, lowest bit first (unknown bits as ``BITn``)."""
    bits = DEFAULT_BITS if bits is None else bits
    names_by_bit = {}
    for name, bit in bits.items():
        names_by_bit.setdefault(bit, name)
    value = int(value) & 0xFFFFFFFF  # int32 pixels: bit 31 makes the value negative
    return [names_by_bit.get(b, f"BIT{b}") for b in range(32) if value >> b & 1]
