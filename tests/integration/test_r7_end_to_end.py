"""Issue #12 end to end: ``glue-spherex fetch --release qr3`` from the local archive into a
combined file that IRSA's tutorial code and the glue factory both read; ``--release qr2``
still gives today's QR2 files. The CLI runs in a real process against the local archive.

The archive's QR3 side and the query's release choice came from branch r7-archive (merged);
the module skips only on a tree without them.
"""

import inspect
import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from glue_spherex.irsa.core import SpherexClass
from glue_spherex.products.combined import read_combined

RA, DEC = "210.80227", "54.34895"  # M101

if "release" not in inspect.signature(SpherexClass.query_region).parameters:
    pytest.skip("the local archive has no QR3 yet (branch r7-archive)", allow_module_level=True)


def fetch(archive, release, out):
    result = subprocess.run(
        [sys.executable, "-m", "glue_spherex.cli", "fetch", "--ra", RA, "--dec", DEC, "-b", "D2",
         "--size", "20px", "--release", release, "--archive", archive.url, "-o", str(out)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def tutorial_read(path):
    """What IRSA's cutouts tutorial does with the file, per cutout."""
    info = Table.read(path, hdu=1)
    out = []
    with fits.open(path) as hdul:
        for row in info:
            n = int(row["cutout_index"])
            hdr = hdul[f"IMAGE{n}"].header
            wave = WCS(hdr, fobj=hdul, key="W")
            wave.sip = None
            wl, _ = wave.pixel_to_world_values(5, 5)
            out.append((n, np.array(hdul[f"FLAGS{n}"].data), float(wl),
                        isinstance(hdul[f"FLAGS{n}"], fits.CompImageHDU),
                        f"EPSF{n}" in hdul, f"PSF{n}" in hdul))
    return info, out


@pytest.mark.parametrize("flags", ["compressed", "plain"])
@pytest.mark.slow
def test_fetch_release_qr3_reads_in_the_tutorial_and_in_glue(make_archive, tmp_path, flags):
    from glue.core.data_factories import load_data

    from glue_spherex import plugin

    archive = make_archive(cutout_flags=flags)
    out = tmp_path / "qr3.fits"
    fetch(archive, "qr3", out)
    info, cutouts = tutorial_read(out)
    assert len(info) > 0 and set(info["status"]) == {"ok"}
    # release and processing tag as the query table has them (--release qr3 also brings the
    # pipeline-7 reprocessings of QR2 observations, still release qr2)
    query = SpherexClass(archive.url).query_region(
        (float(RA), float(DEC)), bandpass="D2", size="20px", release="qr3")
    expected = {str(r["cutout_url"]): (str(r["release"]), str(r["version"])) for r in query}
    assert {(str(r["release"]), str(r["processing"])) for r in info} == set(expected.values())
    assert "qr3" in set(info["release"])
    assert all(v.startswith("7.") for v in info["version"])  # the files' own VERSION
    assert all(epsf and not psf for *_, epsf, psf in cutouts)
    assert all(comp == (flags == "compressed") for *_, comp, _, _ in cutouts)
    table, products = read_combined(out)
    try:
        for product, (n, tutorial_flags, wl, *_) in zip(products, cutouts):
            assert product.cutout_index == n
            assert product.psf_kind == "epsf" and product.pipeline == 7
            assert product.release == expected[product.access_url][0]
            assert np.array_equal(product.flags, tutorial_flags)
            assert abs(float(product.pixel_to_wave(5, 5)[0]) - wl) < 1e-6
    finally:
        for product in products:
            product.close()
    plugin.setup()
    datasets = load_data(str(out))
    datasets = datasets if isinstance(datasets, list) else [datasets]
    assert len(datasets) == len(info)
    assert {d.meta["release"] for d in datasets} == set(info["release"])
    assert {d.meta["pipeline"] for d in datasets} == {7}
    assert all(np.array_equal(d["flags"], f) for d, (_, f, *_) in zip(datasets, cutouts))


@pytest.mark.slow
def test_fetch_release_qr2_still_gives_qr2(archive, tmp_path):
    out = tmp_path / "qr2.fits"
    fetch(archive, "qr2", out)
    info, cutouts = tutorial_read(out)
    assert len(info) > 0 and set(info["release"]) == {"qr2"}
    assert all(not v.startswith("7.") for v in info["version"])
    assert all(psf and not epsf and not comp for *_, comp, epsf, psf in cutouts)
