"""The archive's file routes: IBE cutouts, whole files, HEAD and byte ranges, read by astropy,
fsspec, requests and http.client against the real server."""

import gzip
import http.client
import io
from urllib.parse import urlsplit

import numpy as np
import pytest
import requests
from astropy.io import fits
from astropy.wcs import WCS

from glue_spherex.local_archive.synthetic import frame_wcs

M101 = (210.80227, 54.34895)
SCALE = 6.153          # arcsec per pixel used by the cutout service


@pytest.fixture(scope="module")
def spec(archive):
    """A D2 frame whose grid holds M101 well inside its edges."""
    for s in archive.catalog.specs:
        if s.detector == 2 and abs(s.dec - M101[1]) < 3:
            x, y = frame_wcs(s).all_world2pix(*M101, 0)
            if 200 < x < 1840 and 200 < y < 1840:
                return s
    pytest.fail("no D2 frame contains M101")


def test_cutout_opens_with_astropy(archive, spec):
    url = f"{archive.file_url(spec)}?center={M101[0]},{M101[1]}d&size=0.1"
    with fits.open(url, cache=False) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "IMAGE", "FLAGS", "VARIANCE", "ZODI", "PSF",
                                         "WCS-WAVE"]
        n = round(0.1 * 3600 / SCALE)
        assert hdul["IMAGE"].data.shape == (n, n) == hdul["FLAGS"].data.shape
        x, y = WCS(hdul["IMAGE"].header).all_world2pix(*M101, 0)
        assert abs(x - (n - 1) / 2) <= 1 and abs(y - (n - 1) / 2) <= 1


def test_cutout_units_agree(archive, spec):
    def shape(center, size):
        r = requests.get(archive.file_url(spec), params={"center": center, "size": size})
        assert r.status_code == 200, r.text
        with fits.open(io.BytesIO(r.content)) as hdul:
            h = hdul["IMAGE"].header
            return h["NAXIS1"], h["NAXIS2"], h["CRPIX1"], h["CRPIX2"]

    ref = shape(f"{M101[0]},{M101[1]}", "0.1")
    n = round(0.1 * 3600 / SCALE)
    assert ref[:2] == (n, n)
    x, y = frame_wcs(spec).all_world2pix(*M101, 0)
    rad = [float(v) for v in np.radians(M101)]
    for center, size in [(f"{M101[0]},{M101[1]}d", "6arcmin"),
                         (f"{M101[0]},{M101[1]}deg", "360arcsec"),
                         (f"{rad[0]!r},{rad[1]!r}rad", f"{float(np.radians(0.1))!r}rad"),
                         (f"{M101[0] * 60},{M101[1] * 60}arcmin", f"{n}px"),
                         (f"{x:.6f},{y:.6f}px", f"{n}pix")]:
        assert shape(center, size) == ref, (center, size)
    assert shape(f"{M101[0]},{M101[1]}", "0.1,0.05")[:2] == (n, round(0.05 * 3600 / SCALE))


def test_cutout_is_clipped_at_the_edge(archive, spec):
    ra, dec = frame_wcs(spec).all_pix2world(5.0, 1000.0, 0)
    r = requests.get(archive.file_url(spec), params={"center": f"{ra},{dec}", "size": "0.1"})
    assert r.status_code == 200
    with fits.open(io.BytesIO(r.content)) as hdul:
        n = round(0.1 * 3600 / SCALE)
        ny, nx = hdul["IMAGE"].data.shape
        assert ny == n and nx == 5 + 1 + (n - 1) // 2        # columns 0 .. 5 + half-width
        x, y = WCS(hdul["IMAGE"].header).all_world2pix(ra, dec, 0)
        assert abs(x - 5) < 0.01 and abs(y - (n - 1) / 2) <= 1


@pytest.mark.parametrize("params, message", [
    ({"center": "30.0,-20.0", "size": "0.1"}, "does not overlap"),
    ({"center": f"{M101[0]},{M101[1]}", "size": "-0.1"}, "negative"),
    ({"center": f"{M101[0]},95", "size": "0.1"}, "dec value 95"),
    ({"center": f"{M101[0]},{M101[1]}", "size": "0.1furlong"}, "unknown unit"),
    ({"center": f"{M101[0]}", "size": "0.1"}, "center"),
    ({"center": f"{M101[0]},{M101[1]}"}, "size"),
    ({"center": f"{M101[0]},{M101[1]}", "size": "0.1", "gzip": "maybe"}, "gzip"),
])
def test_bad_cutouts_are_400(archive, spec, params, message):
    r = requests.get(archive.file_url(spec), params=params)
    assert r.status_code == 400
    assert message in r.text


