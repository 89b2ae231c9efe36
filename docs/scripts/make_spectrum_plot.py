"""Draw docs/_static/spectrum_truth_vs_recovered.png: extracted spectra against the truth.

Run from the repository root: ``python docs/scripts/make_spectrum_plot.py``. It takes the
same real synthetic cutouts the accuracy tests use (the local archive's planned frames that
cover each source, IRSA-style 21x21-pixel cutouts, all six bands) and plots, for a point
source and for the nucleus of the synthetic M101, the recovered flux densities with their
errors over the analytic truth, and the residuals against the +-2 % band. The figures of
merit are printed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from cutouts import cutouts_at  # noqa: E402

from glue_spherex.analysis.spectrum import DETECTOR_COLOURS, extract_spectrum  # noqa: E402
from glue_spherex.local_archive.synthetic import BANDS, DETECTOR_FWHM, default_sky  # noqa: E402
from glue_spherex.products.flags import DEFAULT_BAD_FLAGS  # noqa: E402

OUT = ROOT / "docs" / "_static" / "spectrum_truth_vs_recovered.png"
# OUTLIER pixels are corrupted in the synthetic files (see tests/unit/test_spectrum.py).
FLAGS = tuple(DEFAULT_BAD_FLAGS) + ("OUTLIER",)
# Galaxy features (Paα, 3.3 µm PAH, Brα) and their sides also get the frames seeing them.
FEATURES = (1.80, 1.8751, 1.95, 3.10, 3.29, 3.50, 3.95, 4.0523, 4.15)
CASES = (
    ("M101-S1", 6 * u.arcsec, "psf", (), "point source M101-S1 (K giant), r = 6\", "
     "PSF-corrected"),
    ("M101", 18 * u.arcsec, "none", FEATURES, "M101 nucleus, flux within r = 18\""),
)


def _truth_points(sky, name, table, products, radius, correction):
    wl = u.Quantity(table["wavelength"], u.um).value
    if correction == "psf":
        return sky.true_flux_density(name, wl)
    fwhm = [products[i].psf_fwhm for i in table["product_index"]]
    return np.array([sky.true_flux_density(name, w, radius.to_value(u.arcsec), f)
                     for w, f in zip(wl, fwhm)])


def _truth_curve(sky, name, radius, correction):
    """Per band: dense wavelengths and truth (the galaxy's depends on the band's PSF)."""
    for det, (lo, hi) in BANDS.items():
        wl = np.linspace(max(lo, 0.74), min(hi, 5.02), 300)
        if correction == "psf":
            yield det, wl, sky.true_flux_density(name, wl)
        else:
            yield det, wl, sky.true_flux_density(name, wl, radius.to_value(u.arcsec),
                                                 DETECTOR_FWHM[det])


def main():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    sky = default_sky()
    fig = Figure(figsize=(12, 7.2))
    axes = fig.subplots(2, 2, sharex=True, gridspec_kw=dict(height_ratios=(3, 1.3)))
    for col, (name, radius, correction, near, title) in enumerate(CASES):
        src = sky.source(name)
        products = cutouts_at(src.ra, src.dec, per_detector=15, near=near)
        table = extract_spectrum(products, SkyCoord(src.ra * u.deg, src.dec * u.deg), radius,
                                 aperture_correction=correction, bad_flags=FLAGS)
        ok = np.asarray(table["status"]) == "ok"
        wl = u.Quantity(table["wavelength"], u.um).value
        flux = u.Quantity(table["flux"], u.uJy).value / 1e3
        err = u.Quantity(table["flux_err"], u.uJy).value / 1e3
        truth = _truth_points(sky, name, table, products, radius, correction) / 1e3
        rel = flux / truth - 1
        pull = (flux - truth) / err
        print(f"{name}: {ok.sum()}/{len(table)} cutouts measured, "
              f"max |rel| = {np.max(np.abs(rel[ok])):.4f}, max |d|/sigma = "
              f"{np.max(np.abs(pull[ok])):.2f}, pull std = {np.std(pull[ok]):.2f}")
        top, bottom = axes[0, col], axes[1, col]
        for i, (_det, cw, cf) in enumerate(_truth_curve(sky, name, radius, correction)):
            top.plot(cw, cf / 1e3, color="0.25", lw=1.0, zorder=1,
                     label="truth" if i == 0 else None)
        det = np.asarray(table["detector"])
        for d in range(1, 7):
            sel = ok & (det == d)
            top.errorbar(wl[sel], flux[sel], yerr=err[sel], fmt="o", ms=3.2, capsize=1.5,
                         color=DETECTOR_COLOURS[d], label=f"D{d}", zorder=2)
            bottom.errorbar(wl[sel], 100 * rel[sel], yerr=100 * err[sel] / truth[sel],
                            fmt="o", ms=3.2, capsize=1.5, color=DETECTOR_COLOURS[d])
        bottom.axhspan(-2, 2, color="0.85", zorder=0)
        bottom.axhline(0, color="0.3", lw=0.8)
        top.set_title(title, fontsize=10)
        top.set_ylabel("flux density [mJy]")
        top.legend(fontsize=8, ncol=4)
        top.grid(alpha=0.3)
        bottom.set_ylabel("recovered / truth - 1 [%]")
        bottom.set_xlabel("wavelength [µm]")
        bottom.set_ylim(-8, 8)
        bottom.grid(alpha=0.3)
    fig.suptitle("SPHEREx spectra extracted from synthetic cutouts vs the sky model's truth "
                 "(grey band: ±2 %)", fontsize=11)
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_name(f".{OUT.name}.tmp")
    fig.savefig(tmp, format="png", dpi=100)
    tmp.replace(OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
