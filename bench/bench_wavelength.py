"""Per-pixel wavelength of a full 2040x2040 frame: glue_spherex vs astropy, all six detectors.

For each detector's real WCS-WAVE table, builds the full-frame IMAGE header (the real QR2
header with full-frame CRPIX values), evaluates wavelength and bandwidth at every pixel with
``WCS(header, fobj=hdul, key='W')`` (``sip = None``, as IRSA's tutorials do) and with
:class:`glue_spherex.products.wavelength.SpectralWCS`, and prints the largest differences and the
speed ratio (best of several runs of each, same process). Run:

    .venv/bin/python bench/bench_wavelength.py
"""

import logging
import time
from importlib import resources

import astropy
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from glue_spherex.products.wavelength import SpectralWCS, reference_table

# after importing astropy (calling this first breaks astropy's import): hide the SIP INFO
logging.getLogger("astropy").setLevel(logging.ERROR)

N = 2040
REPEATS_ASTROPY = 3
REPEATS_OURS = 7


def full_frame_header(detector):
    text = resources.files("glue_spherex.data").joinpath("qr2_cutout_image_header.txt").read_text()
    h = fits.Header.fromstring(text, sep="\n")
    h["NAXIS1"] = h["NAXIS2"] = N
    h["CRPIX1"] = h["CRPIX2"] = 1020.5
    for key in ("CRPIX1A", "CRPIX2A", "CRPIX1W", "CRPIX2W"):
        h[key] = 1.0
    h["DETECTOR"] = detector
    return h


def best_of(repeats, func, *args):
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = func(*args)
        best = min(best, time.perf_counter() - t0)
    return best, result


def main():
    yy, xx = np.mgrid[0:N, 0:N]  # astropy needs every pixel position; not timed

    def with_astropy(header, hdul):
        w = WCS(header, fobj=hdul, key="W")
        w.sip = None
        return w.pixel_to_world_values(xx, yy)

    def with_ours(header, hdul):
        return SpectralWCS.from_header(header, hdul).grid((N, N))

    print(f"astropy {astropy.__version__}, numpy {np.__version__}; {N}x{N} pixels per frame")
    print(f"{'det':>3} {'grid':>6} {'astropy s':>10} {'ours s':>9} {'ratio':>7} "
          f"{'max|dlambda| um':>16} {'max|dbw| um':>12}")
    ratios, dwl_all, dbw_all = [], [], []
    for det in range(1, 7):
        table = reference_table(det)
        header = full_frame_header(det)
        hdul = fits.HDUList([fits.PrimaryHDU(), table.to_hdu()])
        t_ref, (wl_ref, bw_ref) = best_of(REPEATS_ASTROPY, with_astropy, header, hdul)
        t_ours, (wl, bw) = best_of(REPEATS_OURS, with_ours, header, hdul)
        if not (np.array_equal(np.isnan(wl), np.isnan(wl_ref))
                and np.array_equal(np.isnan(bw), np.isnan(bw_ref))):
            raise SystemExit(f"D{det}: NaN pattern differs from astropy")
        dwl = float(np.nanmax(np.abs(wl - wl_ref)))
        dbw = float(np.nanmax(np.abs(bw - bw_ref)))
        ratio = t_ref / t_ours
        ratios.append(ratio)
        dwl_all.append(dwl)
        dbw_all.append(dbw)
        grid = f"{len(table.x)}x{len(table.y)}"
        print(f"D{det:<2} {grid:>6} {t_ref:10.3f} {t_ours:9.4f} {ratio:6.1f}x "
              f"{dwl:16.2e} {dbw:12.2e}")
    print(f"wavelength: min speed ratio {min(ratios):.1f}x, max |dlambda| {max(dwl_all):.1e} um, "
          f"max |dbw| {max(dbw_all):.1e} um over 6 detectors "
          f"(targets: >= 10x, <= 1e-6 um)")


if __name__ == "__main__":
    main()
