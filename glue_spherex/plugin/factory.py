"""glue data factory for SPHEREx files: full frames, IRSA cutouts and combined cutout files.

Recognised by content (:mod:`glue_spherex.products.spectral_image`), not by name, with
priority 200 so it wins over glue's generic FITS reader (100); a combined file opens as one
dataset per cutout. Identifying a combined file means reading its headers, most of the cost
of opening it, so the identifier keeps what it opened (one file, keyed by path, size and
modification time) for the factory to take over. A damaged file whose first headers say it
is a SPHEREx product is still claimed, so glue shows the reader's one-line reason instead
of opening part of it with its generic reader.
"""

from __future__ import annotations

import os
import threading

from glue.config import data_factory

from ..errors import SpherexError
from ..products.spectral_image import is_spherex_product, open_products
from .datasets import products_to_data

__all__ = ["read_spherex", "is_spherex_file", "FACTORY_LABEL", "FACTORY_PRIORITY"]

FACTORY_LABEL = "SPHEREx spectral image(s)"
FACTORY_PRIORITY = 200

#: Bytes read to decide whether an unreadable file claims to be a SPHEREx product: the
#: PRIMARY, CUTOUT_INFO and IMAGE headers of a single product or combined file start there.
_CLAIM_BYTES = 1 << 16
_CLAIMS = (b"EXTNAME = 'CUTOUT_INFO'", b"CTYPE1W = 'WAVE-TAB'")

_lock = threading.Lock()
_identified = {}  # {file key: products} -- the last file identified, not yet read


def _key(filename):
    try:
        st = os.stat(filename)
    except (OSError, TypeError, ValueError):
        return None
    return (os.path.abspath(filename), st.st_size, st.st_mtime_ns)


def _keep(key, products):
    with _lock:
        for old in _identified.values():
            for product in old:
                product.close()
        _identified.clear()
        if key is not None:
            _identified[key] = products


def is_spherex_file(filename, **kwargs):
    """glue identifier: True for a SPHEREx spectral image or combined cutout file."""
    key = _key(filename)
    if key is None:  # not a plain file: let the reader decide without keeping anything
        return is_spherex_product(filename)
    try:
        products = open_products(filename)
    except SpherexError:  # the reader raises nothing else, whatever the bytes
        return _claims_spherex(filename)
    _keep(key, products)
    return True


def _claims_spherex(filename):
    """True if a card at a card boundary of the file's first bytes names a SPHEREx layout."""
    try:
        with open(filename, "rb") as f:
            head = f.read(_CLAIM_BYTES)
    except OSError:
        return False
    if not head.startswith(b"SIMPLE  ="):
        return False
    for claim in _CLAIMS:
        pos = head.find(claim)
        while pos >= 0:
            if pos % 80 == 0:
                return True
            pos = head.find(claim, pos + 1)
    return False


def read_spherex(filename, **kwargs):
    """glue factory: one Data per spectral image in ``filename`` (a list for combined files)."""
    key = _key(filename)
    with _lock:
        products = _identified.pop(key, None) if key is not None else None
    if products is None:
        products = open_products(filename)
    datasets = products_to_data(products)
    return datasets[0] if len(datasets) == 1 else datasets


def register():
    """Add the factory to glue's registry (once)."""
    if not any(member.function is read_spherex for member in data_factory.members):
        data_factory(FACTORY_LABEL, identifier=is_spherex_file,
                     priority=FACTORY_PRIORITY)(read_spherex)
