"""``psf='none'`` (``glue-spherex fetch --psf none``): combined files without PSFn, read back,
measured with the Gaussian fallback, resumed; and the closing byte counts of ``fetch``.

Everything against the local archive: two QR2 fetches of the same cutouts, one per choice.
"""

import re
import warnings

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits

from glue_spherex.analysis.spectrum import GaussianPSFWarning, extract_spectrum
from glue_spherex.download.cache import CutoutCache
from glue_spherex.download.fetcher import fetch_to_file
from glue_spherex.errors import SpherexInputError
from glue_spherex.irsa.core import SpherexClass
from glue_spherex.products.combined import read_combined, recover_partial
from glue_spherex.products.spectral_image import SpectralImage

RA, DEC = 210.80227, 54.34895
KEPT = ("IMAGE", "FLAGS", "VARIANCE", "ZODI", "WCS-WAVE")


@pytest.fixture(scope="module")
def files(archive, tmp_path_factory):
    """``(table, full file, none file, summaries)`` of one small QR2 query."""
    tmp = tmp_path_factory.mktemp("psf")
    table = SpherexClass(archive.url).query_region((RA, DEC), bandpass="D2", size="20px")[:6]
    full = fetch_to_file(table, tmp / "full.fits")
    none = fetch_to_file(table, tmp / "none.fits", psf="none")
    assert full.complete and none.complete
    return table, tmp / "full.fits", tmp / "none.fits", (full, none)


def test_no_psf_hdu_and_the_other_bytes_unchanged(files):
    table, full, none, (s_full, s_none) = files
    with fits.open(full) as a, fits.open(none) as b:
        names_a = [h.name for h in a]
        names_b = [h.name for h in b]
        assert not any(n.startswith(("PSF", "EPSF")) for n in names_b)
        # (cutouts are appended as they arrive: the order may differ between the files)
        assert sorted(names_b) == sorted(n for n in names_a if not n.startswith("PSF"))
        assert len(names_b) == 2 + 5 * len(table)
        assert b[0].header["PSFOMIT"] is True and "PSFOMIT" not in a[0].header
        for n in table["cutout_index"]:
            for kind in KEPT:  # byte for byte: header and data
                ha, hb = a[f"{kind}{n}"], b[f"{kind}{n}"]
                assert ha.header.tostring() == hb.header.tostring()
                assert ha._get_raw_data(ha._data_size, np.uint8, ha._data_offset).tobytes() \
                    == hb._get_raw_data(hb._data_size, np.uint8, hb._data_offset).tobytes()
        # the tutorial's way of reading a cutout still works
        assert np.array_equal(b[f"IMAGE{n}"].data, a[f"IMAGE{n}"].data, equal_nan=True)
    saved = full.stat().st_size - none.stat().st_size
    assert s_none.psf_bytes_saved == saved > 0.9 * s_full.bytes
    assert s_full.psf_bytes_saved == 0
    assert s_none.bytes == s_full.bytes  # IRSA sends the PSF anyway


def test_read_back(files):
    table, full, none, _ = files
    info, products = read_combined(none)
    _, reference = read_combined(full)
    assert list(info["status"]) == ["ok"] * len(table)
    for p, q in zip(products, reference):
        assert not p.has_psf and q.has_psf and p.psf_kind is None
        assert np.array_equal(p.image, q.image, equal_nan=True)
        assert np.array_equal(p.flags, q.flags)
        assert np.array_equal(p.wavelength(), q.wavelength(), equal_nan=True)
        assert p.psf_fwhm == q.psf_fwhm > 0
        assert p.version == q.version and p.pipeline == q.pipeline == 6
        with pytest.raises(SpherexInputError, match="psf='none'"):
            p.psf  # noqa: B018
        assert "PSF" not in dict(p.headers)
        p.close()
        q.close()
    one = SpectralImage.open(none, index=int(table["cutout_index"][0]))
    assert not one.has_psf
    one.close()


def test_spectrum_differs_only_by_the_psf_correction_and_says_so(files):
    _, full, none, _ = files
    coord = SkyCoord(RA, DEC, unit="deg")
    with warnings.catch_warnings():
        warnings.simplefilter("error", GaussianPSFWarning)
        a = extract_spectrum(full, coord)
    assert a.meta["gaussian_psf"] == []
    with pytest.warns(GaussianPSFWarning, match="PSF_FWHM"):
        b = extract_spectrum(none, coord)
    ok = b["status"] == "ok"
    assert ok.sum() >= 3 and list(a["status"]) == list(b["status"])
    assert sorted(b.meta["gaussian_psf"]) == sorted(b["cutout_index"][ok].tolist())
    assert any("PSF_FWHM" in w for w in b.meta["warnings"])
    for name in ("wavelength", "x", "y", "n_pixels", "n_masked", "background"):
        assert np.array_equal(np.asarray(a[name]), np.asarray(b[name]), equal_nan=True), name
    ratio = np.asarray(b["flux"][ok] / a["flux"][ok])
    assert np.all(np.abs(ratio - 1) < 0.02) and np.any(ratio != 1)  # only the correction
    same = extract_spectrum(none, coord, aperture_correction="none")
    ref = extract_spectrum(full, coord, aperture_correction="none")
    assert np.array_equal(np.asarray(same["flux"]), np.asarray(ref["flux"]), equal_nan=True)


