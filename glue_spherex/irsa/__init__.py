"""The IRSA client: SPHEREx image queries (TAP/SIA2), target-name resolution, configuration.

Public names, as in astroquery (``IrsaClass``/``Irsa``): :class:`SpherexClass` (the query
class), :data:`Spherex` (its default instance) and :data:`conf`. Importing reads no
configuration; it is validated when a query is made.
:func:`plan_catalog`: which images cover which sources of a catalog (one TAP upload query
per batch).
"""

from .catalog_plan import plan_catalog
from .config import conf
from .core import Spherex, SpherexClass

__all__ = ["Spherex", "SpherexClass", "conf", "plan_catalog"]
