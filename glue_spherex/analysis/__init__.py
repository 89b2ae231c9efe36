"""Science on SPHEREx products: aperture spectra, reprojected cubes, quick-look images, and
source catalogs read for them. Imports no glue.

Public names: :func:`extract_spectrum`, :func:`reproject_cube`, :func:`read_sources` (a
catalog's checked sources and its rejected rows, :class:`SourceList`).
"""

from .cube import reproject_cube
from .sources import SourceList, read_sources
from .spectrum import extract_spectrum

__all__ = ["extract_spectrum", "reproject_cube", "read_sources", "SourceList"]
