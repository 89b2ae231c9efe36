"""SPHEREx products: the spectral image, its per-pixel wavelength, flags, celestial WCS, PSF,
and the combined multi-extension cutout file.

Public names: :class:`SpectralImage`, :func:`open_products`, :func:`read_combined`,
:class:`CombinedWriter`.
"""

from .combined import CombinedWriter, read_combined
from .spectral_image import SpectralImage, open_products

__all__ = ["SpectralImage", "open_products", "read_combined", "CombinedWriter"]
