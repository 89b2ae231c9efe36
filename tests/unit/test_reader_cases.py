"""The red-team reproducers of issue #15 (``tests/data/reader_cases``) and a gzip bomb.

Each file is a valid small SPHEREx cutout or combined file from the local archive with one
card changed (``README.md`` and ``observed.txt`` there say what each did before the reader
was bounded: hangs, multi-gigabyte allocations, ValueError/OverflowError/KeyError/
AttributeError/VerifyError/wcslib errors). Now every entry point -- ``open_products``,
``SpectralImage.open``, ``read_combined``, the glue identifier and factory,
``CombinedWriter.add`` -- either reads the file or refuses it with a documented
:class:`~glue_spherex.errors.SpherexFormatError` naming the HDU and keyword, in under two
seconds (of CPU: a loaded machine must not fail them, a hang uses CPU) and within a
bounded address space.
"""

from __future__ import annotations

import gzip
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from fuzz_inputs import exercise, memory_bound

from glue_spherex.errors import SpherexError, SpherexFormatError
from glue_spherex.fitsbytes.scan import MAX_INFLATED, unwrap
from glue_spherex.plugin import factory
from glue_spherex.plugin.datasets import product_to_data
from glue_spherex.products.combined import CombinedWriter, read_combined
from glue_spherex.products.spectral_image import SpectralImage, open_products

CASES = Path(__file__).resolve().parents[1] / "data" / "reader_cases"
SECONDS = 2.0
MEGABYTES = 300

#: file -> what the refusal says (a regex), or None where the file opens normally.
EXPECTED = {
    "hang_negative_naxis1": r"HDU 2 \(FLAGS\): NAXIS1 = -600 is out of range",
    "hang_negative_naxis1_glue_identifier": r"HDU 2 \(FLAGS\): NAXIS1 = -600 is out of range",
    "hang_negative_naxis1_open_products": r"HDU 2 \(FLAGS\): NAXIS1 = -600 is out of range",
    "hang_negative_gcount": r"HDU 2 \(FLAGS\): GCOUNT = -100 is out of range",
    "mem_gcount0_huge_image_wavelength": r"HDU 1 \(IMAGE\): GCOUNT = 0, but an image",
    "mem_cutout_info_tfields_1e9": r"CUTOUT_INFO: TFIELDS = 1000000000 is out of range",
    "memoryerror_glue_factory_sip_order_1e6": r"A_ORDER = '1000000' is not an integer 0-20",
    "overflow_glue_factory_sip_order_inf": r"A_ORDER = 'inf' is not an integer 0-20",
    "overflow_detector_1e400_glue_identifier": r"IMAGE: DETECTOR = 'inf' is not an integer",
    "valueerror_detector_string": r"IMAGE: DETECTOR = 'abc' is not an integer 1-6",
    "writer_add_detector_string": r"IMAGE: DETECTOR = 'abc' is not an integer 1-6",
    "overflow_psf_zone_crpix2a_inf": r"IMAGE: CRPIX2A = -inf is not a finite number",
    "keyerror_extname_IMAGE00001": r"no IMAGE extension; extensions are PRIMARY, IMAGE00001",
    "attributeerror_glue_factory_naxis0_image": r"IMAGE is not a 2-D image .*NAXIS = 0",
    "valueerror_wave_table_tfields_x": r"WCS-WAVE: TFIELDS = 'x' is not an integer",
    "valueerror_wave_table_negative_tform": r"WCS-WAVE: TFORM1 = '-13J' is not a binary table",
    "verifyerror_cutout_info_tform_glue_identifier": r"CUTOUT_INFO: cannot read the value of "
                                                     r"TFORM5",
    "verifyerror_cutout_info_tform_read_combined": r"CUTOUT_INFO: cannot read the value of "
                                                   r"TFORM5",
    "wcs_error_ctype_tan": r"invalid celestial WCS \(CTYPE1/2 = \['RA---XYZ'.*Unrecognized "
                           r"projection code",
    "writer_add_ctype_xyz": r"invalid celestial WCS \(CTYPE1/2 = \['RA---XYZ'",
    "truncated_combined_silent": r"the file is truncated: CUTOUT_INFO lists cutout\(s\) 3 as "
                                 r"downloaded, but the file ends after WCS-WAVE2",
    # where the changed card does not matter, the file opens
    "overflow_glue_factory_mjd_avg": None,
    "verifyerror_flag_bits": None,
    "tiny": None,
    "combined_small": None,
}


#: Files whose damaged card neither glue's dataset nor the writer reads (the PSF zone offset).
NOT_READ_BY_GLUE_OR_WRITER = {"overflow_psf_zone_crpix2a_inf"}


def test_every_reproducer_has_an_expectation():
    assert sorted(p.stem for p in CASES.glob("*.fits")) == sorted(EXPECTED)


@pytest.fixture(scope="module", autouse=True)
def warm():
    # imports and first-use set-up (astropy units, wcslib, glue) are not the reader's time
    exercise((CASES / "tiny.fits").read_bytes(), product_to_data)


class Bounded:
    """Run a call within SECONDS and MEGABYTES; keep the SpherexError it raised, if any."""

    def __call__(self, function, *args):
        t0 = time.process_time()
        try:
            with memory_bound(MEGABYTES):
                result = function(*args)
            error = None
        except SpherexError as exc:
            result, error = None, exc
        elapsed = time.process_time() - t0
        assert elapsed < SECONDS, f"{function.__name__} took {elapsed:.2f} s of CPU"
        return result, error


bounded = Bounded()


