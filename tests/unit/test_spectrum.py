"""Spectrum extraction against the synthetic sky's exact SEDs, through real cutouts.

The cutouts are IRSA-style cutouts of the local archive's planned frames (all six bands,
0.75-5 µm), rendered with noise, flagged and corrupted pixels and zodiacal light. The truth
is the sky model's analytic flux density at each cutout's wavelength: the total for point
sources, and for the galaxy the PSF-convolved flux inside the aperture. A point passes if
``|recovered - truth| <= max(0.02 * truth, 3 sigma)``.
"""

from __future__ import annotations

import subprocess
import sys

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import QTable
from cutouts import cutouts_at

from glue_spherex.analysis.spectrum import (
    Frame,
    extract_spectrum,
    measure_frames,
    plot_spectrum,
    to_spectrum,
    write_ecsv,
    write_spectrum,
)
from glue_spherex.errors import SpherexError, SpherexInputError, SpherexOutputError
from glue_spherex.local_archive.synthetic import default_sky
from glue_spherex.products.flags import DEFAULT_BAD_FLAGS

SKY = default_sky()
POINT = "M101-S1"    # K giant: H- bump at 1.6 µm, CO bands
QUASAR = "M101-S3"   # z = 0.2 quasar, broad H I lines
GALAXY = "M101"      # nucleus + exponential disc, 1.6 µm bump, 3.3 µm PAH
GALAXY_RADIUS = 18 * u.arcsec
FLAGS = DEFAULT_BAD_FLAGS


def _coord(name):
    src = SKY.source(name)
    return SkyCoord(src.ra * u.deg, src.dec * u.deg)


@pytest.fixture(scope="module")
def point_cutouts():
    return cutouts_at(*(lambda s: (s.ra, s.dec))(SKY.source(POINT)), per_detector=15)


@pytest.fixture(scope="module")
def quasar_cutouts():
    return cutouts_at(*(lambda s: (s.ra, s.dec))(SKY.source(QUASAR)), per_detector=10)


# The galaxy's spectral features (Paα, 3.3 µm PAH, Brα) and the continuum on both sides:
# frames seeing exactly these wavelengths are added to the even sampling.
FEATURES = ((1.8751, 1.80, 1.95), (3.29, 3.10, 3.50), (4.0523, 3.95, 4.15))


@pytest.fixture(scope="module")
def galaxy_cutouts():
    return cutouts_at(*(lambda s: (s.ra, s.dec))(SKY.source(GALAXY)), per_detector=15,
                      near=[w for feature in FEATURES for w in feature])


def _truth(table, name, products, radius=None):
    wl = u.Quantity(table["wavelength"], u.um).value
    if radius is None:
        return SKY.true_flux_density(name, wl)
    fwhm = np.array([products[i].psf_fwhm for i in table["product_index"]])
    return np.array([SKY.true_flux_density(name, w, radius.to_value(u.arcsec), f)
                     for w, f in zip(wl, fwhm)])


def _score(table, truth):
    """Per-point pass flags and the figures reported: max |rel|, max |Δ|/σ, pull std."""
    ok = np.asarray(table["status"]) == "ok"
    flux = u.Quantity(table["flux"], u.uJy).value[ok]
    err = u.Quantity(table["flux_err"], u.uJy).value[ok]
    t = truth[ok]
    passed = np.abs(flux - t) <= np.maximum(0.02 * t, 3 * err)
    pull = (flux - t) / err
    return ok, passed, dict(max_rel=float(np.max(np.abs(flux / t - 1))),
                            max_pull=float(np.max(np.abs(pull))), pull_std=float(np.std(pull)),
                            n=len(table), n_ok=int(ok.sum()))


def _check_coverage(table):
    wl = u.Quantity(table["wavelength"], u.um).value
    ok = np.asarray(table["status"]) == "ok"
    assert set(np.asarray(table["detector"])[ok]) == {1, 2, 3, 4, 5, 6}
    assert wl[ok].min() < 0.8 and wl[ok].max() > 4.9
    assert np.all(np.diff(wl[np.isfinite(wl)]) >= 0)  # sorted by wavelength