def test_gzip_parameter_and_server_default(archive, spec, make_archive):
    params = {"center": f"{M101[0]},{M101[1]}", "size": "0.05"}
    plain = requests.get(archive.file_url(spec), params=params)
    zipped = requests.get(archive.file_url(spec), params={**params, "gzip": "true"})
    assert plain.content[:6] == b"SIMPLE"
    assert zipped.content[:2] == b"\x1f\x8b" and "Content-Encoding" not in zipped.headers
    assert zipped.headers["Content-Type"] == "application/fits"
    assert gzip.decompress(zipped.content) == plain.content
    with fits.open(f"{archive.file_url(spec)}?center={M101[0]},{M101[1]}&size=0.05&gzip=true",
                   cache=False) as hdul:
        assert hdul["IMAGE"].data.shape == fits.open(io.BytesIO(plain.content))[1].data.shape
    gz_archive = make_archive(gzip_cutouts=True)
    assert requests.get(gz_archive.file_url(spec), params=params).content[:2] == b"\x1f\x8b"
    r = requests.get(gz_archive.file_url(spec), params={**params, "gzip": "false"})
    assert r.content == plain.content


@pytest.mark.slow
def test_head_and_ranges_of_a_whole_file(archive, spec):
    url = archive.file_url(spec)
    head = requests.head(url)
    assert head.status_code == 200 and head.headers["Accept-Ranges"] == "bytes"
    size = int(head.headers["Content-Length"])
    assert size % 2880 == 0 and size > 60e6
    first = requests.get(url, headers={"Range": "bytes=0-2879"})
    assert first.status_code == 206 and first.headers["Content-Range"] == f"bytes 0-2879/{size}"
    assert first.content.startswith(b"SIMPLE  =") and len(first.content) == 2880
    last = requests.get(url, headers={"Range": "bytes=-2880"})
    assert last.status_code == 206 and len(last.content) == 2880
    assert last.headers["Content-Range"] == f"bytes {size - 2880}-{size - 1}/{size}"
    mid = requests.get(url, headers={"Range": f"bytes={size - 10}-{size + 100}"})
    assert mid.status_code == 206 and len(mid.content) == 10 and mid.content == last.content[-10:]
    bad = requests.get(url, headers={"Range": f"bytes={size}-"})
    assert bad.status_code == 416 and bad.headers["Content-Range"] == f"bytes */{size}"


@pytest.mark.slow
def test_fsspec_section_reads_ranges_only(archive, spec):
    x, y = (int(round(float(v))) for v in frame_wcs(spec).all_world2pix(*M101, 0))
    cut = requests.get(archive.file_url(spec), params={"center": f"{x},{y}px", "size": "9px"})
    with fits.open(io.BytesIO(cut.content)) as hdul:
        expected = hdul["IMAGE"].data.copy()
    n0 = len(archive.log)
    with fits.open(archive.file_url(spec), use_fsspec=True,
                   fsspec_kwargs={"block_size": 65536}) as hdul:
        section = hdul["IMAGE"].section[y - 4:y + 5, x - 4:x + 5]
    np.testing.assert_array_equal(section, expected)
    records = [r for r in archive.log[n0:] if r.path.endswith(spec.file_name)]
    assert any(r.status == 206 for r in records), records
    total = int(requests.head(archive.file_url(spec)).headers["Content-Length"])
    assert sum(r.bytes_sent for r in records) < total / 50


def test_unknown_paths_and_methods(archive, spec):
    assert requests.get(archive.url + "/ibe/data/spherex/qr2/level2/nothing.fits").status_code \
        == 404
    assert requests.get(archive.url + "/nothing").status_code == 404
    assert requests.post(archive.file_url(spec), data={"a": 1}).status_code == 405


