"""The real QR2 headers shipped as package data, parsed once.

Two headers of a real IRSA cutout (``2025W51_1A_0684_2`` D3, ``l2b-v21``) are the template of
every synthetic header: their keyword set, order, comments and constant values (SIP
coefficients, readout settings, HISTORY) are copied; only what depends on the exposure is
replaced.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import numpy as np
from astropy.io import fits

__all__ = ["real_header", "real_sip"]

_FILES = {"IMAGE": "qr2_cutout_image_header.txt", "FLAGS": "qr2_flags_header.txt"}


@cache
def _parsed(kind):
    text = resources.files("glue_spherex.data").joinpath(_FILES[kind]).read_text()
    return fits.Header.fromstring(text, sep="\n")


def real_header(kind):
    """A copy of the real ``'IMAGE'`` or ``'FLAGS'`` header."""
    return _parsed(kind).copy()


@cache
def real_sip():
    """The real order-3 SIP coefficients as four ``(4, 4)`` arrays ``A, B, AP, BP``.

    ``M[p, q]`` multiplies ``u**p * v**q`` (p + q <= 3), including the non-zero ``A_0_0``.
    """
    hdr = _parsed("IMAGE")
    out = []
    for name in ("A", "B", "AP", "BP"):
        m = np.zeros((4, 4))
        for p in range(4):
            for q in range(4 - p):
                m[p, q] = hdr.get(f"{name}_{p}_{q}", 0.0)
        m.setflags(write=False)
        out.append(m)
    return tuple(out)
