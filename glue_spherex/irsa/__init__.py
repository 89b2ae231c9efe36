"""The IRSA client: SPHEREx image queries (TAP/SIA2), target-name resolution, configuration.

Public names, as in astroquery (``IrsaClass``/``Irsa``): :class:`SpherexClass` (the query
class), :data:`Spherex` (its default instance) and :data:`conf`. Importing reads no
configuration; it is validated when a query is made.
"""

from .config import conf
from .core import Spherex, SpherexClass

__all__ = ["Spherex", "SpherexClass", "conf"]
