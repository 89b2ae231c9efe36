"""Quick-look PNG: every cutout of a combined file in one grid, ordered by wavelength.

Built for hundreds of cutouts: panels are composed into a single numpy mosaic (one
``imshow``, not one Axes per cutout), large cutouts are block-averaged down to the panel size,
each panel gets its own percentile + asinh stretch and a λ label, and beyond ``max_panels``
an evenly spaced subset across the wavelength range is shown. Rendering uses matplotlib's Agg
canvas directly (no pyplot, no GUI backend); the PNG is written atomically.
"""

from __future__ import annotations

import math
import mmap
import os
import warnings
from pathlib import Path

import numpy as np

from ..errors import SpherexFormatError, SpherexInputError
from ..fitsbytes.atomic import atomic_path
from ..fitsbytes.scan import IMAGE_DTYPES, scan_hdus

__all__ = ["quicklook_png", "DEFAULT_MAX_PANELS"]

DEFAULT_MAX_PANELS = 240
_LABEL_PX = 14
_GAP_PX = 2
_DPI = 100


def quicklook_png(source, out_png, *, max_panels=DEFAULT_MAX_PANELS, title=None):
    """Draw a grid of cutouts ordered by wavelength into ``out_png``; returns its path.

    Parameters
    ----------
    source : str, Path or sequence
        A combined cutout file (its CUTOUT_INFO central wavelengths label the panels), or
        SpectralImage products (labelled with λ at their central pixel).
    max_panels : int
        Show at most this many panels, chosen evenly across the wavelength range.
    title : str, optional
        Figure title (default: how many cutouts are shown, and the λ range).
    """
    if not isinstance(max_panels, int) or max_panels < 1:
        raise SpherexInputError(f"max_panels {max_panels!r} must be a positive integer")
    panels = _panels(source)
    if not panels:
        raise SpherexInputError("nothing to draw: no cutouts with an image")
    panels.sort(key=lambda p: p[0])
    shown = _subset(len(panels), max_panels)
    chosen = [panels[i] for i in shown]
    images = [(wl, load()) for wl, load in chosen]
    if title is None:
        shown = (f"{len(images)} cutouts" if len(images) == len(panels) else
                 f"{len(images)} of {len(panels)} cutouts (at most {max_panels} panels, "
                 "evenly spaced in wavelength)")
        title = f"{shown}, {panels[0][0]:.3f}-{panels[-1][0]:.3f} µm"
    return _render(images, Path(out_png), title)


def _panels(source):
    """``[(wavelength, loader)]``; loaders read one image on demand."""
    if isinstance(source, (str, os.PathLike)):
        return _file_panels(os.fspath(source))
    return [(_central_wavelength(p), _loader(p)) for p in source]


def _file_panels(path):
    """Panels of a combined file, reading only CUTOUT_INFO and the IMAGEn data needed.

    The extensions are located by a header scan of the memory-mapped file and each image is
    read with one numpy memmap, so a file of hundreds of cutouts (GBs of PSF cubes) costs
    well under a second instead of parsing every header with astropy.
    """
    from astropy.io import fits
    from astropy.table import Table

    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            spans = {s.extname: s for s in scan_hdus(mm, label=path)}
        # astropy reads HDUs lazily up to the one asked for by number (not by name)
        with fits.open(path, memmap=True) as hdul:
            info = Table.read(hdul[spans["CUTOUT_INFO"].index])
    except FileNotFoundError:
        raise SpherexInputError(f"{path}: no such file") from None
    except (KeyError, ValueError, OSError) as exc:
        raise SpherexFormatError(f"{path}: not a combined cutout file ({exc})") from None
    panels = []
    for row in info:
        span = spans.get(f"IMAGE{int(row['cutout_index'])}")
        if str(row["status"]).strip() == "ok" and span is not None and len(span.shape) == 2:
            panels.append((float(row["central_wavelength"]),
                           lambda span=span: _read_image(path, span)))
    return panels


