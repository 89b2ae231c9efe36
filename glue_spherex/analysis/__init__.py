"""Science on SPHEREx products: aperture spectra, reprojected cubes, quick-look images, and
source catalogs read for them. Imports no glue.

Public names: :func:`extract_spectrum`, :func:`reproject_cube`.
"""

from .cube import reproject_cube
from .spectrum import extract_spectrum

__all__ = ["extract_spectrum", "reproject_cube"]
