"""The offline tests' main paths, against the real IRSA and CDS (``pytest --remote-data``).

Skipped unless ``--remote-data`` is given (pytest-remotedata, as astroquery does). The
expectations are the documented behaviour of the real services, as recorded in
``shared/reference/irsa-samples`` (Sesame's M31 position, SIA2's columns and error document,
the WCS-WAVE layout): the same assertions the offline tests make against the local archive.
"""

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from glue_spherex.analysis.spectrum import extract_spectrum
from glue_spherex.download.fetcher import fetch_to_file
from glue_spherex.errors import SpherexInputError
from glue_spherex.irsa.core import COLUMNS, SpherexClass
from glue_spherex.irsa.resolve import resolve_target
from glue_spherex.products.combined import read_combined

pytestmark = pytest.mark.remote_data

IRSA = "https://irsa.ipac.caltech.edu"
M101 = SkyCoord(210.80227, 54.34895, unit="deg")
#: D2's wavelength range (µm), from the real WCS-WAVE tables: every D2 pixel lies inside.
D2_RANGE = (1.09, 1.65)


@pytest.fixture
def irsa(monkeypatch):
    """A client of the real IRSA, whatever the environment points the package at."""
    monkeypatch.delenv("GLUE_SPHEREX_ARCHIVE_URL", raising=False)
    return SpherexClass(archive_url=IRSA)


def test_sesame_resolves_m31_where_cds_puts_it():
    # sesame_m31.xml: jradeg=10.68470833, jdedeg=41.26875
    coord = resolve_target("M31")
    assert coord.separation(SkyCoord(10.68470833, 41.26875, unit="deg")) < 1 * u.arcsec


def test_unknown_name_is_one_line_input_error():
    with pytest.raises(SpherexInputError, match="NotARealObjectXYZ"):
        resolve_target("NotARealObjectXYZ")


@pytest.fixture(scope="module")
def m101_d2():
    return SpherexClass(archive_url=IRSA).query_region(M101, size=0.05 * u.deg, bandpass="D2")


def test_tap_query_rows_are_d2_images_with_cutout_urls(m101_d2):
    table = m101_d2
    assert len(table) > 10  # M101 is observed in every survey pass
    assert tuple(table.colnames[:len(COLUMNS)]) == COLUMNS
    assert set(table["detector"]) == {2}
    assert all(url.startswith(f"{IRSA}/ibe/data/spherex/") for url in table["access_url"])
    assert all("center=" in url and "size=" in url for url in table["cutout_url"])
    assert np.all(table["em_min"] < table["em_max"])
    assert np.all((table["em_min"] > D2_RANGE[0]) & (table["em_max"] < D2_RANGE[1]))
    assert np.all(np.diff(table["t_min"]) >= 0)  # sorted by time


def test_sia_finds_the_images_tap_finds(irsa, m101_d2):
    sia = irsa.query_region(M101, size=0.05 * u.deg, bandpass="D2", via="sia")
    # SIA2 lags TAP by about a day: everything it lists, TAP lists too.
    assert len(sia) > 10
    assert set(sia["obs_id"]) <= set(m101_d2["obs_id"])


def test_out_of_range_dec_is_refused_before_asking(irsa):
    with pytest.raises(SpherexInputError, match="[Dd]ec"):
        irsa.query_region((210.0, 95.0), size=0.05 * u.deg)


def test_two_real_cutouts_into_a_combined_file_and_a_spectrum(m101_d2, tmp_path):
    out = tmp_path / "m101_two.fits"
    summary = fetch_to_file(m101_d2[:2], out, target=M101, size=0.05 * u.deg)
    assert summary.complete
    info, images = read_combined(out)
    assert len(info) == 2 and len(images) == 2
    for image in images:
        wave, _ = image.wavelength_at(M101)
        assert D2_RANGE[0] < float(np.squeeze(wave)) < D2_RANGE[1]
        assert "SOURCE" in image.flag_bits
        image.close()
    spectrum = extract_spectrum(out, M101, radius=6 * u.arcsec)
    assert len(spectrum) == 2
    assert np.all(np.isfinite(spectrum["flux"]))