def _read_image(path, span):
    dtype = IMAGE_DTYPES[span.bitpix]
    data = np.memmap(path, dtype=dtype, mode="r", offset=span.data_start, shape=span.shape)
    image = np.array(data, dtype=np.float32)
    del data
    if span.bscale != 1.0 or span.bzero != 0.0:
        image = image * span.bscale + span.bzero
    return image


def _loader(product):
    return lambda: np.asarray(product.image, dtype=np.float32)


def _central_wavelength(product):
    ny, nx = np.shape(product.image)
    wl, _ = product.pixel_to_wave((nx - 1) / 2, (ny - 1) / 2)
    return float(wl)


def _subset(n, k):
    if n <= k:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, k)})


def _cell_size(n):
    for limit, size in ((12, 160), (48, 112), (120, 80), (300, 64)):
        if n <= limit:
            return size
    return 48


def _stretch(image, size):
    """Downsample to fit ``size`` px, percentile-clip and asinh-stretch to [0, 1] (NaN kept)."""
    img = np.asarray(image, dtype=np.float32)
    factor = max(1, math.ceil(max(img.shape) / size))
    if factor > 1:
        ny, nx = (-(-s // factor) * factor for s in img.shape)
        padded = np.full((ny, nx), np.nan, np.float32)
        padded[:img.shape[0], :img.shape[1]] = img
        blocks = padded.reshape(ny // factor, factor, nx // factor, factor)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks stay NaN
            img = np.nanmean(blocks, axis=(1, 3))
    finite = img[np.isfinite(img)]
    if finite.size == 0:
        return img
    lo, hi = np.percentile(finite, [1.0, 99.5])
    scaled = np.clip((img - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
    a = 0.1
    return np.arcsinh(scaled / a) / np.arcsinh(1.0 / a)


def _render(images, out_png, title):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(images)
    cell = _cell_size(n)
    ncols = max(1, math.ceil(math.sqrt(n * 1.3)))
    nrows = math.ceil(n / ncols)
    pitch_x, pitch_y = cell + _GAP_PX, cell + _LABEL_PX + _GAP_PX
    canvas = np.full((nrows * pitch_y, ncols * pitch_x), np.nan, np.float32)
    labels = []
    for k, (wl, image) in enumerate(images):
        r, c = divmod(k, ncols)
        panel = np.flipud(_stretch(image, cell))  # FITS rows go up; the canvas is drawn top-down
        if max(panel.shape) < cell // 2:  # tiny cutouts: enlarge by an integer factor
            f = cell // max(panel.shape)
            panel = np.repeat(np.repeat(panel, f, axis=0), f, axis=1)
        ph, pw = panel.shape
        y0 = r * pitch_y + (cell - ph) // 2
        x0 = c * pitch_x + (cell - pw) // 2
        canvas[y0:y0 + ph, x0:x0 + pw] = panel
        labels.append((c * pitch_x + cell / 2, r * pitch_y + cell + _LABEL_PX * 0.55, wl))
    height_px, width_px = canvas.shape
    title_px = 28
    fig = Figure(figsize=(width_px / _DPI, (height_px + title_px) / _DPI), dpi=_DPI,
                 facecolor="#1c2430")
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, height_px / (height_px + title_px)))
    ax.set_axis_off()
    cmap = _cmap()
    ax.imshow(np.ma.masked_invalid(canvas), cmap=cmap, vmin=0, vmax=1, interpolation="nearest",
              extent=(0, width_px, height_px, 0))
    fontsize = 7 if cell <= 64 else 8
    for x, y, wl in labels:
        ax.text(x, y, f"{wl:.3f} µm", color="white", ha="center", va="center",
                fontsize=fontsize)
    fig.text(0.5, 1 - 0.5 * title_px / (height_px + title_px), title, color="white",
             ha="center", va="center", fontsize=10)
    return _save(fig, out_png)


def _cmap():
    import matplotlib

    # gaps and blank pixels: dark slate, distinct from dark sky
    return matplotlib.colormaps["gray"].with_extremes(bad="#1c2430")


def _save(fig, out_png):
    with atomic_path(out_png) as tmp, open(tmp, "xb") as f:
        fig.savefig(f, format="png", dpi=_DPI, facecolor=fig.get_facecolor())
    return out_png