def _open_all(path):
    products = open_products(path)
    for p in products:
        p.wavelength(), p.wcs, p.flag_bits, p.psf_zone(0, 0), p.parent_origin
        product_to_data(p)
    return products


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reproducer_is_read_or_refused_with_a_documented_error(name):
    path = CASES / f"{name}.fits"
    expected = EXPECTED[name]
    _, error = bounded(_open_all, str(path))
    if expected is None:
        assert error is None, error
    else:
        assert isinstance(error, SpherexFormatError), error
        assert str(path) in str(error)
        assert "\n" not in str(error)
        assert re.search(expected, str(error)), str(error)
    # the same from bytes, a file object and gzipped: the same refusal or none
    data = path.read_bytes()
    for source in (data, gzip.compress(data, compresslevel=1)):
        _, again = bounded(_open_all, source)
        assert (again is None) == (error is None)
        if error is not None:
            assert isinstance(again, SpherexFormatError) and re.search(expected, str(again))
    # every other entry point: only documented errors, promptly
    errors = bounded(exercise, data, product_to_data)[0]
    assert all(isinstance(e, SpherexError) for e in errors)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_glue_identifier_answers_promptly_and_the_factory_says_why(name):
    path = str(CASES / f"{name}.fits")
    claimed, error = bounded(factory.is_spherex_file, path)
    assert error is None  # the identifier answers, it does not raise
    assert claimed is True  # each is recognisably a SPHEREx file, readable or not
    datasets, error = bounded(factory.read_spherex, path)
    assert (error is None) == (EXPECTED[name] is None or name in NOT_READ_BY_GLUE_OR_WRITER), error
    if error is not None:
        assert isinstance(error, SpherexFormatError)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", [n for n in sorted(EXPECTED) if "combined" not in n])
def test_writer_records_an_unreadable_cutout_as_failed(tmp_path, name):
    path = CASES / f"{name}.fits"
    out = tmp_path / "out.fits"
    planned = [{"cutout_index": 1, "access_url": "http://x/1"},
               {"cutout_index": 2, "access_url": "http://x/2"}]
    with CombinedWriter(out, planned, target=(210.80227, 54.34895)) as writer:
        _, error = bounded(writer.add, 1, str(path))
        writer.add(2, str(CASES / "tiny.fits"))
    table, images = read_combined(out)
    status = dict(zip(table["cutout_index"], table["status"]))
    if EXPECTED[name] is None or name in NOT_READ_BY_GLUE_OR_WRITER:
        assert error is None and status[1] == "ok"
    else:
        assert isinstance(error, SpherexFormatError)
        assert status[1] == "failed"
        reason = table["reason"][list(table["cutout_index"]).index(1)]
        assert reason.startswith(str(path)[:40])
    assert status[2] == "ok" and [im.cutout_index for im in images][-1] == 2


def test_unparsable_bunit_does_not_hide_the_flag_bits():
    with SpectralImage.open(CASES / "verifyerror_flag_bits.fits") as image:
        assert image.flag_bits["HOT"] == 10


def test_an_impossible_mjd_is_unknown_not_a_crash():
    with SpectralImage.open(CASES / "overflow_glue_factory_mjd_avg.fits") as image:
        assert np.isnan(image.mjd_avg)
        assert np.isfinite(image.mjd_beg)
        data = product_to_data(image)
        assert "D" in data.label


def test_the_complete_cutouts_of_a_truncated_file_still_open_by_index():
    path = CASES / "truncated_combined_silent.fits"
    for index in (1, 2):
        with SpectralImage.open(path, index=index) as image:
            assert image.shape == (6, 6)
    with pytest.raises(SpherexFormatError, match="truncated.*cutout\\(s\\) 3"):
        SpectralImage.open(path, index=3)
    with pytest.raises(SpherexFormatError, match="truncated"):
        read_combined(path)


# --------------------------------------------------------------------------------------
# Decompression bombs
# --------------------------------------------------------------------------------------

def _bomb(inflated):
    """A gzip file of about ``inflated`` bytes: a valid FITS header, then zeros (built from
    one compressed 16 MiB member repeated, so it costs well under a second)."""
    header = (CASES / "tiny.fits").read_bytes()[:2880]
    zeros = gzip.compress(bytes(16 << 20), compresslevel=1)
    return gzip.compress(header) + zeros * (inflated // (16 << 20))


@pytest.fixture(scope="module")
def bomb():
    return _bomb(2 * MAX_INFLATED)


@pytest.mark.timeout(60)
def test_a_gzip_bomb_is_refused_naming_the_limit(tmp_path, bomb):
    path = tmp_path / "bomb.fits.gz"
    path.write_bytes(bomb)
    limit = f"{MAX_INFLATED:,} bytes, the limit"
    for source in (str(path), bomb):
        _, error = bounded(SpectralImage.open, source)
        assert isinstance(error, SpherexFormatError) and limit in str(error), error
    _, error = bounded(unwrap, bomb, "response")
    assert str(error).startswith("response: gzip data inflates to more than")
    claimed, error = bounded(factory.is_spherex_file, str(path))
    assert claimed is False and error is None


def test_unwrap_takes_a_limit_and_still_reads_multi_member_gzip():
    data = (CASES / "tiny.fits").read_bytes()
    two = gzip.compress(data[:1000]) + gzip.compress(data[1000:]) + bytes(100)
    assert unwrap(two) == data
    assert unwrap(data) is data
    with pytest.raises(SpherexFormatError, match="more than 1,000 bytes"):
        unwrap(gzip.compress(data), max_size=1000)
    with pytest.raises(SpherexFormatError, match="unexpected bytes after the gzip data"):
        unwrap(gzip.compress(data) + b"garbage")
    with pytest.raises(SpherexFormatError, match="truncated or corrupt gzip"):
        unwrap(gzip.compress(data)[:-20])
    with pytest.raises(SpherexFormatError, match="truncated or corrupt gzip"):
        unwrap(b"\x1f\x8b" + os.urandom(64))
