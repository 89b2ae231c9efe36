"""Pipeline-7 products (QR3, and QR2 reprocessed) next to pipeline < 7 ones: the reader, the
fetch body check, combined files, spectra and glue.

Files are the synthetic universe's (:mod:`cutouts`): one exposure in both processings, the
pipeline-7 one with the real QR3 IMAGE keyword set and R7 WCS-WAVE HDU, FLAGS as
``CompImageHDU(int32, 'RICE_1', tile_shape=(1, nx))`` or as a plain int32 image, MSKN/MSKM
cards and an EPSF table. Everything the byte-level reader returns is compared with what
astropy reads from the same bytes, and the EPSF with the universe's ``epsf_table``.
"""

from __future__ import annotations

import io
import json
import re
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from cutouts import cutout_bytes, frame_bytes, frame_spec, make_cutout, to_bytes

from glue_spherex.analysis.spectrum import MixedPipelineWarning, extract_spectrum
from glue_spherex.cli.main import main as cli_main
from glue_spherex.errors import SpherexFormatError
from glue_spherex.fitsbytes.scan import scan_spectral_image, table_array
from glue_spherex.local_archive.synthetic import frame_headers, survey_target_id
from glue_spherex.local_archive.synthetic.pipeline7 import DETECTOR_FWHM_R7, epsf_table
from glue_spherex.local_archive.synthetic.spec import survey_target_name
from glue_spherex.products.combined import CombinedWriter, read_combined
from glue_spherex.products.epsf import point_fractions
from glue_spherex.products.flags import describe, mask_from_names
from glue_spherex.products.spectral_image import SpectralImage, open_products

X0, Y0, SIZE = 700, 1300, 29
OBSID = "2025W17_4B_0292_2"  # an exposure with a satellite STREAK across the window
#: One D5 exposure in its pipeline-7 (QR3) and its pipeline < 7 processing: same sky, same WCS.
SPEC7 = frame_spec(5, obsid=OBSID, pipeline=7)
SPEC6 = frame_spec(5, obsid=OBSID)
#: The real QR3 D5 IMAGE header (a copy of the shared reference file).
R7_IMAGE_HEADER = Path(__file__).parents[1] / "data" / "r7" / \
    "qr3_D5_IMAGE_header_2026W30_2A_0049_1.json"


@pytest.fixture(scope="module")
def r7_frame():
    """The full pipeline-7 frame as bytes (FLAGS compressed, heap padded to IRSA's size)."""
    return frame_bytes(SPEC7)


@pytest.fixture(scope="module")
def cutouts():
    """``{name: cutout bytes}``: R7 with compressed FLAGS, R7 plain, QR2 -- same window."""
    return {"r7_rice": cutout_bytes(SPEC7, X0, Y0, SIZE, SIZE),
            "r7_plain": cutout_bytes(SPEC7, X0, Y0, SIZE, SIZE, flags="plain"),
            "qr2": cutout_bytes(SPEC6, X0, Y0, SIZE, SIZE)}


def _astropy_value(header, key):
    value = header[key]
    return value.strip() if isinstance(value, str) else value


# -- the byte-level reader against astropy, every HDU of both layouts ----------------------

