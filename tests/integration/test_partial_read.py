"""Full frames read in part from the local archive's S3 bucket by byte ranges: the bytes read
are those of the whole file, far fewer of them are moved, calibrations are read once, and the
photometry of many sources on one frame equals that of per-source cutouts of it."""

import numpy as np
import pytest
import requests
from astropy.coordinates import SkyCoord
from astropy.table import Table

from glue_spherex.analysis.image_major import measure_sources
from glue_spherex.analysis.spectrum import extract_spectrum
from glue_spherex.download.http import make_session
from glue_spherex.download.ranges import RangeReader, s3_url
from glue_spherex.errors import SpherexFormatError, SpherexServiceError
from glue_spherex.irsa import SpherexClass, plan_catalog
from glue_spherex.irsa.catalog_plan import S3_BUCKET
from glue_spherex.local_archive.synthetic.sky import TARGETS
from glue_spherex.products.partial import HEADER_CHUNK, CalibrationStore, PartialImage
from glue_spherex.products.spectral_image import SpectralImage

M101 = TARGETS["M101"]


def _images(archive, release, n=2):
    """The first ``n`` images (by time) of one detector covering M101."""
    plan = plan_catalog(Table({"id": ["m101"], "ra": [M101[0]], "dec": [M101[1]]}),
                        release=release, archive=SpherexClass(archive_url=archive.url))
    plan.sort("t_min")
    plan = plan[plan["detector"] == plan["detector"][0]]
    return [(str(r["s3_key"]), str(r["access_url"]).split("?")[0]) for r in plan[:n]]


def _open(archive, key, store=None, session=None):
    reader = RangeReader(s3_url(archive.url, S3_BUCKET, key), session or make_session((5, 60)))
    head = reader.read(0, HEADER_CHUNK)
    return reader, PartialImage(reader.read, reader.size, key, head=head, calibrations=store)


@pytest.mark.parametrize("release", ["qr2", "qr3"])
def test_rows_read_by_ranges_are_the_files_bytes(archive, release):
    (key, url), (key2, _) = _images(archive, release)
    store = CalibrationStore()
    reader, part = _open(archive, key, store)
    bands = [(100, 130), (1000, 1041)]
    part.load_rows(bands)
    part.load_psf([500.0, 1500.0], [110.0, 1020.0])
    full = SpectralImage.open(requests.get(url, timeout=60).content)
    got = part.product
    for y0, y1 in bands:
        for name in ("image", "variance", "zodi"):
            assert np.array_equal(getattr(got, name)[y0:y1], getattr(full, name)[y0:y1],
                                  equal_nan=True), name
        assert np.array_equal(part.flags[y0:y1], full.flags[y0:y1])
    assert got.flags_compressed == (release == "qr3")
    for x, y in ((500, 110), (1500, 1020)):
        assert np.array_equal(got.psf_at(x, y), full.psf_at(x, y))
    xs, ys = np.array([3.0, 2000.0]), np.array([7.0, 1500.0])
    assert np.array_equal(got.pixel_to_wave(xs, ys)[0], full.pixel_to_wave(xs, ys)[0])
    # 71 rows of a 2040-row frame, plus headers and two PSF planes: under a tenth of it
    assert reader.bytes_read < reader.size / 10
    # the second file of the same detector calibration is given the stored tables
    reader2, part2 = _open(archive, key2, store)
    part2.load_psf([1000.0], [1000.0])   # the EPSF (pipeline 7) is read on first use
    assert part2.calibrations_reused >= (2 if release == "qr3" else 1)
    assert len(store) >= (2 if release == "qr3" else 1)
    if release == "qr3":  # headers and nothing of the 3.86 MB EPSF
        assert reader2.bytes_read < 400_000


@pytest.mark.parametrize("release", ["qr2", "qr3"])
def test_many_sources_on_one_frame_equal_per_source_cutouts(archive, release):
    (key, url), = _images(archive, release, n=1)
    _, part = _open(archive, key)
    rng = np.random.default_rng(7)
    px, py = rng.uniform(40, 2000, 12), rng.uniform(40, 2000, 12)
    ra, dec = part.product.wcs.all_pix2world(px, py, 0)
    rows = measure_sources(part, [f"s{i}" for i in range(12)], ra, dec)
    assert [r["id"] for r in rows] == [f"s{i}" for i in range(12)]
    measured = 0
    for i, row in enumerate(rows):
        body = requests.get(url, params={"center": f"{ra[i]},{dec[i]}", "size": "0.04"},
                            timeout=60).content
        with SpectralImage.open(body) as cutout:
            ref = extract_spectrum([cutout], SkyCoord(ra[i], dec[i], unit="deg"))[0]
            x0, y0 = cutout.parent_origin
        assert row["status"] == ref["status"]
        if row["status"] != "ok":
            continue
        measured += 1
        for name in ("flux", "flux_err", "wavelength", "bandwidth", "unmasked_fraction"):
            value = getattr(ref[name], "value", ref[name])
            assert row[name] == pytest.approx(float(value), rel=1e-9, abs=1e-12), name
        assert row["x"] == pytest.approx(float(ref["x"].value) + x0, abs=1e-6)
    assert measured >= 8


def test_a_source_off_the_frame_is_said_so(archive):
    (key, _), = _images(archive, "qr2", n=1)
    _, part = _open(archive, key)
    ra, dec = part.product.wcs.all_pix2world([1000.0], [1000.0], 0)
    rows = measure_sources(part, ["on", "off"], [ra[0], (ra[0] + 90) % 360], [dec[0], 0.0])
    assert [r["status"] for r in rows] == ["ok", "off_image"]
    assert np.isnan(rows[1]["flux"])


def test_a_truncated_header_is_a_format_error():
    data = bytearray(b"SIMPLE  =                    T" + b" " * 50 + b"BITPIX  =                    8"
                     + b" " * 49)
    data += b" " * (2880 - len(data))  # no END card anywhere
    with pytest.raises(SpherexFormatError, match="truncated"):
        PartialImage(lambda a, b: bytes(data[a:b]), len(data), "hostile.fits")


def test_missing_object_is_a_service_error_not_retried(archive):
    reader = RangeReader(s3_url(archive.url, S3_BUCKET, "qr2/no/such/file.fits"),
                         make_session((5, 30)))
    with pytest.raises(SpherexServiceError, match="HTTP 404"):
        reader.read(0, 100)
    assert reader.requests == 1


def test_byte_ranges_survive_the_archives_faults(archive, make_archive):
    (key, url), = _images(archive, "qr2", n=1)
    arch = make_archive(seed=3, p_500=0.15, p_truncate=0.15, p_html200=0.1, p_reset=0.1,
                        retry_after=0)
    reader, part = _open(arch, key)
    part.load_rows([(500, 540)])
    assert reader.retries > 0   # some of the ~11 reads met a fault and were asked again
    clean = SpectralImage.open(requests.get(url, timeout=60).content)  # the fault-free archive
    for name in ("image", "variance", "zodi", "flags"):
        assert np.array_equal(getattr(part.product, name)[500:540],
                              getattr(clean, name)[500:540], equal_nan=True), name