@pytest.mark.parametrize("name, fixture", [(POINT, "point_cutouts"), (QUASAR, "quasar_cutouts")])
def test_point_source_matches_truth(name, fixture, request):
    products = request.getfixturevalue(fixture)
    table = extract_spectrum(products, _coord(name), 6 * u.arcsec, bad_flags=FLAGS)
    assert len(table) == len(products) >= 60
    _check_coverage(table)
    ok, passed, figures = _score(table, _truth(table, name, products))
    print(f"\n{name}: {figures}")
    assert ok.sum() >= 0.9 * len(table)   # masking must not hide most of the spectrum
    assert passed.all(), table[ok][~passed]
    # VARIANCE propagated honestly: the scatter about the truth matches the errors.
    assert 0.6 < figures["pull_std"] < 1.5


def test_galaxy_nucleus_matches_truth(galaxy_cutouts):
    table = extract_spectrum(galaxy_cutouts, _coord(GALAXY), GALAXY_RADIUS,
                             aperture_correction="none", bad_flags=FLAGS)
    _check_coverage(table)
    ok, passed, figures = _score(table, _truth(table, GALAXY, galaxy_cutouts, GALAXY_RADIUS))
    print(f"\n{GALAXY} nucleus, r = {GALAXY_RADIUS}: {figures}")
    assert ok.sum() >= 0.9 * len(table)
    assert passed.all(), table[ok][~passed]
    # the features are measured, not smoothed away: each peak stands above the continuum
    # interpolated between its two sides
    wl = u.Quantity(table["wavelength"], u.um).value
    flux = u.Quantity(table["flux"], u.uJy).value
    for feature, lo, hi in FEATURES:
        peak = ok & (np.abs(wl - feature) < 0.02)
        side = ok & ((np.abs(wl - lo) < 0.04) | (np.abs(wl - hi) < 0.04))
        assert peak.any() and (side & (wl < feature)).any() and (side & (wl > feature)).any()
        continuum = np.polyval(np.polyfit(wl[side], flux[side], 1), feature)
        assert flux[peak].max() > 1.05 * continuum, feature


def test_masking_off_lets_bad_pixels_bias_the_spectrum(galaxy_cutouts):
    coord = _coord(GALAXY)
    masked = extract_spectrum(galaxy_cutouts, coord, GALAXY_RADIUS, aperture_correction="none",
                              bad_flags=FLAGS)
    raw = extract_spectrum(galaxy_cutouts, coord, GALAXY_RADIUS, aperture_correction="none",
                           bad_flags=())
    assert (np.asarray(raw["n_masked"]) < np.asarray(masked["n_masked"])).any()
    ok, passed, figures = _score(raw, _truth(raw, GALAXY, galaxy_cutouts, GALAXY_RADIUS))
    print(f"\nmasking off: {figures}")
    assert not passed.all()       # hot, cold and transient pixels now break the criterion
    assert figures["max_rel"] > 0.1


def test_gaussian_psf_fallback_with_a_larger_aperture(point_cutouts):
    """Without a PSF extension (a glue dataset) the header FWHM Gaussian is used."""
    coord = _coord(POINT)
    frames = []
    for p in point_cutouts:
        f = Frame.from_product(p, bad_flags=FLAGS)
        f.psf = None
        frames.append(f)
    table = measure_frames(frames, coord, 12 * u.arcsec)
    ok, passed, figures = _score(table, _truth(table, POINT, point_cutouts))
    print(f"\nGaussian PSF, r = 12\": {figures}")
    assert ok.sum() >= 0.9 * len(table) and passed.all()


