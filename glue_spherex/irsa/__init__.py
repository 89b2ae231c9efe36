"""The IRSA client: SPHEREx image queries (TAP/SIA2), target-name resolution, configuration.

Public names: :class:`SpherexArchive`, :data:`conf`.
"""

from .config import conf
from .core import SpherexArchive

__all__ = ["SpherexArchive", "conf"]
