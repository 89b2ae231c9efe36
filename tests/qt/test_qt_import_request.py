"""The import dialog's validation and preview logic (no GUI needed)."""

import astropy.units as u
import pytest
from astropy.table import Table

from glue_spherex.errors import SpherexInputError
from glue_spherex.plugin.import_request import build_request, cutout_bytes, summarize

GOOD = dict(target="210.80227 54.34895", size="2", size_unit="arcmin", detectors=[1, 3],
            collection="wide", time=None, via="tap", workers=4,
            archive_url="http://127.0.0.1:9/", cache_dir="")


def request(**changes):
    return build_request(**{**GOOD, **changes})


def test_coordinates_are_parsed_and_fields_normalised():
    req = request()
    assert req.coord.ra.deg == pytest.approx(210.80227)
    assert req.coord.dec.deg == pytest.approx(54.34895)
    assert req.query_target is req.coord
    assert req.size.to_value(u.arcmin) == pytest.approx(2)
    assert req.bandpasses == ("SPHEREx-D1", "SPHEREx-D3")
    assert req.archive_url == "http://127.0.0.1:9"
    assert req.cache_dir is None
    assert req.size_px == pytest.approx(120 / 6.15)


def test_sexagesimal_and_names():
    req = request(target="14h03m12.5s +54d20m56s")
    assert req.coord.ra.deg == pytest.approx(210.802, abs=1e-3)
    named = request(target="  Messier   101 ")
    assert named.coord is None and named.query_target == "Messier 101"


def test_pixel_size_is_kept_in_pixels():
    req = request(size="40", size_unit="px")
    assert req.size.unit == u.pix and req.size.value == 40
    assert req.size_px == 40


@pytest.mark.parametrize("changes, words", [
    (dict(target="150 95"), "Dec 95"),
    (dict(target="400 10"), "RA 400"),
    (dict(target=""), "target"),
    (dict(size="-1"), "size"),
    (dict(size="0"), "size"),
    (dict(size="abc"), "size"),
    (dict(size="1.5", size_unit="px"), "whole number"),
    (dict(size="10", size_unit="deg"), "full frame"),
    (dict(detectors=[]), "band"),
    (dict(time=(60900.0, 60800.0)), "time range"),
    (dict(archive_url="ftp://example.org"), "archive URL"),
    (dict(workers=0), "parallel downloads"),
])
def test_bad_input_is_one_line(changes, words):
    with pytest.raises(SpherexInputError) as info:
        request(**changes)
    message = str(info.value)
    assert words in message
    assert "\n" not in message


def test_time_range_is_passed_as_mjd():
    assert request(time=(60800, 60900.5)).time == (60800.0, 60900.5)


def test_preview_counts_per_requested_band():
    table = Table(dict(cutout_index=[1, 2, 3, 4, 5],
                       bandpass=["SPHEREx-D1", "SPHEREx-D3", "SPHEREx-D3", "SPHEREx-D1",
                                 "SPHEREx-D3"],
                       t_min=[60801.0, 60802.0, 60803.0, 60810.0, 60811.0],
                       t_max=[60801.1, 60802.1, 60803.1, 60810.1, 60811.1]))
    req = request(detectors=[1, 3, 5])
    preview = summarize(table, req)
    counts = {b.band: b.count for b in preview.bands}
    assert counts == {"SPHEREx-D1": 2, "SPHEREx-D3": 3, "SPHEREx-D5": 0}
    assert preview.total == 5
    assert preview.nbytes == 5 * cutout_bytes(req.size_px)
    assert preview.mjd_range == (60801.0, 60811.1)
    assert preview.headline().startswith("5 cutouts in 2 bands")


def test_empty_preview_says_so():
    table = Table(dict(cutout_index=[], bandpass=[], t_min=[], t_max=[]),
                  dtype=(int, str, float, float))
    preview = summarize(table, request())
    assert preview.total == 0 and preview.nbytes == 0
    assert "No cutouts" in preview.headline()


def test_download_estimate_grows_with_size_and_includes_the_psf_cube():
    psf_cube = 121 * 101 * 101 * 4
    assert psf_cube < cutout_bytes(1) < cutout_bytes(20) < cutout_bytes(200)
    # the four image planes add 16 bytes per pixel
    assert cutout_bytes(200) - cutout_bytes(100) == 16 * (200 ** 2 - 100 ** 2)


def test_memory_estimate_counts_what_stays_in_memory():
    from glue_spherex.plugin.import_request import memory_bytes

    per, psf = cutout_bytes(20), 121 * 101 * 101 * 4
    assert memory_bytes(20, 10) == 10 * per                  # downloads are held whole
    assert memory_bytes(20, 10, cached=5) == 10 * per        # cached ones are mapped
    assert memory_bytes(20, 0, cached=5) == 0
    assert memory_bytes(20, 10, cached=5, psf="none") == 15 * (per - psf)  # copied, no PSF
    assert 0 < memory_bytes(20, 10, psf="none") < 0.1 * memory_bytes(20, 10)