def test_annulus_background_replaces_the_zodi_model(point_cutouts):
    coord = _coord(POINT)
    no_bkg = extract_spectrum(point_cutouts, coord, 6 * u.arcsec, subtract_zodi=False,
                              bad_flags=FLAGS)
    ok, passed, _ = _score(no_bkg, _truth(no_bkg, POINT, point_cutouts))
    assert not passed.all()       # the zodiacal light is in IMAGE
    table = extract_spectrum(point_cutouts, coord, 6 * u.arcsec, subtract_zodi=False,
                             annulus=(18 * u.arcsec, 36 * u.arcsec), bad_flags=FLAGS)
    ok, passed, figures = _score(table, _truth(table, POINT, point_cutouts))
    print(f"\nannulus instead of ZODI: {figures}")
    assert ok.sum() >= 0.9 * len(table) and passed.all()
    assert (u.Quantity(table["background"]).value[ok] > 0).all()


def test_unmeasurable_cutouts_keep_their_rows(point_cutouts, galaxy_cutouts):
    coord = _coord(POINT)
    products = point_cutouts[:5]
    far = galaxy_cutouts[0]           # does not contain the point source
    frames = [Frame.from_product(p) for p in products + [far]]
    dead = Frame.from_product(products[0])
    dead.bad = np.ones_like(dead.bad)
    half = Frame.from_product(products[1])
    x, y = (int(round(float(v))) for v in half.wcs.world_to_pixel(coord))
    half.bad = np.zeros_like(half.bad)
    half.bad[y, x] = True   # the pixel holding most of the PSF
    table = measure_frames(frames + [dead, half], coord, 6 * u.arcsec)
    assert len(table) == 8
    status = dict(zip(np.asarray(table["product_index"]), np.asarray(table["status"])))
    assert status[5] == "off_image"
    assert status[6] == "masked"
    assert all(status[i] == "ok" for i in range(5))
    # the row of `half` keeps the PSF-weighted fraction of light in its unmasked pixels
    kept = float(table["unmasked_fraction"][np.asarray(table["product_index"]) == 7][0])
    assert 0 < kept < 0.8
    assert status[7] == ("ok" if kept >= 0.5 else "too_masked")
    strict = measure_frames([half], coord, 6 * u.arcsec, min_unmasked_fraction=kept + 0.02)
    assert strict["status"][0] == "too_masked" and np.isnan(strict["flux"][0])
    lenient = measure_frames([half], coord, 6 * u.arcsec, min_unmasked_fraction=kept - 0.02)
    assert lenient["status"][0] == "ok" and np.isfinite(lenient["flux"][0])
    bad = np.asarray(table["status"]) != "ok"
    assert np.isnan(u.Quantity(table["flux"]).value[bad]).all()
    assert np.isfinite(u.Quantity(table["flux"]).value[~bad]).all()
    assert table.meta["status_meanings"]["too_masked"]


def test_bad_input_raises_one_line_errors(point_cutouts):
    coord = _coord(POINT)
    for kwargs, text in (
        (dict(radius=-3 * u.arcsec), "positive"),
        (dict(radius=3 * u.m), "angle"),
        (dict(annulus=(3 * u.arcsec, 20 * u.arcsec)), "outside the aperture"),
        (dict(annulus=12 * u.arcsec), "pair"),
        (dict(aperture_correction="huge"), "aperture_correction"),
        (dict(min_unmasked_fraction=0), "min_unmasked_fraction"),
        (dict(bad_flags=("HOT", "SPARKLY")), "SPARKLY"),
    ):
        with pytest.raises(SpherexInputError, match=text) as info:
            extract_spectrum(point_cutouts[:2], coord, **{"radius": 6 * u.arcsec, **kwargs})
        assert "\n" not in str(info.value)
    with pytest.raises(SpherexInputError, match="SkyCoord"):
        extract_spectrum(point_cutouts[:2], (210.8, 54.3))
    with pytest.raises(SpherexError, match="no such file"):
        extract_spectrum("/nonexistent/combined.fits", coord)