@pytest.mark.parametrize("which", ["r7_rice", "r7_plain", "qr2", "r7_frame"])
def test_byte_reader_agrees_with_astropy_on_every_hdu(which, cutouts, r7_frame):
    data = r7_frame if which == "r7_frame" else cutouts[which]
    with SpectralImage.open(data) as image, \
            fits.open(io.BytesIO(data), disable_image_compression=True) as raw, \
            fits.open(io.BytesIO(data)) as hdul:
        backing = image._backing
        assert [s.extname for s in backing.spans] == [h.name for h in raw]
        for span, hdu in zip(backing.spans, raw):
            assert (span.data_start, span.end) == (hdu._data_offset,
                                                   hdu._data_offset + hdu._data_size)
            keywords = backing.keywords(span.extname)
            for key in keywords:  # every keyword the reader returns
                assert keywords[key] == _astropy_value(hdu.header, key), (span.extname, key)
        assert np.array_equal(image.image, hdul["IMAGE"].data, equal_nan=True)
        assert np.array_equal(image.variance, hdul["VARIANCE"].data, equal_nan=True)
        assert np.array_equal(image.zodi, hdul["ZODI"].data, equal_nan=True)
        assert image.flags.dtype.kind == "i"
        assert np.array_equal(image.flags, hdul["FLAGS"].data)  # decompressed by astropy too
        assert image.flags_compressed == (which in ("r7_rice", "r7_frame"))
        assert isinstance(hdul["FLAGS"], fits.CompImageHDU) == image.flags_compressed
        # what astropy shows as the FLAGS header (the image header, Z cards converted)
        assert image.headers["FLAGS"].get("NAXIS1") == hdul["FLAGS"].header["NAXIS1"]
        for name in ("WCS-WAVE", "EPSF" if which != "qr2" else "PSF"):
            if hdul[name].is_image:
                assert np.array_equal(image.psf, hdul[name].data)
                continue
            rows = table_array(backing.buffer, backing.span(name), backing.keywords(name).cards)
            table = hdul[name].data
            for column in table.columns.names:
                assert np.array_equal(rows[column], table[column]), (name, column)
        wave = WCS(hdul["IMAGE"].header, fobj=hdul, key="W")
        wave.sip = None  # astropy hangs the celestial SIP on W too (spherex-products.md)
        ny, nx = image.shape
        xx, yy = np.meshgrid(np.arange(nx, step=max(1, nx // 17)),
                             np.arange(ny, step=max(1, ny // 13)))
        wl, bw = wave.pixel_to_world_values(xx, yy)
        ours = image.pixel_to_wave(xx, yy)
        assert np.allclose(ours[0], wl, atol=1e-6, rtol=0)
        assert np.allclose(ours[1], bw, atol=1e-6, rtol=0)


def test_layout_is_told_by_content_and_provenance_is_exposed(cutouts):
    with SpectralImage.open(cutouts["r7_rice"]) as r7, SpectralImage.open(cutouts["qr2"]) as qr2:
        assert (r7.psf_kind, r7.pipeline, r7.version) == ("epsf", 7, "7.0.5")
        assert (qr2.psf_kind, qr2.pipeline, qr2.version) == ("cube", 6, "6.4+psffix1")
        assert r7.psf.shape == (441, 33, 33) and r7.psf_oversampling == 5
        assert qr2.psf.shape == (121, 101, 101) and qr2.psf_oversampling == 10
        assert r7.obsid == qr2.obsid == OBSID  # the same observation, both processings open
        assert r7.release is None and r7.processing is None  # bytes say neither
    # the layout does not depend on VERSION: a pipeline-7 file mislabelled still reads
    hdul = fits.open(io.BytesIO(cutouts["r7_rice"]))
    hdul[0].header["VERSION"] = "6.5.5"
    with SpectralImage.open(hdul) as image:
        assert image.psf_kind == "epsf" and image.flags_compressed and image.pipeline == 6
        assert image.psf_at(3, 3).shape == (33, 33)


def test_release_and_processing_from_the_path(tmp_path, cutouts):
    path = tmp_path / "qr3" / "level2" / "2026W30_2A" / "l2b-v27-2026-222" / "5"
    path.mkdir(parents=True)
    f = path / "level2_2026W30_2A_0049_1D5_spx_l2b-v27-2026-222.fits"
    f.write_bytes(cutouts["r7_rice"])
    with SpectralImage.open(f) as image:
        assert (image.release, image.processing) == ("qr3", "l2b-v27-2026-222")


def test_qr3_header_keywords_reach_the_product(cutouts):
    real = json.loads(R7_IMAGE_HEADER.read_text())["header"]
    truth = frame_headers(SPEC7)["IMAGE"]
    with SpectralImage.open(cutouts["r7_rice"]) as image:
        # the keyword set of the real QR3 header, the values of this exposure
        assert [key for key in real if key not in image.header] == []
        target = survey_target_name(survey_target_id(SPEC7))
        assert image.header["SPS_TARGET"] == truth["SPS_TARGET"] == target
        assert re.fullmatch(r"SPS_\d{6}_S34", target) and re.fullmatch(r"SPS_\d{6}_S34",
                                                                         real["SPS_TARGET"])
        assert image.header["L2 N_XTALK"] == truth["L2 N_XTALK"] > 0
        assert image.psf_fwhm == pytest.approx(DETECTOR_FWHM_R7[5]) == real["PSF_FWHM"]
        assert image.detector == 5 and image.keywords["CRPIX1A"] == 1.0 - X0


# -- flags -------------------------------------------------------------------------------------

def test_msk_cards_name_the_r7_bits(cutouts):
    with SpectralImage.open(cutouts["r7_rice"]) as image:
        bits = image.flag_bits
        assert bits["CROSSTALK"] == 20 and bits["STREAK"] == 25 and bits["SOURCE"] == 21
        assert "PHANTOM" not in bits  # R7 cutouts do not define bits 4 and 5
        flags = image.flags
        streak = mask_from_names(flags, ["STREAK"], bits=bits)
        assert np.array_equal(streak, (flags & (1 << 25)) != 0) and streak.any()
        value = int(flags[streak][0])
        assert "STREAK" in describe(value, bits)
    with SpectralImage.open(cutouts["qr2"]) as image:
        assert image.flag_bits["PHANTOM"] == 4 and "CROSSTALK" not in image.flag_bits


def test_a_corrupt_compressed_flags_is_a_format_error(cutouts):
    data = bytearray(cutouts["r7_rice"])
    image = SpectralImage.open(bytes(data))
    span = image._backing.span("FLAGS")
    image.close()
    heap = span.data_start + 8 * SIZE  # descriptors, then the tiles
    data[heap:span.data_start + span.data_size] = b"\xff" * (span.data_start + span.data_size - heap)
    with SpectralImage.open(bytes(data)) as broken, \
            pytest.raises(SpherexFormatError, match="FLAGS"):
        _ = broken.flags


# -- the fetch body check -------------------------------------------------------------------

def test_body_check_accepts_both_layouts_and_rejects_what_it_did(cutouts):
    for data in cutouts.values():
        scan_spectral_image(data)
    hdul = fits.open(io.BytesIO(cutouts["r7_rice"]))
    del hdul["EPSF"]
    with pytest.raises(SpherexFormatError, match="no PSF or EPSF extension"):
        scan_spectral_image(to_bytes(hdul))
    hdul = fits.open(io.BytesIO(cutouts["r7_plain"]))
    del hdul["FLAGS"]
    with pytest.raises(SpherexFormatError, match="no FLAGS extension"):
        scan_spectral_image(to_bytes(hdul))
    with SpectralImage.open(cutouts["r7_rice"]) as image:
        heap_end = image._backing.span("FLAGS").end
    with pytest.raises(SpherexFormatError, match="truncated"):
        scan_spectral_image(cutouts["r7_rice"][:heap_end - 2880])
    with pytest.raises(SpherexFormatError, match="not FITS"):
        scan_spectral_image(b"<!DOCTYPE html><html>503</html>" + b" " * 3000)


# -- the EPSF: zone choice and aperture corrections ------------------------------------------

@pytest.mark.parametrize("detector, lattice", [(5, (21, 21)), (3, (11, 41))])
def test_epsf_zone_is_the_nearest_centre_to_the_parent_pixel(detector, lattice):
    nx, ny = lattice
    table = epsf_table(detector)  # the universe's truth
    assert len(table.data) == nx * ny
    assert np.allclose(table.data["EPSF"].sum(axis=(1, 2)), 1.0)
    hdul = make_cutout(frame_spec(detector, pipeline=7), 1900, 40, 21, 21, flags="plain")
    with SpectralImage.open(hdul) as image:
        for x, y in ((0, 0), (20, 20), (10, 3)):
            px, py = 1900 + x, 40 + y  # 0-based parent pixel
            expected = (min(int((px + 0.5) * nx / 2040), nx - 1),
                        min(int((py + 0.5) * ny / 2040), ny - 1))
            assert image.psf_zone(x, y) == expected
            row = image.psf_row(x, y)
            assert row == expected[1] * nx + expected[0]  # rows x-fast
            assert np.array_equal(image.psf_at(x, y), table.data["EPSF"][row])


def test_point_sampled_fractions_follow_photutils_imagepsf():
    from photutils.psf import ImagePSF

    array = epsf_table(5).data["EPSF"][17]
    xs, ys = np.arange(-6.0, 7.0), np.arange(-6.0, 7.0)
    frac = point_fractions(array, (5, 5), 0.3, -0.2, xs, ys)
    model = ImagePSF(array, x_0=0.3, y_0=-0.2, oversampling=5)
    direct = model(*np.meshgrid(xs, ys))
    assert np.allclose(frac, direct / direct.sum(), rtol=1e-12, atol=1e-15)
    assert frac.sum() == pytest.approx(1.0, abs=1e-9)
    # an array normalised to 25 instead of 1 gives the same fractions
    assert np.allclose(point_fractions(array * 25, (5, 5), 0.3, -0.2, xs, ys), frac)


def _with_point_source(hdul, image, x, y, flux_ujy):
    """``hdul`` with ZODI = 0, IMAGE = a point source point-sampled from its EPSF zone."""
    from astropy.wcs.utils import proj_plane_pixel_area

    omega = proj_plane_pixel_area(image.wcs) * (np.pi / 180) ** 2
    ny, nx = image.shape
    frac = point_fractions(image.psf_at(x, y), (5, 5), x, y, np.arange(nx), np.arange(ny))
    hdul["IMAGE"].data = (flux_ujy * frac / (omega * 1e12)).astype(np.float32)
    hdul["ZODI"].data = np.zeros((ny, nx), np.float32)
    hdul["FLAGS"].data = np.zeros((ny, nx), np.int32)
    return hdul


@pytest.mark.parametrize("radius", [6, 12])
def test_epsf_aperture_correction_recovers_a_point_source(radius):
    hdul = make_cutout(SPEC7, X0, Y0, SIZE, SIZE)
    x, y = 14.3, 13.6
    with SpectralImage.open(hdul) as image:
        hdul = _with_point_source(hdul, image, x, y, 1000.0)
        coord = image.wcs.pixel_to_world(x, y)
    with SpectralImage.open(hdul) as image:
        row = extract_spectrum([image], coord, radius * u.arcsec)[0]
    assert row["status"] == "ok" and row["pipeline"] == 7
    assert row["flux"].to_value(u.uJy) == pytest.approx(1000.0, rel=2e-3)
    # without the correction the aperture holds only part of the light
    with SpectralImage.open(hdul) as image:
        raw = extract_spectrum([image], coord, radius * u.arcsec, aperture_correction="none")
    assert raw[0]["flux"].to_value(u.uJy) < 990.0


def _as_pipeline6():
    """The same exposure and window in its pipeline < 7 processing (PSF cube, MP_ cards)."""
    return make_cutout(SPEC6, X0, Y0, SIZE, SIZE)


def test_a_spectrum_mixing_pipelines_says_so(tmp_path, capsys):
    hdul = make_cutout(SPEC7, X0, Y0, SIZE, SIZE)
    with SpectralImage.open(hdul) as image:
        coord = image.wcs.pixel_to_world(14.0, 14.0)
    old = _as_pipeline6()
    products = [SpectralImage.open(old), SpectralImage.open(hdul)]
    with pytest.warns(MixedPipelineWarning, match="1 points from pipeline < 7"):
        table = extract_spectrum(products, coord)
    assert sorted(table["pipeline"]) == [6, 7] and table.meta["mixed_pipelines"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", MixedPipelineWarning)
        alone = extract_spectrum(products[1:], coord)
    assert not alone.meta["mixed_pipelines"]
    # the command line prints one warning line
    path = tmp_path / "mixed.fits"
    with CombinedWriter(path, [{"cutout_index": 1, "access_url": "a"},
                               {"cutout_index": 2, "access_url": "b"}]) as writer:
        writer.add(1, products[0])
        writer.add(2, products[1])
    for p in products:
        p.close()
    with pytest.raises(SystemExit) as info:
        cli_main(["spectrum", str(path), "--ra", str(coord.ra.deg), "--dec",
                  str(coord.dec.deg), "-o", str(tmp_path / "s.ecsv")])
    err = capsys.readouterr().err
    assert info.value.code == 0
    warned = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "pipeline < 7" in warned[0], err
    assert "Traceback" not in err


# -- combined files ----------------------------------------------------------------------------

QR3_URL = ("http://127.0.0.1/ibe/cutouts/spherex/qr3/level2/2026W30_2A/l2b-v27-2026-222/5/"
           "level2_2026W30_2A_0049_1D5_spx_l2b-v27-2026-222.fits?center=1,2&size=0.05")
QR2_URL = ("http://127.0.0.1/ibe/cutouts/spherex/qr2/level2/2025W17_4B/l2b-v21-2025-190/5/"
           "level2_2025W17_4B_0292_2D5_spx_l2b-v21-2025-190.fits?center=1,2&size=0.05")


@pytest.fixture(scope="module")
def mixed_file(tmp_path_factory, cutouts):
    """Cutouts 1 (QR2), 2 (R7 plain FLAGS), 3 (R7 compressed FLAGS), 4 failed."""
    path = tmp_path_factory.mktemp("combined") / "mixed.fits"
    planned = [{"cutout_index": 1, "access_url": QR2_URL},
               {"cutout_index": 2, "access_url": QR3_URL, "release": "qr3",
                "version": "l2b-v27-2026-222"},
               {"cutout_index": 3, "access_url": QR3_URL, "release": "qr3"},
               {"cutout_index": 4, "access_url": QR3_URL}]
    with CombinedWriter(path, planned) as writer:
        writer.add(1, cutouts["qr2"])
        writer.add(2, cutouts["r7_plain"])
        writer.add(3, cutouts["r7_rice"])
        writer.add_failure(4, "HTTP 503")
    return path


def test_combined_file_keeps_each_cutouts_layout(mixed_file, cutouts):
    with fits.open(mixed_file) as hdul:
        names = [h.name for h in hdul]
        assert names[:2] == ["PRIMARY", "CUTOUT_INFO"]
        assert {"PSF1", "EPSF2", "EPSF3", "FLAGS3"} <= set(names)
        assert "PSF2" not in names and "EPSF1" not in names
        assert isinstance(hdul["FLAGS3"], fits.CompImageHDU)
        assert not isinstance(hdul["FLAGS2"], fits.CompImageHDU)
    # the tutorial's reading code
    info = Table.read(mixed_file, hdu=1)
    assert list(info["release"]) == ["qr2", "qr3", "qr3", "qr3"]
    assert list(info["version"][:3]) == ["6.4+psffix1", "7.0.5", "7.0.5"]
    assert list(info["processing"]) == ["l2b-v21-2025-190"] + ["l2b-v27-2026-222"] * 3
    with fits.open(mixed_file) as hdul, fits.open(io.BytesIO(cutouts["r7_rice"])) as cut:
        for i in (1, 2, 3):
            hdr = hdul[f"IMAGE{i}"].header
            wave = WCS(hdr, fobj=hdul, key="W")
            wl, _ = wave.pixel_to_world_values(3, 5)
            assert np.isfinite(wl)
        assert np.array_equal(hdul["FLAGS3"].data, cut["FLAGS"].data)
        assert np.array_equal(hdul["FLAGS2"].data, cut["FLAGS"].data)
        assert np.array_equal(hdul["EPSF3"].data["EPSF"], cut["EPSF"].data["EPSF"])
        assert hdul["FLAGS3"].header["MSKN0025"] == "STREAK"


def test_read_combined_reads_both_layouts(mixed_file, cutouts):
    table, images = read_combined(mixed_file)
    try:
        assert [i.cutout_index for i in images] == [1, 2, 3]
        assert [i.psf_kind for i in images] == ["cube", "epsf", "epsf"]
        assert [i.pipeline for i in images] == [6, 7, 7]
        assert [i.release for i in images] == ["qr2", "qr3", "qr3"]
        assert images[2].processing == "l2b-v27-2026-222"
        assert [i.flags_compressed for i in images] == [False, False, True]
        with SpectralImage.open(cutouts["r7_rice"]) as single:
            for image in images[1:]:
                assert np.array_equal(image.flags, single.flags)
                assert np.array_equal(image.wavelength(), single.wavelength())
                assert image.psf_zone(3, 4) == single.psf_zone(3, 4)
                assert image.flag_bits == single.flag_bits
        # a combined file's cutout goes into another combined file unchanged
        copy = mixed_file.with_name("copy.fits")
        with CombinedWriter(copy, [{"cutout_index": 7, "access_url": ""}]) as writer:
            writer.add(7, images[2])
    finally:
        for image in images:
            image.close()
    (again,) = open_products(copy)
    with again, fits.open(copy) as hdul:
        assert again.psf_kind == "epsf" and again.flags_compressed
        assert isinstance(hdul["FLAGS7"], fits.CompImageHDU) and "EPSF7" in hdul


# -- glue ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def glue_plugin():
    from glue_spherex import plugin

    plugin.setup()


def test_glue_opens_an_r7_cutout_with_astropys_wavelengths(tmp_path, cutouts, glue_plugin):
    from glue.core.data_factories import load_data

    path = tmp_path / "r7.fits"
    path.write_bytes(cutouts["r7_rice"])
    data = load_data(str(path))
    assert data.meta["version"] == "7.0.5" and data.meta["pipeline"] == 7
    with fits.open(path) as hdul:
        wave = WCS(hdul["IMAGE"].header, fobj=hdul, key="W")
        wave.sip = None
        ny, nx = hdul["IMAGE"].data.shape
        xx, yy = np.meshgrid(np.arange(nx), np.arange(ny))
        wl, bw = wave.pixel_to_world_values(xx, yy)
        flags = hdul["FLAGS"].data
    assert np.abs(data["wavelength"] - wl).max() < 1e-6
    assert np.abs(data["bandwidth"] - bw).max() < 1e-6
    assert np.array_equal(data["flags"], flags)


def test_glue_factory_exporter_and_cube_on_a_mixed_file(mixed_file, cutouts, tmp_path,
                                                        glue_plugin):
    from glue.core.data_factories import load_data

    from glue_spherex.analysis.cube import reproject_cube
    from glue_spherex.plugin import export_combined

    datasets = load_data(str(mixed_file))
    assert [d.meta["pipeline"] for d in datasets] == [6, 7, 7]
    assert [d.meta["release"] for d in datasets] == ["qr2", "qr3", "qr3"]
    out = tmp_path / "exported.fits"
    export_combined(datasets, out)
    table, images = read_combined(out)
    try:
        assert sorted(i.psf_kind for i in images) == ["cube", "epsf", "epsf"]
        assert sum(i.flags_compressed for i in images) == 1
        for image, data in zip(sorted(images, key=lambda i: i.pipeline),
                               sorted(datasets, key=lambda d: d.meta["pipeline"])):
            assert np.array_equal(image.flags, data["flags"])
    finally:
        for image in images:
            image.close()
    # a cube of one field seen by a pipeline < 7 and a pipeline 7 cutout
    hdul = fits.open(io.BytesIO(cutouts["r7_rice"]))
    both = [SpectralImage.open(_as_pipeline6()), SpectralImage.open(hdul)]
    try:
        cube = reproject_cube(both)
        assert np.shape(cube.flux)[0] == 2 and np.isfinite(cube.flux).any()
    finally:
        for image in both:
            image.close()


# -- hostile bytes in the new HDUs ---------------------------------------------------------

def _read_everything(data):
    from astropy.utils.exceptions import AstropyUserWarning

    from glue_spherex.errors import SpherexError

    try:
        with warnings.catch_warnings(), SpectralImage.open(data) as image:
            warnings.simplefilter("ignore", AstropyUserWarning)  # astropy on mangled cards
            image.flags.sum()
            _ = image.flag_bits
            image.psf_at(3, 3).sum()
            image.psf_zone(3, 3)
            image.wavelength()
    except SpherexError:
        pass


@pytest.mark.slow
def test_mutated_flags_and_epsf_give_documented_errors_only(cutouts):
    """Seeded mutations of the compressed FLAGS and the EPSF table (cards and data): the
    reader raises a SpherexError or reads something, never anything else."""
    rng = np.random.default_rng(12)
    data = cutouts["r7_rice"]
    with SpectralImage.open(data) as image:
        spans = [image._backing.span(n) for n in ("FLAGS", "EPSF")]
    digits = b"0123456789-+ .ETF'"
    for case in range(300):
        mutated = bytearray(data)
        span = spans[case % 2]
        for _ in range(int(rng.integers(1, 4))):
            if rng.random() < 0.7:  # a header value
                card = int(rng.integers(0, (span.data_start - span.header_start) // 80))
                pos = span.header_start + 80 * card + int(rng.integers(10, 30))
                mutated[pos] = digits[int(rng.integers(0, len(digits)))]
            else:  # the data (tiles, descriptors, table rows)
                pos = int(rng.integers(span.data_start, span.data_start + span.data_size))
                mutated[pos] = int(rng.integers(0, 256))
        _read_everything(bytes(mutated))


def test_hdulist_keeps_the_r7_layout(cutouts, tmp_path):
    with SpectralImage.open(cutouts["r7_rice"]) as image:
        hdul = fits.HDUList([fits.PrimaryHDU(), *image.hdulist("5")])
        hdul.writeto(tmp_path / "five.fits")
        flags, epsf = np.array(image.flags), np.array(image.psf)
    with fits.open(tmp_path / "five.fits") as back:
        assert [h.name for h in back][1:] == ["IMAGE5", "FLAGS5", "VARIANCE5", "ZODI5", "EPSF5",
                                              "WCS-WAVE5"]
        assert isinstance(back["FLAGS5"], fits.CompImageHDU)
        assert back["FLAGS5"].header["MSKN0020"] == "CROSSTALK"
        assert np.array_equal(back["FLAGS5"].data, flags)
        assert np.array_equal(back["EPSF5"].data["EPSF"], epsf)
        assert back["IMAGE5"].header["PS1_0W"] == "WCS-WAVE5"


def test_provenance_of_irsa_paths():
    from glue_spherex.products.spectral_image import provenance

    assert provenance("https://irsa.ipac.caltech.edu/ibe/data/spherex/qr2/level2/2025W17_4B/"
                      "l2b_retry-v26-2026-196/2/level2_2025W17_4B_0238_2D2_spx_"
                      "l2b_retry-v26-2026-196.fits") == {"release": "qr2",
                                                         "processing": "l2b_retry-v26-2026-196"}
    assert provenance("ivo://irsa.ipac/spherex_qr3?2026W30_2A_0049_1/D5")["release"] == "qr3"
    assert provenance("cutout.fits", None) == {"release": None, "processing": None}


def test_live_spectrum_frames_of_r7_datasets_use_the_epsf_and_warn_when_mixed(glue_plugin):
    from glue_spherex.analysis.spectrum import measure_frames
    from glue_spherex.plugin import products_to_data
    from glue_spherex.plugin.live_spectrum import frame_from_data

    hdul = make_cutout(SPEC7, X0, Y0, SIZE, SIZE)
    x, y = 14.3, 13.6
    with SpectralImage.open(hdul) as image:
        hdul = _with_point_source(hdul, image, x, y, 1000.0)
        coord = image.wcs.pixel_to_world(x, y)
    products = [SpectralImage.open(hdul), SpectralImage.open(_as_pipeline6())]
    try:
        datasets = products_to_data(products)
        frames = [frame_from_data(d) for d in datasets]
        assert frames[0].psf(x, y)[2:] == ("effective",) and len(frames[1].psf(x, y)) == 2
        with pytest.warns(MixedPipelineWarning):
            table = measure_frames(frames, coord, 6 * u.arcsec)
        row = table[table["pipeline"] == 7][0]
        assert row["flux"].to_value(u.uJy) == pytest.approx(1000.0, rel=2e-3)
        assert table.meta["warnings"] and table.meta["mixed_pipelines"]
        # the live spectrum in glue carries the warning and each point's pipeline
        from glue.core import DataCollection

        from glue_spherex.plugin.live_spectrum import LiveSpectrum
        from glue_spherex.plugin.subsets import sky_subset

        dc = DataCollection(datasets)
        group = sky_subset(dc, coord.ra.deg, coord.dec.deg, 6 / 3600, label="source")
        with pytest.warns(MixedPipelineWarning):
            live = LiveSpectrum(dc, group)
        assert live.spectrum.meta["mixed_pipelines"] is True
        assert "pipeline 7" in live.spectrum.meta["warnings"][0]
        assert sorted(live.spectrum["pipeline"]) == [6, 7]
    finally:
        for p in products:
            p.close()


def test_a_killed_writers_file_is_recovered_up_to_its_last_whole_r7_cutout(mixed_file):
    from glue_spherex.products.combined import _whole_cutouts_end

    data = mixed_file.read_bytes()
    assert _whole_cutouts_end(data) == len(data)  # QR2, R7 plain and R7 compressed cutouts
    with SpectralImage.open(mixed_file, index=3) as last:
        start = last._backing.span("IMAGE3").header_start
        inside = last._backing.span("EPSF3").data_start + 2880
    assert _whole_cutouts_end(data[:inside]) == start
