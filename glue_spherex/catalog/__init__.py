"""Spectra of a whole catalog: image-major tasks on Dask distributed, from the S3 copy by byte
ranges (or the cutout service), written as a resumable Parquet dataset.

Public names: :func:`extract_catalog`, :class:`CatalogResult`.
"""

from .run import CatalogResult, extract_catalog

__all__ = ["extract_catalog", "CatalogResult"]