def test_writers(point_cutouts, tmp_path):
    table = extract_spectrum(point_cutouts[:12], _coord(POINT), 6 * u.arcsec)
    table["status"][0] = "off_image"          # a NaN row must survive every writer
    table["flux"][0] = np.nan * u.uJy

    path = write_ecsv(table, tmp_path / "spec.ecsv")
    back = QTable.read(path)
    assert back.colnames == table.colnames and len(back) == len(table)
    assert u.Quantity(back["flux"]).unit == u.uJy
    assert np.allclose(u.Quantity(back["flux"]).value, u.Quantity(table["flux"]).value,
                       equal_nan=True)
    assert back.meta["aperture_correction"] == "psf"

    spec = to_spectrum(table)
    assert spec.spectral_axis.unit == u.um and spec.flux.unit == u.uJy
    assert spec.mask[0] and not spec.mask[1:].any()
    assert np.allclose(spec.uncertainty.array[1:], u.Quantity(table["flux_err"]).value[1:])

    from specutils import Spectrum

    fits_path = write_spectrum(table, tmp_path / "spec.fits")
    again = Spectrum.read(fits_path, format="tabular-fits")
    assert np.allclose(again.flux.value[1:], spec.flux.value[1:])

    png = plot_spectrum(table, tmp_path / "spec.png",
                        truth=(np.linspace(0.75, 5, 200),
                               SKY.true_flux_density(POINT, np.linspace(0.75, 5, 200))))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.ecsv", "spec.fits", "spec.png"]
    with pytest.raises(SpherexOutputError, match="does not exist"):
        write_ecsv(table, tmp_path / "missing" / "spec.ecsv")


# --- command line -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def combined_file(point_cutouts, tmp_path_factory):
    from glue_spherex.products.combined import CombinedWriter

    path = tmp_path_factory.mktemp("cli") / "combined.fits"
    products = point_cutouts[::6]
    planned = [dict(cutout_index=i + 1, access_url=f"http://127.0.0.1/cutout/{i + 1}")
               for i in range(len(products))]
    with CombinedWriter(path, planned, target=_coord(POINT)) as writer:
        for i, p in enumerate(products):
            writer.add(i + 1, p)
    return path, len(products)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "glue_spherex.cli", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_spectrum_writes_all_outputs(combined_file, tmp_path):
    path, n = combined_file
    src = SKY.source(POINT)
    out = tmp_path / "spec.ecsv"
    result = _cli("spectrum", str(path), "--ra", str(src.ra), "--dec", str(src.dec),
                  "--radius", "6arcsec", "-o", str(out), "--plot", str(tmp_path / "spec.png"),
                  "--spectrum", str(tmp_path / "spec.fits"),
                  "--annulus", "18arcsec,36arcsec", "--bad-flags", "HOT,COLD,TRANSIENT,NONFUNC")
    assert result.returncode == 0, result.stderr
    table = QTable.read(out)
    assert len(table) == n
    assert sorted(table["cutout_index"]) == list(range(1, n + 1))
    assert table.meta["bad_flags"] == ["HOT", "COLD", "TRANSIENT", "NONFUNC"]
    assert table.meta["annulus_arcsec"] == [18.0, 36.0]
    ok = np.asarray(table["status"]) == "ok"
    truth = SKY.true_flux_density(POINT, u.Quantity(table["wavelength"]).value)
    flux, err = u.Quantity(table["flux"]).value, u.Quantity(table["flux_err"]).value
    assert (np.abs(flux - truth) <= np.maximum(0.02 * truth, 3 * err))[ok].all()
    assert (tmp_path / "spec.png").stat().st_size > 1000
    assert (tmp_path / "spec.fits").stat().st_size > 0
    assert f"{n} cutouts" in result.stderr