def test_a_file_of_one_choice_is_not_resumed_with_the_other(files, tmp_path):
    table, _, none, _ = files
    with pytest.raises(SpherexInputError, match="psf='none'"):
        fetch_to_file(table, none, psf="full")
    with pytest.raises(SpherexInputError, match="psf must be one of"):
        fetch_to_file(table, tmp_path / "x.fits", psf="half")
    again = fetch_to_file(table, none, psf="none")  # finished already: nothing to do
    assert again.resumed == len(table) and again.bytes == 0


def test_a_killed_psf_none_writer_is_recovered_to_whole_cutouts(files, tmp_path):
    table, _, none, _ = files
    data = none.read_bytes()
    with fits.open(none) as h:
        images = [x for x in h if x.name.startswith("IMAGE")]
        cut = images[-1]._header_offset + 2880  # into the last cutout's IMAGE
        previous = images[-2].name.removeprefix("IMAGE")
    out = tmp_path / "killed.fits"
    dead = next(pid for pid in range(4_000_000, 4_100_000) if not _alive(pid))
    (tmp_path / f".killed.fits.{dead}-1-1.part").write_bytes(data[:cut])
    recovered = recover_partial(out)
    assert recovered is not None
    with fits.open(recovered) as h:
        assert h[-1].name == f"WCS-WAVE{previous}"
        assert len(h) == 2 + 5 * (len(table) - 1)


def _alive(pid):
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- glue-spherex fetch: the closing byte counts -----------------------------------------------

def _fetch(args, capsys):
    from glue_spherex.cli import main

    with pytest.raises(SystemExit) as info:
        main(["fetch", "--ra", str(RA), "--dec", str(DEC), "-b", "D2", "--size", "20px",
                  "--time", "60800", "60900", "--no-progress", *args])
    out, err = capsys.readouterr()
    return info.value.code, out, err


def _bytes_line(out):
    (line,) = [x for x in out.splitlines() if x.startswith("downloaded ")]
    numbers = [int(n.replace(",", "")) for n in re.findall(r"(\d[\d,]*) bytes", line)]
    return line, numbers


def test_fetch_prints_the_bytes_off_the_network_and_those_saved(make_archive, tmp_path, capsys):
    # truncated bodies are retried: their bytes came off the network too and are counted
    arch = make_archive(p_truncate=0.3, seed=3)
    cache = tmp_path / "cache"
    n0 = len(arch.log)
    code, out, err = _fetch(["--archive", arch.url, "-o", str(tmp_path / "a.fits"),
                             "--cache", str(cache), "--psf", "none", "--retries", "10"],
                            capsys)
    assert code == 0, err
    cutouts = [r for r in arch.log[n0:] if r.path.startswith("/ibe")]
    sent = sum(r.bytes_sent for r in cutouts)
    assert any(r.fault == "truncate" for r in cutouts)  # the test means something
    line, numbers = _bytes_line(out)
    table, products = read_combined(tmp_path / "a.fits")
    n = len(products)
    assert n == len(table) and numbers[0] == sent > 0, (line, sent)
    assert f"over the network for {n} cutouts; 0 came from the cache" in line
    assert "not written (--psf none)" in line
    psf = 0
    for url in table["access_url"]:
        with SpectralImage.open(CutoutCache(cache).check(str(url))) as whole:
            psf += whole.psf_nbytes
    assert numbers[-1] == psf > 0
    for p in products:
        p.close()
    # a rerun from the cache reads nothing off the network, and says so
    n1 = len(arch.log)
    code, out, _ = _fetch(["--archive", arch.url, "-o", str(tmp_path / "b.fits"),
                           "--cache", str(cache)], capsys)
    assert code == 0
    line, numbers = _bytes_line(out)
    assert numbers == [0] and f"0 cutouts; {n} came from the cache" in line
    assert "saved" not in line
    assert not [r for r in arch.log[n1:] if r.path.startswith("/ibe")]


def test_pipeline7_cutouts_lose_their_epsf_table(archive, tmp_path):
    table = SpherexClass(archive.url).query_region((RA, DEC), bandpass="D5", size="20px",
                                                     release="qr3")[:3]
    assert len(table) == 3
    full = fetch_to_file(table, tmp_path / "full.fits")
    none = fetch_to_file(table, tmp_path / "none.fits", psf="none")
    with fits.open(tmp_path / "none.fits") as h:
        assert not any(x.name.startswith(("PSF", "EPSF")) for x in h)
        assert len(h) == 2 + 5 * len(table)
        n = int(table["cutout_index"][0])
        assert h[f"FLAGS{n}"].data.dtype.kind == "i"  # the compressed FLAGS still reads
    assert none.psf_bytes_saved == \
        (tmp_path / "full.fits").stat().st_size - (tmp_path / "none.fits").stat().st_size
    _, products = read_combined(tmp_path / "none.fits")
    _, reference = read_combined(tmp_path / "full.fits")
    for p, q in zip(products, reference):
        assert not p.has_psf and q.psf_kind == "epsf" and p.epsf is None
        assert p.pipeline == q.pipeline == 7
        assert np.array_equal(p.flags, q.flags)
        p.close()
        q.close()
    # the EPSF comes either way (downloaded, or filled in by an early stop); it is not written
    assert full.bytes_downloaded + full.bytes_saved == none.bytes_downloaded + none.bytes_saved
