"""Real synthetic cutouts around a sky position, from the local archive's observation plan.

Used by the spectrum, cube and live-spectrum tests: the frames of
:func:`glue_spherex.local_archive.synthetic.observation_plan` that cover a position, cut out the way IRSA
does (:func:`glue_spherex.local_archive.synthetic.cutout_bytes`) and opened as SpectralImages.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from glue_spherex.local_archive.synthetic import cutout_bytes, cutout_window, observation_plan
from glue_spherex.products.spectral_image import SpectralImage
from glue_spherex.products.wavelength import reference_table


@lru_cache(maxsize=16)
def covering_frames(ra, dec, size, part="qr2"):
    """``[(spec, window)]`` of every frame of the plan ``part`` holding a full ``size``-px
    cutout at (ra, dec)."""
    out = []
    target = np.array([np.cos(np.radians(dec)) * np.cos(np.radians(ra)),
                       np.cos(np.radians(dec)) * np.sin(np.radians(ra)), np.sin(np.radians(dec))])
    for spec in observation_plan(part):
        d = np.radians(spec.dec)
        v = np.array([np.cos(d) * np.cos(np.radians(spec.ra)),
                      np.cos(d) * np.sin(np.radians(spec.ra)), np.sin(d)])
        if v @ target < np.cos(np.radians(2.6)):  # a frame is 3.5 deg on a side
            continue
        window = cutout_window(spec, ra, dec, size, size)
        if window is not None and window[2:] == (size, size):
            out.append((spec, window))
    return tuple(out)


def _wavelength(spec, window):
    """Wavelength (µm) the frame sees at the centre of the window (parent-frame table)."""
    x0, y0, nx, ny = window
    wl, _ = reference_table(spec.detector).lookup(x0 + (nx - 1) / 2 + 1.0, y0 + (ny - 1) / 2 + 1.0)
    return float(wl)


def cutouts_at(ra, dec, per_detector=20, size=21, near=(), per_feature=2):
    """SpectralImages of up to ``per_detector`` frames per detector covering (ra, dec),
    chosen evenly across the detector rows (so across each band's wavelengths), plus the
    ``per_feature`` frames seeing the position closest to each wavelength in ``near`` (µm)."""
    chosen = []
    frames = covering_frames(float(ra), float(dec), int(size))
    for det in range(1, 7):
        mine = sorted((f for f in frames if f[0].detector == det), key=lambda f: f[1][1])
        if not mine:
            continue
        idx = np.unique(np.linspace(0, len(mine) - 1, min(per_detector, len(mine))).round())
        chosen += [mine[int(i)] for i in idx]
    for wl in near:
        rest = [f for f in frames if f not in chosen]
        rest.sort(key=lambda f: abs(_wavelength(*f) - wl))
        chosen += rest[:per_feature]
    return [SpectralImage.open(cutout_bytes(spec, *window)) for spec, window in chosen]
