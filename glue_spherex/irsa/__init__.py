"""The IRSA client: SPHEREx image queries (TAP/SIA2), target-name resolution, configuration.

Public names: :class:`SpherexArchive`, :data:`conf`, :func:`plan_catalog` (which images
cover which sources of a catalog, one TAP upload query per batch).
"""

from .catalog_plan import plan_catalog
from .config import conf
from .core import SpherexArchive

__all__ = ["SpherexArchive", "conf", "plan_catalog"]