def _cli_on_a_terminal(*args, columns=100):
    """Run the command line with stderr on a pseudo-terminal of ``columns`` columns (stdout
    a pipe): ``(exit code, stdout, what the terminal showed)``."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "glue_spherex.cli", *args],
                            stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    shown = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown.append(chunk)
    out = proc.stdout.read().decode()
    proc.stdout.close()
    code = proc.wait(timeout=300)
    os.close(master)
    return code, out, b"".join(shown).decode()


@pytest.mark.slow
def test_cli_spectrum_progress_on_a_terminal_leaves_the_results_unchanged(combined_file,
                                                                          tmp_path):
    import re

    from glue_spherex.analysis.spectrum import write_ecsv

    path, n = combined_file
    src = SKY.source(POINT)
    where = ["spectrum", str(path), "--ra", str(src.ra), "--dec", str(src.dec)]
    expected = write_ecsv(extract_spectrum(path, _coord(POINT), 6 * u.arcsec),
                          tmp_path / "expected.ecsv").read_bytes()

    piped = _cli(*where, "-o", str(tmp_path / "piped.ecsv"))
    code, out, screen = _cli_on_a_terminal(*where, "-o", str(tmp_path / "tty.ecsv"))
    assert piped.returncode == code == 0, piped.stderr
    assert out == piped.stdout
    assert (tmp_path / "piped.ecsv").read_bytes() == (tmp_path / "tty.ecsv").read_bytes() \
        == expected
    summary = f"{n} cutouts, {n} measured; wrote {tmp_path / 'tty.ecsv'}"
    # not a terminal: no bar, only the summary (as 'glue-spherex fetch')
    assert piped.stderr.splitlines() == [summary.replace("tty.ecsv", "piped.ecsv")]
    # a terminal: a bar for opening and one for measuring, each filled, then the summary
    lines = [line.strip() for line in re.split(r"[\r\n]+", screen) if line.strip()]
    for step in ("open", "measure"):
        assert any(re.match(rf"{step}: 100%\|█+\| {n}/{n} \[", line) for line in lines), lines
    assert lines[-1] == summary
    assert max(len(line) for line in lines if "%|" in line) <= 100  # the terminal's width

    code, out, screen = _cli_on_a_terminal(*where, "--no-progress")
    assert code == 0 and out.splitlines()[0].split()[:2] == ["wavelength", "wavelength_mean"]
    assert "%|" not in screen and screen.strip() == f"{n} cutouts, {n} measured"


def _cli_in_process(capsys, *args):
    from glue_spherex.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("args, text", [
    (["--ra", "210.8", "--dec", "95"], "Dec"),
    (["--ra", "210.8", "--dec", "54.3", "--radius", "6furlongs"], "radius"),
    (["--ra", "210.8", "--dec", "54.3", "--annulus", "12arcsec"], "annulus"),
    (["--ra", "210.8", "--dec", "54.3", "--bad-flags", "HOT,SPARKLY"], "SPARKLY"),
    (["--ra", "210.8", "--dec", "54.3", "--annulus", "20arcsec,12arcsec"], "annulus"),
    (["--dec", "54.3"], "--ra"),
])
def test_cli_spectrum_rejects_bad_input(combined_file, capsys, args, text):
    path, _ = combined_file
    code, err = _cli_in_process(capsys, "spectrum", str(path), *args)
    assert code == 2
    assert text in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_spectrum_missing_or_unreadable_file(tmp_path, capsys):
    code, err = _cli_in_process(capsys, "spectrum", str(tmp_path / "nope.fits"),
                                "--ra", "1", "--dec", "2")
    assert code == 2 and "nope.fits" in err
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"not a fits file at all")
    code, err = _cli_in_process(capsys, "spectrum", str(junk), "--ra", "1", "--dec", "2")
    assert code != 0 and "junk.fits" in err and len(err.strip().splitlines()) == 1


def test_cli_spectrum_exit_code_when_nothing_is_measured(combined_file, capsys, tmp_path):
    path, n = combined_file
    out = tmp_path / "far.ecsv"
    code, err = _cli_in_process(capsys, "spectrum", str(path), "--ra", "10", "--dec", "-40",
                                "-o", str(out))
    assert code == 1
    assert f"{n} cutouts, 0 measured ({n} off_image)" in err
    assert len(QTable.read(out)) == n   # the rows are still written
