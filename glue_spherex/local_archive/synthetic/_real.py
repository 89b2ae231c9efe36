"""The real QR2 headers shipped as package data, parsed once.

Two headers of a real IRSA cutout (``2025W51_1A_0684_2`` D3, ``l2b-v21``) are the template of
every synthetic header: their keyword set, order, comments and constant values (SIP
coefficients, readout settings, HISTORY) are copied; only what depends on the exposure is
replaced.

The SIP coefficients are read from the text with a regular expression, so that the geometry
(and the archive's catalog built from it) works without importing ``astropy.io.fits``.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

import numpy as np

__all__ = ["real_header", "real_sip"]

_FILES = {"IMAGE": "qr2_cutout_image_header.txt", "FLAGS": "qr2_flags_header.txt"}


def _text(kind):
    return resources.files("glue_spherex.data").joinpath(_FILES[kind]).read_text()


@cache
def _parsed(kind):
    from astropy.io import fits

    return fits.Header.fromstring(_text(kind), sep="\n")


def real_header(kind):
    """A copy of the real ``'IMAGE'`` or ``'FLAGS'`` header."""
    return _parsed(kind).copy()


@cache
def real_sip():
    """The real order-3 SIP coefficients as four ``(4, 4)`` arrays ``A, B, AP, BP``.

    ``M[p, q]`` multiplies ``u**p * v**q`` (p + q <= 3), including the non-zero ``A_0_0``.
    """
    out = {name: np.zeros((4, 4)) for name in ("A", "B", "AP", "BP")}
    for name, p, q, value in re.findall(r"^(A|B|AP|BP)_(\d)_(\d) *= *(\S+)", _text("IMAGE"), re.M):
        out[name][int(p), int(q)] = float(value)
    for m in out.values():
        m.setflags(write=False)
    return out["A"], out["B"], out["AP"], out["BP"]
