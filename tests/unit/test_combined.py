"""The combined cutout file: streamed writing, round trip, tutorial compatibility, failures."""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from cutouts import FrameSpec, cutout_bytes, frame_spec, make_cutout, to_bytes, with_version

from glue_spherex.errors import SpherexFormatError, SpherexInputError
from glue_spherex.local_archive.synthetic import frame_wcs
from glue_spherex.products.combined import CombinedWriter, read_combined
from glue_spherex.products.spectral_image import SpectralImage, open_products

TARGET = SkyCoord(10.68, 41.27, unit="deg")
TUTORIAL_COLUMNS = ["cutout_index", "observation_date", "central_wavelength", "access_url"]


@pytest.fixture(scope="module")
def cutouts():
    """Five cutouts of a D3 and a D5 frame pointed alike (D5 labelled 6.5.5, the PSF erratum):
    {cutout_index: HDUList}, all containing TARGET."""
    d3, d5 = frame_spec(3), frame_spec(5, obsid="2025W52_2B_0011_1")
    windows = [(d3, 1330, 900, 40, 30), (d5, 1320, 890, 60, 50), (d3, 1300, 880, 80, 70),
               (d5, 1335, 905, 20, 20), (d3, 1325, 895, 35, 45)]
    return {i + 1: make_cutout(spec, *w) if spec is d3 else
            with_version(make_cutout(spec, *w), "6.5.5") for i, (spec, *w) in enumerate(windows)}


def _planned(n):
    return [{"cutout_index": i, "access_url": f"http://127.0.0.1:1/cutout/{i}?center=10.68,41.27d"}
            for i in range(1, n + 1)]


def _changed_keys(a, b):
    return {k for k in set(a) | set(b) if a.get(k) != b.get(k)}


@pytest.mark.slow
def test_round_trip(cutouts, tmp_path):
    path = tmp_path / "combined.fits"
    with CombinedWriter(path, _planned(6), target=TARGET, size=0.1) as writer:
        writer.add(4, to_bytes(cutouts[4]))               # bytes, as fetched
        writer.add(2, cutouts[2])                         # HDUList
        writer.add_failure(3, "HTTP 500 Internal Server Error")
        writer.add(1, SpectralImage.open(cutouts[1]))     # SpectralImage
        cutouts[5].writeto(tmp_path / "c5.fits")
        writer.add(5, tmp_path / "c5.fits")               # a file on disk
    # 6 never arrived
    table, images = read_combined(path)
    assert list(table["cutout_index"]) == [1, 2, 4, 5, 3, 6]
    assert list(table["status"]) == ["ok", "ok", "ok", "ok", "failed", "missing"]
    assert table["reason"][4] == "HTTP 500 Internal Server Error"
    assert table["central_wavelength"].unit == "um" and table["observation_date"].unit == "d"
    assert [im.cutout_index for im in images] == [1, 2, 4, 5]
    header = fits.getheader(path, 0)
    assert (header["NCUTOUT"], header["NFAILED"], header["NMISSING"]) == (4, 1, 1)
    assert header["ORIGIN"] == "glue-spherex" and header["CUTSIZE"] == 0.1
    assert header["RA_TARG"] == pytest.approx(10.68)

    for row, image in zip(table, images):
        original = SpectralImage.open(cutouts[row["cutout_index"]])
        assert image.access_url == row["access_url"] == _planned(6)[image.cutout_index - 1][
            "access_url"]
        for kind in ("image", "flags", "variance", "zodi", "psf"):
            np.testing.assert_array_equal(getattr(image, kind), getattr(original, kind))
        for kind in ("IMAGE", "FLAGS", "VARIANCE", "ZODI"):
            assert _changed_keys(image.headers[kind], original.headers[kind]) <= {
                "EXTNAME", "PS1_0W", "PS2_0W"}
        assert _changed_keys(image.headers["PSF"], original.headers["PSF"]) == {"EXTNAME"}
        np.testing.assert_array_equal(image.wavelength(), original.wavelength())
        np.testing.assert_array_equal(image.bandwidth(), original.bandwidth())
        # metadata kept, including VERSION (it decides how the PSF header is read)
        assert image.version == original.version
        assert image.psf_zone(3, 4) == original.psf_zone(3, 4)
        assert (image.obsid, image.detector, image.mjd_end) == (
            original.obsid, original.detector, original.mjd_end)
        assert row["obs_id"] == original.obsid and row["bandpass"] == original.bandpass
        assert row["observation_date"] == original.mjd_beg
        wl, bw = original.wavelength_at(TARGET)
        assert np.isfinite(wl)
        assert (row["central_wavelength"], row["central_bandwidth"]) == (wl, bw)
        image.close()


