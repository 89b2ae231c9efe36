"""How the live spectrum scales with the number of cutouts in a glue session.

Builds N glue datasets from real synthetic cutouts of M101 (the local archive's planned
frames, 21x21 px), star-links them as the plugin does, follows a sky-circle subset with a
LiveSpectrum and times: the first spectrum (frames built from the datasets, then measured),
moving the region (one recomputation from cached frames), and the same measurement through
:func:`glue_spherex.analysis.spectrum.extract_spectrum` on the products. Prints milliseconds per
cutout for each N, so linear scaling shows as a flat column.

    python bench/bench_live_spectrum.py [N ...]      (default 50 100 200 400)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import astropy.units as u
from astropy.coordinates import SkyCoord

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cutouts import covering_frames  # noqa: E402

from glue_spherex.analysis.spectrum import extract_spectrum  # noqa: E402
from glue_spherex.local_archive.synthetic import cutout_bytes, default_sky  # noqa: E402
from glue_spherex.plugin import (  # noqa: E402
    SkyCircleSubsetState,
    link_cutouts,
    products_to_data,
    sky_subset,
)
from glue_spherex.plugin.live_spectrum import LiveSpectrum  # noqa: E402
from glue_spherex.products.spectral_image import SpectralImage  # noqa: E402


def main(sizes):
    from glue.core import DataCollection

    src = default_sky().source("M101")
    frames = covering_frames(src.ra, src.dec, 21)
    n_max = min(max(sizes), len(frames))
    t = time.perf_counter()
    products = [SpectralImage.open(cutout_bytes(spec, *w)) for spec, w in frames[:n_max]]
    print(f"{n_max} cutouts rendered in {time.perf_counter() - t:.1f} s")
    print(f"{'N':>5} {'first (s)':>10} {'ms/cutout':>10} {'move (s)':>9} {'ms/cutout':>10} "
          f"{'extract (s)':>12} {'ms/cutout':>10}")
    radius = 18.0 / 3600
    for n in sizes:
        n = min(n, n_max)
        dc = DataCollection(products_to_data(products[:n]))
        link_cutouts(dc)
        group = sky_subset(dc, src.ra, src.dec, radius, label="bench")
        t0 = time.perf_counter()
        live = LiveSpectrum(dc, group, aperture_correction="none")
        t1 = time.perf_counter()
        group.subset_state = SkyCircleSubsetState(src.ra + 5 / 3600, src.dec, radius)
        t2 = time.perf_counter()
        extract_spectrum(products[:n], SkyCoord(src.ra * u.deg, src.dec * u.deg),
                         radius * u.deg, aperture_correction="none")
        t3 = time.perf_counter()
        assert live.n_computations == 2 and live.spectrum.shape == (n,)
        print(f"{n:>5} {t1 - t0:>10.2f} {1e3 * (t1 - t0) / n:>10.2f} {t2 - t1:>9.2f} "
              f"{1e3 * (t2 - t1) / n:>10.2f} {t3 - t2:>12.2f} {1e3 * (t3 - t2) / n:>10.2f}")
        live.close()


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [50, 100, 200, 400])
