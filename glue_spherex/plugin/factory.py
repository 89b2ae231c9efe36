"""glue data factory for SPHEREx files: full frames, IRSA cutouts and combined cutout files.

Recognised by content (:func:`glue_spherex.products.is_spherex_product`), not by name, with
priority 200 so it wins over glue's generic FITS reader (priority 100).  A combined file
opens as a list of datasets, one per cutout.
"""

from __future__ import annotations

from glue.config import data_factory

from ..products import is_spherex_product, open_products
from .datasets import products_to_data

__all__ = ["read_spherex", "is_spherex_file", "FACTORY_LABEL", "FACTORY_PRIORITY"]

FACTORY_LABEL = "SPHEREx spectral image(s)"
FACTORY_PRIORITY = 200


def is_spherex_file(filename, **kwargs):
    """glue identifier: True for a SPHEREx spectral image or combined cutout file."""
    return is_spherex_product(filename)


def read_spherex(filename, **kwargs):
    """glue factory: one Data per spectral image in ``filename`` (a list for combined files)."""
    datasets = products_to_data(open_products(filename))
    return datasets[0] if len(datasets) == 1 else datasets


def register():
    """Add the factory to glue's registry (once)."""
    if not any(member.function is read_spherex for member in data_factory.members):
        data_factory(FACTORY_LABEL, identifier=is_spherex_file,
                     priority=FACTORY_PRIORITY)(read_spherex)