def test_tutorial_style_reading(cutouts, tmp_path):
    path = tmp_path / "combined.fits"
    with CombinedWriter(path, _planned(5), target=TARGET) as writer:
        for i in (3, 1, 5):
            writer.add(i, cutouts[i])
        writer.add_failure(2, "timeout")
    # exactly the tutorial's reading code
    summary_table = Table.read(path, hdu=1)
    assert summary_table.colnames[:4] == TUTORIAL_COLUMNS
    with fits.open(path) as hdul:
        assert hdul["IMAGE3"].data.shape == cutouts[3]["IMAGE"].data.shape
        for ii in range(3):  # the successes come first
            extname = "IMAGE{}".format(summary_table["cutout_index"][ii])
            header = hdul[extname].header
            spectral_wcs = WCS(header, fobj=hdul, key="W")
            spectral_wcs.sip = None
            x, y = WCS(header).world_to_pixel(TARGET)
            wavelength, bandwidth = spectral_wcs.pixel_to_world(x, y)
            assert wavelength.to_value("um") == pytest.approx(
                summary_table["central_wavelength"][ii], abs=1e-9)
            # every pixel, not just the centre
            ours = SpectralImage.open(cutouts[int(summary_table["cutout_index"][ii])])
            ny, nx = ours.shape
            yy, xx = np.mgrid[0:ny, 0:nx]
            wl = spectral_wcs.pixel_to_world_values(xx, yy)[0]
            np.testing.assert_allclose(wl, ours.wavelength(), rtol=0, atol=1e-9)


def test_reads_the_tutorials_own_combined_file(cutouts, tmp_path):
    # The tutorial renames the extensions but leaves PS1_0W = 'WCS-WAVE', which breaks
    # astropy's -TAB lookup; our reader still finds each cutout's table.
    rows = [(i, 61027.2 + i, np.nan, f"http://x/{i}") for i in (1, 2)]
    cols = [fits.Column(name=n, format=f, array=np.array([r[k] for r in rows]), unit=u)
            for k, (n, f, u) in enumerate([("cutout_index", "J", ""), ("observation_date", "D", "d"),
                                           ("central_wavelength", "D", "um"),
                                           ("access_url", "A200", "")])]
    table_hdu = fits.BinTableHDU.from_columns(cols)
    table_hdu.header["EXTNAME"] = "CUTOUT_INFO"
    hdus = [fits.PrimaryHDU(), table_hdu]
    for i in (1, 2):
        for hdu in cutouts[i][1:]:
            hdu = hdu.copy()
            hdu.header["EXTNAME"] = f"{hdu.header['EXTNAME']}{i}"
            hdus.append(hdu)
    path = tmp_path / "tutorial.fits"
    fits.HDUList(hdus).writeto(path)
    with fits.open(path) as hdul, pytest.raises(KeyError, match="WCS-WAVE"):
        WCS(hdul["IMAGE1"].header, fobj=hdul, key="W")
    images = open_products(path)
    assert [im.cutout_index for im in images] == [1, 2]
    assert images[1].access_url == "http://x/2"
    for i, image in zip((1, 2), images):
        np.testing.assert_array_equal(image.wavelength(),
                                      SpectralImage.open(cutouts[i]).wavelength())


def test_interrupted_writer_keeps_what_arrived(cutouts, tmp_path):
    path = tmp_path / "combined.fits"
    with pytest.raises(KeyboardInterrupt), CombinedWriter(path, _planned(5)) as writer:
        writer.add(2, cutouts[2])
        writer.add(1, cutouts[1])
        raise KeyboardInterrupt  # e.g. the user pressed Ctrl-C mid-download
    assert sorted(p.name for p in tmp_path.iterdir()) == ["combined.fits"]  # no temporary
    table, images = read_combined(path)
    assert list(table["status"]) == ["ok", "ok", "missing", "missing", "missing"]
    np.testing.assert_array_equal(images[1].image, cutouts[2]["IMAGE"].data)


def test_nothing_at_the_final_path_while_writing(cutouts, tmp_path):
    path = tmp_path / "combined.fits"
    writer = CombinedWriter(path, _planned(2))
    writer.add(1, cutouts[1])
    assert not path.exists() and os.path.exists(writer.part_path)
    assert os.path.dirname(writer.part_path) == str(tmp_path)
    writer.add(2, cutouts[2])
    writer.close()
    assert path.exists() and not os.path.exists(writer.part_path)
    assert [p.name for p in tmp_path.iterdir()] == ["combined.fits"]  # lock file gone too
    writer.close()  # idempotent
    with pytest.raises(SpherexInputError, match="already closed"):
        writer.add_failure(1, "late")


def test_unreadable_product_is_recorded_as_failed(cutouts, tmp_path):
    path = tmp_path / "combined.fits"
    with CombinedWriter(path, _planned(3)) as writer:
        writer.add(1, cutouts[1])
        with pytest.raises(SpherexFormatError, match="not a FITS file"):
            writer.add(2, b"<html>502 Bad Gateway</html>")
        writer.add(3, cutouts[3])
    table, images = read_combined(path)
    assert list(table["status"]) == ["ok", "ok", "failed"]
    assert "not a FITS file" in table["reason"][2]
    assert [im.cutout_index for im in images] == [1, 3]
    with pytest.raises(SpherexFormatError, match="cutout 2 is not in the file.*failed"):
        SpectralImage.open(path, index=2)