def test_keep_alive_serves_several_requests_per_connection(archive, spec):
    parts = urlsplit(archive.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    path = urlsplit(archive.file_url(spec)).path
    for size in ("0.02", "0.03", "0.04"):
        conn.request("GET", f"{path}?center={M101[0]},{M101[1]}&size={size}")
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200 and len(body) == int(resp.headers["Content-Length"])
        assert not resp.will_close
    sock = conn.sock
    conn.request("GET", "/TAP/availability")
    assert conn.getresponse().read().count(b"true") == 1
    assert conn.sock is sock                  # still the first connection
    conn.close()


# --- pipeline-7 cutouts ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def r7_spec(archive):
    """A QR3 D3 frame holding M101 well inside its edges."""
    for s in archive.catalog.specs:
        if s.detector == 3 and s.collection == "spherex_qr3" and abs(s.dec - M101[1]) < 3:
            x, y = frame_wcs(s).all_world2pix(*M101, 0)
            if 200 < x < 1840 and 200 < y < 1840:
                return s
    pytest.fail("no QR3 D3 frame contains M101")


def _raw_header(body, index):
    """The raw header of HDU ``index`` as written (Z-cards of a compressed HDU included)."""
    with fits.open(io.BytesIO(body)) as hdul:
        info = hdul[index].fileinfo()
    return fits.Header.fromstring(body[info["hdrLoc"]:info["datLoc"]].decode())


@pytest.mark.parametrize("mode", ["compressed", "plain"])
def test_r7_cutout_flags_compressed_or_plain(make_archive, archive, r7_spec, mode):
    arch = archive if mode == "compressed" else make_archive(cutout_flags=mode)
    url = f"{arch.url}/ibe/data/spherex/{r7_spec.key}?center={M101[0]},{M101[1]}&size=180arcsec"
    r = requests.get(url)
    assert r.status_code == 200
    with fits.open(io.BytesIO(r.content)) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "IMAGE", "FLAGS", "VARIANCE", "ZODI",
                                          "EPSF", "WCS-WAVE"]
        assert hdul[0].header["VERSION"] == "7.0.5"
        assert hdul["IMAGE"].data.shape == (29, 29)           # IRSA: 180 arcsec -> 29 x 29
        flags = hdul["FLAGS"]
        assert isinstance(flags, fits.CompImageHDU) == (mode == "compressed")
        assert flags.data.shape == (29, 29) and flags.header["MSKN0020"] == "CROSSTALK"
        assert len(hdul["EPSF"].data) == 451                  # D3: 11 x 41 zones, whole
        values = flags.data.copy()
    raw = _raw_header(r.content, 2)
    if mode == "compressed":
        assert (raw["XTENSION"], raw["ZCMPTYPE"], raw["ZTILE1"], raw["ZTILE2"]) == \
            ("BINTABLE", "RICE_1", 29, 1)
    else:
        assert (raw["XTENSION"], raw["BITPIX"]) == ("IMAGE", 32)
    # both modes carry the same flag values
    other = make_archive(cutout_flags="plain" if mode == "compressed" else "compressed")
    r2 = requests.get(url.replace(arch.url, other.url))
    with fits.open(io.BytesIO(r2.content)) as hdul:
        np.testing.assert_array_equal(hdul["FLAGS"].data, values)


def test_archive_command_cutout_flags_option():
    import argparse

    from glue_spherex.cli.archive import add_arguments, faults_from_args  # noqa: F401

    parser = add_arguments(argparse.ArgumentParser())
    assert parser.parse_args([]).cutout_flags == "compressed"
    assert parser.parse_args(["--cutout-flags", "plain"]).cutout_flags == "plain"
    with pytest.raises(SystemExit):
        parser.parse_args(["--cutout-flags", "zip"])


@pytest.mark.slow
def test_r7_frame_size_is_known_before_it_is_generated(archive, r7_spec):
    import time

    from glue_spherex.local_archive.files import frame_cache

    t0 = time.perf_counter()
    size = frame_cache().size(r7_spec)            # what HEAD and the S3 listing report
    assert time.perf_counter() - t0 < 0.1         # nothing rendered
    assert size == r7_spec.file_size
    head = requests.head(archive.file_url(r7_spec))
    assert int(head.headers["Content-Length"]) == size
    body = requests.get(archive.file_url(r7_spec)).content
    assert len(body) == size
    with fits.open(io.BytesIO(body)) as hdul:
        assert hdul["FLAGS"].data.shape == (2040, 2040) and hdul[0].header["VERSION"] == "7.0.5"