def test_index_selection(cutouts, tmp_path):
    path = tmp_path / "combined.fits"
    with CombinedWriter(path, _planned(2)) as writer:
        writer.add(1, cutouts[1])
        writer.add(2, cutouts[2])
    with pytest.raises(SpherexFormatError, match="2 cutouts; pass index= one of 1, 2"):
        SpectralImage.open(path)
    with pytest.raises(SpherexFormatError, match="no cutout 7; available: 1, 2"):
        SpectralImage.open(path, index=7)
    with SpectralImage.open(path, index=2) as image:
        assert image.cutout_index == 2 and image.header["EXTNAME"] == "IMAGE2"
        np.testing.assert_array_equal(image.image, cutouts[2]["IMAGE"].data)


def test_concurrent_adds(cutouts, tmp_path):
    path = tmp_path / "combined.fits"
    payloads = {i: to_bytes(c) for i, c in cutouts.items()}
    with CombinedWriter(path, _planned(5)) as writer, ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: writer.add(i, payloads[i]), payloads))
    table, images = read_combined(path)
    assert list(table["cutout_index"]) == [1, 2, 3, 4, 5]
    for image in images:
        np.testing.assert_array_equal(image.image, cutouts[image.cutout_index]["IMAGE"].data)


def test_planned_validation(cutouts, tmp_path):
    path = tmp_path / "combined.fits"
    with pytest.raises(SpherexInputError, match="not unique"):
        CombinedWriter(path, [{"cutout_index": 1, "access_url": "a"}] * 2)
    with pytest.raises(SpherexInputError, match="needs an integer 'cutout_index'"):
        CombinedWriter(path, [{"access_url": "a"}])
    planned = Table(rows=[(1, "u1", 61027.5), (2, "u" * 300, 61027.6)],
                    names=["cutout_index", "access_url", "observation_date"])
    with CombinedWriter(path, planned) as writer:
        writer.add(2, cutouts[2])
        with pytest.raises(SpherexInputError, match="already added"):
            writer.add(2, cutouts[2])
        with pytest.raises(SpherexInputError, match="not one of the 2 planned"):
            writer.add(9, cutouts[1])
    table = Table.read(path, hdu=1)
    assert table["access_url"][1] == "u1" and table["access_url"][0] == "u" * 300
    assert table["observation_date"][1] == 61027.5  # planned value kept for the missing row
    with pytest.raises(SpherexInputError, match="exists; pass overwrite=True"):
        CombinedWriter(path, planned)
    CombinedWriter(path, planned, overwrite=True).close()
    assert list(Table.read(path, hdu=1)["status"]) == ["missing", "missing"]


def test_synthetic_archive_cutouts(tmp_path):
    # cutouts as the local archive serves them, around one target seen by three detectors
    specs = [FrameSpec("2025W21_1A_0001_1", det, 150.1, 2.2, 30.0, 60800.0) for det in (1, 4, 6)]
    target = frame_wcs(specs[0]).pixel_to_world(700, 1500)
    payloads = {}
    for i, spec in enumerate(specs, start=1):
        x, y = frame_wcs(spec).world_to_pixel(target)
        payloads[i] = cutout_bytes(spec, int(x) - 20, int(y) - 20, 41, 41)
    path = tmp_path / "combined.fits"
    with CombinedWriter(path, _planned(3), target=target) as writer:
        for i, payload in payloads.items():
            writer.add(i, payload)
    table = Table.read(path, hdu=1)
    with fits.open(path) as hdul:
        for row in table:
            header = hdul[f"IMAGE{row['cutout_index']}"].header
            w = WCS(header, fobj=hdul, key="W")
            w.sip = None
            wl = w.pixel_to_world(*WCS(header).world_to_pixel(target))[0].to_value("um")
            assert row["central_wavelength"] == pytest.approx(wl, abs=1e-9)
            original = SpectralImage.open(payloads[row["cutout_index"]])
            assert row["detector"] == original.detector
            np.testing.assert_array_equal(hdul[f"FLAGS{row['cutout_index']}"].data, original.flags)
    assert sorted(table["detector"]) == [1, 4, 6]


def test_file_where_every_cutout_failed(tmp_path):
    path = tmp_path / "none.fits"
    with CombinedWriter(path, _planned(2)) as writer:
        writer.add_failure(1, "HTTP 404: no such file")
        writer.add_failure(2, "gave up after 6 attempts: HTTP 503")
    table, images = read_combined(path)
    assert images == []
    assert list(table["status"]) == ["failed", "failed"]
    assert list(table["reason"]) == ["HTTP 404: no such file",
                                     "gave up after 6 attempts: HTTP 503"]
