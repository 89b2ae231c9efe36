"""The synthetic SPHEREx universe: file layout and keywords against the real headers, WCS
against the real tutorial and SIA values, cutouts against their parents, flux truth, plan."""

import functools
import io
import logging
import re
from datetime import datetime, timedelta

import astropy  # noqa: F401  (import before touching the astropy logger)
import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

from glue_spherex.errors import SpherexInputError
from glue_spherex.local_archive.synthetic import (
    BITS,
    DETECTOR_FWHM,
    OMEGA_PIX_SR,
    TARGETS,
    FrameSpec,
    cutout_bytes,
    cutout_window,
    default_sky,
    footprint,
    footprints,
    frame_bytes,
    frame_headers,
    frame_wcs,
    make_cutout,
    make_frame,
    observation_plan,
    plan_by_key,
    psf_cube,
    psf_header,
    render_window,
    source_pixels,
    survey_target_id,
)
from glue_spherex.local_archive.synthetic._real import real_header
from glue_spherex.local_archive.synthetic.fitsbytes import card_image
from glue_spherex.local_archive.synthetic.geometry import REAL_PC, frame_geometry
from glue_spherex.local_archive.synthetic.psf import zone_fwhm
from glue_spherex.products.wavelength import reference_table

logging.getLogger("astropy").setLevel(logging.ERROR)

#: The real file behind the packaged headers: 2025W51_1A_0684_2 D3, CRVAL and PC as is.
REAL_SPEC = FrameSpec("2025W51_1A_0684_2", 3, 10.0880653194, 40.8987511044, 0.0, 61027.214984375)
IMAGE_KINDS = ("IMAGE", "FLAGS", "VARIANCE", "ZODI")


@functools.cache
def _target_pixels():
    """``{(target, detector): [(spec, x, y), ...]}`` of plan frames containing each target."""
    out = {}
    names = list(TARGETS)
    ra = np.array([TARGETS[n][0] for n in names])
    dec = np.array([TARGETS[n][1] for n in names])
    for s in observation_plan():
        xs, ys = frame_geometry(s).world2pix(ra, dec)
        for name, x, y in zip(names, xs, ys):
            if -0.5 <= x < 2039.5 and -0.5 <= y < 2039.5:
                out.setdefault((name, s.detector), []).append((s, float(x), float(y)))
    return out


def _covering(name, detector, margin=60):
    """Plan frames of a detector with target ``name`` at least ``margin`` px inside."""
    return [s for s, x, y in _target_pixels()[(name, detector)]
            if margin <= x <= 2039 - margin and margin <= y <= 2039 - margin]


@pytest.fixture(scope="module")
def d5_spec():
    return _covering("M101", 5)[0]


@pytest.fixture(scope="module")
def d5_raw(d5_spec):
    """The one full frame rendered by this module (71.6 MB of FITS)."""
    return frame_bytes(d5_spec)


@pytest.fixture(scope="module")
def d5_file(d5_raw):
    return fits.open(io.BytesIO(d5_raw))


# --- layout and keywords ---------------------------------------------------------------------


def test_full_frame_layout(d5_file, d5_spec):
    names = [h.name for h in d5_file]
    assert names == ["PRIMARY", "IMAGE", "FLAGS", "VARIANCE", "ZODI", "PSF", "WCS-WAVE"]
    assert isinstance(d5_file[0], fits.PrimaryHDU) and d5_file[0].data is None
    assert isinstance(d5_file[6], fits.BinTableHDU)
    for name, dtype in (("IMAGE", ">f4"), ("FLAGS", ">i4"), ("VARIANCE", ">f4"), ("ZODI", ">f4")):
        assert d5_file[name].data.shape == (2040, 2040)
        assert d5_file[name].data.dtype == np.dtype(dtype)
    assert d5_file["PSF"].data.shape == (121, 101, 101)
    assert d5_file["PSF"].data.dtype == np.dtype(">f4")
    cards = {h.name: len(h.header) for h in d5_file}
    assert cards == {"PRIMARY": 5, "IMAGE": len(real_header("IMAGE")), "FLAGS": 152,
                     "VARIANCE": 119, "ZODI": 119, "PSF": 509, "WCS-WAVE": 18}
    assert d5_file[0].header["VERSION"] == "6.4+psffix1"
    bunit = {h.name: h.header.get("BUNIT") for h in d5_file[1:6]}
    assert bunit == {"IMAGE": "MJy / sr", "FLAGS": "", "VARIANCE": "MJy2 / sr2",
                     "ZODI": "MJy / sr", "PSF": ""}
    assert d5_file["FLAGS"].header["EXTTYPE"] == "MASK"
    table = d5_file["WCS-WAVE"]
    assert table.columns.names == ["X", "Y", "VALUES"]
    assert table.data["VALUES"].shape == (1, 11, 11, 2)
    assert "EXTVER" not in table.header and "TUNIT1" not in table.header


def test_keyword_sets_are_the_real_ones(d5_file):
    for kind in ("IMAGE", "FLAGS"):
        real = [c.keyword for c in real_header(kind).cards]
        ours = [c.keyword for c in d5_file[kind].header.cards]
        assert ours == real, kind
        # HIERARCH used exactly where the real header uses it
        raw = {c.keyword: c.image.startswith("HIERARCH") for c in real_header(kind).cards}
        for c in d5_file[kind].header.cards:
            assert c.image.startswith("HIERARCH") == raw[c.keyword], c.keyword
    wcs_block = [c.keyword for c in real_header("FLAGS").cards]
    wcs_block = wcs_block[wcs_block.index("WCSAXES"):]
    for kind in ("VARIANCE", "ZODI"):
        keys = [c.keyword for c in d5_file[kind].header.cards]
        assert keys[7:10] == ["EXTNAME", "BUNIT", "EXTTYPE"]
        assert keys[10:] == wcs_block
    flags = d5_file["FLAGS"].header
    assert {k[3:]: flags[k] for k in flags if k.startswith("MP_")} == BITS


def test_frame_dependent_cards_are_formatted_as_astropy_does(d5_file, d5_spec):
    hdr = d5_file["IMAGE"].header
    real = real_header("IMAGE")
    changed = [c for c in hdr.cards
               if c.keyword not in ("COMMENT", "HISTORY") and c.image != real.cards[c.keyword].image]
    assert len(changed) > 40
    for c in changed:
        c.verify("exception")
        if not c.image.startswith("HIERARCH"):
            assert fits.Card(c.keyword, c.value, c.comment).image == c.image
        assert card_image(c.keyword, c.value, c.comment,
                          c.image.startswith("HIERARCH")) == c.image


def test_exposure_keywords(d5_file, d5_spec):
    hdr = d5_file["IMAGE"].header
    assert hdr["DETECTOR"] == 5 and hdr["OBSID"] == d5_spec.obsid
    assert hdr["EXPIDN"] == d5_spec.expidn
    assert str(hdr["EXPIDN"]).endswith(d5_spec.obsid[-1] + "5")
    assert hdr["MJD-BEG"] == hdr["MJD-OBS"] == d5_spec.mjd_beg
    assert hdr["MJD-END"] == pytest.approx(d5_spec.mjd_beg + 115.12 / 86400, abs=1e-9)
    assert hdr["MJD-AVG"] == pytest.approx(0.5 * (hdr["MJD-BEG"] + hdr["MJD-END"]), abs=1e-9)
    for tag in ("BEG", "AVG", "END"):
        assert Time(hdr[f"DATE-{tag}"], scale="utc").mjd == pytest.approx(hdr[f"MJD-{tag}"],
                                                                          abs=1e-3 / 86400)
    assert (hdr["XPOSURE"], hdr["TELAPSE"]) == (113.5826, 118.1873)
    assert 5.2 <= hdr["PSF_FWHM"] <= 6.1
    assert hdr["PSF_FWHM"] == pytest.approx(float(np.median(zone_fwhm(5))))
    assert hdr["SPS_EPA"] % 180 == pytest.approx(0, abs=10) or hdr["SPS_EPA"] % 180 > 170
    assert hdr["SPS_TARGET"] == survey_target_id(d5_spec)
    sibling = [s for s in observation_plan() if s.obsid[:-2] == d5_spec.obsid[:-2]
               and s.obsid != d5_spec.obsid]
    assert sibling and all(survey_target_id(s) == hdr["SPS_TARGET"] for s in sibling)
    # the real EXPIDN form reproduced from the real obs id
    assert REAL_SPEC.expidn == real_header("IMAGE")["EXPIDN"]


def test_flag_counters_equal_the_flags(d5_file):
    flags = d5_file["FLAGS"].data
    for hdr in (d5_file["IMAGE"].header, d5_file["FLAGS"].header):
        for name, bit in (("HOT", "HOT"), ("COLD", "COLD"), ("NONFUNC", "NONFUNC"),
                          ("TRANSIENT", "TRANSIENT"), ("OUTLIER", "OUTLIER"),
                          ("SUR_ERROR", "SUR_ERROR"), ("FULLSAMPLE", "FULLSAMPLE"),
                          ("SOURCE", "SOURCE"), ("PERSIST", "PERSIST")):
            key = f"L2 N_{name}"
            if key in hdr:
                assert hdr[key] == np.count_nonzero(flags & (1 << BITS[bit])), key
    assert d5_file["IMAGE"].header["PXSRCMSK"] == pytest.approx(
        100 * np.count_nonzero(flags & (1 << BITS["SOURCE"])) / flags.size, abs=0.01)


def test_astropy_writes_the_frame_back_byte_for_byte(d5_file, d5_raw):
    d5_file.verify("exception")
    buf = io.BytesIO()
    d5_file.writeto(buf)
    assert buf.getvalue() == d5_raw
    assert len(d5_raw) == 71_637_120  # IRSA's access_estsize for QR2 is 71638 kB


@pytest.mark.slow
def test_make_frame_is_a_loaded_hdulist():
    spec = FrameSpec("2026W02_1A_0001_1", 6, 123.0, -45.0, 33.0, 61041.1)
    hdul = make_frame(spec)
    assert isinstance(hdul, fits.HDUList) and len(hdul) == 7
    assert hdul["IMAGE"].data.shape == (2040, 2040) and hdul["PSF"].data.shape == (121, 101, 101)
    assert hdul["IMAGE"].header["DETECTOR"] == 6 and hdul["IMAGE"].header["OBSID"] == spec.obsid


# --- WCS -------------------------------------------------------------------------------------


def test_wavelength_wcs_reproduces_the_tutorial_d5_values(d5_file):
    w = WCS(d5_file["IMAGE"].header, fobj=d5_file, key="W")
    w.sip = None
    expected = {(0, 0): 4.4361639, (1, 0): 4.4361342, (0, 1): 4.43584344,
                (2039, 0): 4.42395306, (0, 2039): 3.81301856, (2039, 2039): 3.80999374}
    for (x, y), lam in expected.items():
        got, _ = w.pixel_to_world_values(x, y)
        assert got == pytest.approx(lam, abs=1e-6)
    _, bw = w.pixel_to_world_values(0, 0)
    assert bw == pytest.approx(0.036175, abs=1e-6)
    # leaving the real SIP on moves the lookup: the "forgot sip=None" mistake is detectable
    leaky = WCS(d5_file["IMAGE"].header, fobj=d5_file, key="W")
    assert abs(leaky.pixel_to_world_values(0, 0)[0] - 4.4361639) > 1e-4


def test_spatial_wcs_is_the_real_sip_rotated(d5_file, d5_spec):
    hdr = d5_file["IMAGE"].header
    real = real_header("IMAGE")
    for key in real:
        if re.fullmatch(r"(A|B|AP|BP)_(\d_\d|ORDER)", key):
            assert hdr[key] == real[key], key
    assert hdr["A_0_0"] != 0 and hdr["B_0_0"] != 0
    assert (hdr["CRPIX1"], hdr["CRPIX2"], hdr["CRVAL1"], hdr["CRVAL2"]) == (
        1020.5, 1020.5, d5_spec.ra, d5_spec.dec)
    pc = np.array([[hdr["PC1_1"], hdr["PC1_2"]], [hdr["PC2_1"], hdr["PC2_2"]]])
    rot = pc @ np.linalg.inv(REAL_PC)
    a = np.deg2rad(d5_spec.pa)
    assert rot == pytest.approx(np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]),
                                abs=1e-9)
    w = WCS(hdr)
    assert w.sip is not None
    xy = np.array([[0, 0], [2039, 0], [1019.5, 1019.5], [17.3, 1500.8]])
    assert np.allclose(w.all_pix2world(xy, 0), frame_wcs(d5_spec).all_pix2world(xy, 0),
                       atol=1e-12, rtol=0)
    ra, dec = frame_geometry(d5_spec).pix2world(xy[:, 0], xy[:, 1])
    assert np.allclose(np.column_stack([ra, dec]), w.all_pix2world(xy, 0), atol=1e-9, rtol=0)
    # sources are where the WCS says they are
    ra0, dec0 = TARGETS["M101"]
    assert np.allclose(w.all_world2pix([[ra0, dec0]], 0, tolerance=1e-10)[0],
                       source_pixels(d5_spec)["M101"], atol=1e-6)


def test_footprint_reproduces_the_real_sia_row():
    fp = footprint(REAL_SPEC)
    arcsec = 1 / 3600
    assert fp["s_ra"] == pytest.approx(10.086254818464036, abs=0.01 * arcsec)
    assert fp["s_dec"] == pytest.approx(40.900227543559353, abs=0.01 * arcsec)
    real = np.array([[6.962852120551271, 41.75009330770693], [11.28249000497766, 43.137330881450204],
                     [13.174643355147754, 39.946653279470475], [8.97915502445252, 38.62459220149968],
                     [6.962852120551271, 41.75009330770693]])
    assert fp["s_region"].startswith("POLYGON ICRS ")
    ours = np.array(fp["s_region"].split()[2:], float).reshape(5, 2)
    assert np.allclose(ours, real, atol=0.01 * arcsec, rtol=0)
    assert np.allclose(fp["corners"], real[:4], atol=0.01 * arcsec, rtol=0)
    assert fp["s_fov"] == 3.485


def test_footprints_of_plan_frames_are_astropys_wcs():
    """The vectorised footprints equal astropy's all_pix2world of each frame's TAN-SIP WCS, and
    footprint(spec) gives the same numbers and s_region string."""
    plan = observation_plan()
    sample = plan[::97] + [max(plan, key=lambda s: s.dec), min(plan, key=lambda s: s.dec)]
    assert {s.collection for s in sample} == {"spherex_qr2", "spherex_qr2_deep"}
    fps = footprints(sample)
    pixels = np.array([[-0.5, -0.5], [2039.5, -0.5], [2039.5, 2039.5], [-0.5, 2039.5],
                       [1019.5, 1019.5]])
    for i, spec in enumerate(sample):
        sky = frame_wcs(spec).all_pix2world(pixels, 0)
        ours = np.vstack([fps["corners"][i], [fps["s_ra"][i], fps["s_dec"][i]]])
        assert np.abs((ours[:, 0] - sky[:, 0] + 180) % 360 - 180).max() < 1e-9
        assert np.abs(ours[:, 1] - sky[:, 1]).max() < 1e-9
        verts = np.array(fps["s_region"][i].split()[2:], float).reshape(5, 2)
        assert np.array_equal(verts[:4], fps["corners"][i]) and np.array_equal(verts[4], verts[0])
        one = footprint(spec)
        assert (one["s_region"], one["s_ra"], one["s_dec"]) == (
            fps["s_region"][i], fps["s_ra"][i], fps["s_dec"][i])


def test_real_file_name_and_version():
    """The real file of REAL_SPEC is ..._0684_2D3_spx_l2b-v21-2025-354.fits (its SIA row): same
    name up to the processing date, v21 as the 152-card FLAGS header copied from it."""
    assert REAL_SPEC.file_name.startswith("level2_2025W51_1A_0684_2D3_spx_l2b-v21-2025-")
    assert REAL_SPEC.key.startswith("qr2/level2/2025W51_1A/l2b-v21-2025-")
    assert len(real_header("FLAGS").cards) == 152


def test_footprints_cross_ra_zero():
    plan = observation_plan()
    corners = footprints(plan)["corners"]
    crossing = np.flatnonzero(np.ptp(corners[:, :, 0], axis=1) > 180)
    assert crossing.size
    s, corners = plan[crossing[0]], corners[crossing[0]]
    assert np.all((corners[:, 0] >= 0) & (corners[:, 0] < 360))
    # the field is small, not 360 degrees wide: corners are close on the sphere
    ra, dec = frame_geometry(s).pix2world(np.array([-0.5, 2039.5]), np.array([-0.5, -0.5]))
    assert np.allclose([ra[0], ra[1]], corners[:2, 0])


# --- cutouts ---------------------------------------------------------------------------------


def test_cutout_matches_parent(d5_file, d5_spec):
    ra, dec = TARGETS["M101"]
    window = cutout_window(d5_spec, ra, dec, 59, 59)
    x0, y0, nx, ny = window
    assert (nx, ny) == (59, 59)
    xt, yt = frame_geometry(d5_spec).world2pix(ra, dec)
    assert abs(xt - x0 - 29) <= 0.5 and abs(yt - y0 - 29) <= 0.5
    cut = make_cutout(d5_spec, *window)
    assert [h.name for h in cut] == [h.name for h in d5_file]
    for kind in IMAGE_KINDS:
        assert np.array_equal(cut[kind].data, d5_file[kind].data[y0:y0 + ny, x0:x0 + nx],
                              equal_nan=True), kind
        ch, ph = cut[kind].header, d5_file[kind].header
        assert (ch["NAXIS1"], ch["NAXIS2"]) == (nx, ny)
        assert (ch["CRPIX1"], ch["CRPIX2"]) == (ph["CRPIX1"] - x0, ph["CRPIX2"] - y0)
        for key, shift in (("CRPIX1A", x0), ("CRPIX2A", y0), ("CRPIX1W", x0), ("CRPIX2W", y0)):
            assert ch[key] == 1 - shift == ph[key] - shift
        moved = {"NAXIS1", "NAXIS2", "CRPIX1", "CRPIX2", "CRPIX1A", "CRPIX2A", "CRPIX1W",
                 "CRPIX2W"}
        assert [c.image for c in ch.cards if c.keyword not in moved] == \
               [c.image for c in ph.cards if c.keyword not in moved]
    for kind in ("PRIMARY", "PSF", "WCS-WAVE"):
        assert cut[kind].header.tostring() == d5_file[kind].header.tostring()
    assert np.array_equal(cut["PSF"].data, d5_file["PSF"].data)
    assert np.array_equal(cut["WCS-WAVE"].data["VALUES"], d5_file["WCS-WAVE"].data["VALUES"])

    wc = WCS(cut["IMAGE"].header, fobj=cut, key="W")
    wp = WCS(d5_file["IMAGE"].header, fobj=d5_file, key="W")
    wc.sip = wp.sip = None
    i, j = np.meshgrid(np.arange(nx), np.arange(ny))
    lam_c = wc.pixel_to_world_values(i.ravel(), j.ravel())
    lam_p = wp.pixel_to_world_values(i.ravel() + x0, j.ravel() + y0)
    assert np.array_equal(lam_c[0], lam_p[0]) and np.array_equal(lam_c[1], lam_p[1])
    sky_c = WCS(cut["IMAGE"].header).all_pix2world(i.ravel(), j.ravel(), 0)
    sky_p = WCS(d5_file["IMAGE"].header).all_pix2world(i.ravel() + x0, j.ravel() + y0, 0)
    assert np.allclose(sky_c, sky_p, atol=1e-11, rtol=0)
    wa = WCS(cut["IMAGE"].header, key="A")
    wa.sip = None
    assert np.allclose(wa.pixel_to_world_values(3.0, 5.0), (3.0 + x0, 5.0 + y0), atol=1e-9)


def test_cutout_bytes_are_what_astropy_writes(d5_spec):
    window = (1000, 1500, 40, 33)
    raw = cutout_bytes(d5_spec, *window)
    buf = io.BytesIO()
    make_cutout(d5_spec, *window).writeto(buf)
    assert buf.getvalue() == raw
    fits.open(io.BytesIO(raw)).verify("exception")


def test_cutout_on_non_square_wavelength_grids():
    for det, shape in ((3, (14, 9, 2)), (4, (20, 13, 2))):
        s = _covering("M31", det)[0]
        cut = fits.open(io.BytesIO(cutout_bytes(s, 1700, 1790, 30, 25)))
        assert cut["WCS-WAVE"].data["VALUES"][0].shape == shape
        w = WCS(cut["IMAGE"].header, fobj=cut, key="W")
        w.sip = None
        lam, bw = w.pixel_to_world_values(np.arange(30), np.full(30, 12))
        ref_lam, ref_bw = reference_table(det).lookup(1700 + np.arange(30) + 1.0, 1790 + 12 + 1.0)
        assert np.allclose(lam, ref_lam, atol=1e-12) and np.allclose(bw, ref_bw, atol=1e-12)
    # D3's low-efficiency dichroic band: flagged rows, counted in the header
    s = _covering("M31", 3)[0]
    cut = make_cutout(s, 500, 40, 10, 40)
    dichroic = (cut["FLAGS"].data & (1 << BITS["DICHROIC"])) != 0
    assert dichroic[:20].all() and not dichroic[20:].any()
    assert cut["FLAGS"].header["L2 N_DICHROIC"] == 60 * 2040


def test_cutout_windows_are_clipped_like_irsa(d5_spec):
    g = frame_geometry(d5_spec)
    ra, dec = g.pix2world(1.2, 2037.7)
    assert cutout_window(d5_spec, float(ra), float(dec), 6, 6) == (0, 2036, 5, 4)
    ra, dec = g.pix2world(2.2, 2030.7)
    assert cutout_window(d5_spec, float(ra), float(dec), 6, 6) == (0, 2029, 6, 6)
    cut = make_cutout(d5_spec, -10, 2030, 30, 30)
    assert cut["IMAGE"].data.shape == (10, 20)
    assert cut["IMAGE"].header["CRPIX1A"] == 1.0 and cut["IMAGE"].header["CRPIX2A"] == -2029.0
    far_ra, far_dec = (d5_spec.ra + 180) % 360, -d5_spec.dec
    assert cutout_window(d5_spec, far_ra, far_dec, 60, 60) is None
    off_ra, off_dec = g.pix2world(-200.0, 500.0)
    assert cutout_window(d5_spec, float(off_ra), float(off_dec), 60, 60) is None
    with pytest.raises(SpherexInputError):
        make_cutout(d5_spec, 2040, 0, 10, 10)
    with pytest.raises(SpherexInputError):
        cutout_bytes(d5_spec, 0, 0, 0, 10)


# --- pixels ----------------------------------------------------------------------------------


def test_render_window_is_window_independent_and_deterministic(d5_spec):
    x, y = source_pixels(d5_spec)["M101"]
    x, y = int(x), int(y)
    big = render_window(d5_spec, x - 60, y - 60, 120, 120)
    assert np.count_nonzero(big["flags"]) > 0 and np.nanmax(big["image"]) > 10
    for wx, wy, nx, ny in ((x - 10, y - 10, 20, 20), (x - 60, y + 3, 120, 1),
                           (x + 7, y - 60, 1, 120), (x - 33, y - 41, 71, 29)):
        part = render_window(d5_spec, wx, wy, nx, ny)
        sl = (slice(wy - y + 60, wy - y + 60 + ny), slice(wx - x + 60, wx - x + 60 + nx))
        for key in big:
            assert np.array_equal(part[key], big[key][sl], equal_nan=True), key
    again = render_window(d5_spec, x - 60, y - 60, 120, 120)
    for key in big:
        assert np.array_equal(again[key], big[key], equal_nan=True)


def test_render_flags_are_the_flags_of_render_window(d5_spec):
    from glue_spherex.local_archive.synthetic import render_flags

    x, y = (int(v) for v in source_pixels(d5_spec)["M101"])
    window = (x - 50, y - 40, 100, 80)            # SOURCE discs, cut by the window's edges
    flags = render_flags(d5_spec, *window)
    assert flags.dtype == np.int32 and np.count_nonzero(flags & (1 << BITS["SOURCE"])) > 50
    assert np.array_equal(flags, render_window(d5_spec, *window)["flags"])
    with pytest.raises(SpherexInputError, match="not inside"):
        render_flags(d5_spec, 2000, 0, 100, 10)


def test_noise_matches_variance_and_bad_pixels_are_wrong(d5_file, d5_spec):
    y0, x0 = 300, 300
    d = render_window(d5_spec, x0, y0, 400, 400)
    model = render_window(d5_spec, x0, y0, 400, 400, noise=False)
    good = d["flags"] == 0
    z = (d["image"][good] - model["image"][good]) / np.sqrt(d["variance"][good])
    assert abs(z.mean()) < 0.02 and z.std() == pytest.approx(1.0, abs=0.02)
    assert np.array_equal(model["zodi"], d["zodi"])
    flags = d5_file["FLAGS"].data
    image = d5_file["IMAGE"].data
    bad = (flags & sum(1 << BITS[b] for b in ("HOT", "COLD", "NONFUNC", "TRANSIENT"))) != 0
    assert 0.005 < np.mean(bad) < 0.05
    sky_level = np.nanmedian(image)
    assert np.nanmedian(image[(flags & (1 << BITS["HOT"])) != 0]) > 20 * sky_level
    assert np.nanmedian(image[(flags & (1 << BITS["COLD"])) != 0]) < 0.2 * sky_level
    assert np.all(np.isnan(image[(flags & (1 << BITS["NONFUNC"])) != 0]))


def test_zodi_is_in_image_and_smooth(d5_file):
    image, zodi = d5_file["IMAGE"].data, d5_file["ZODI"].data
    flags = d5_file["FLAGS"].data
    clean = flags == 0
    assert np.nanmedian(image[clean] - zodi[clean]) == pytest.approx(0, abs=0.005)
    assert zodi.min() > 0.05 and zodi.max() < 5
    # smooth: neighbouring pixels differ by far less than the noise
    assert np.max(np.abs(np.diff(zodi, axis=0))) < 0.01 * np.max(zodi)


def test_point_sources_conserve_flux():
    sky = default_sky()
    for name, det in (("NEP", 1), ("M31", 3), ("RA0", 4), ("NEP", 6), ("M31-S2", 2)):
        target = name.split("-")[0]
        s = _covering(target, det)[3]
        x, y = source_pixels(s)[name]
        xi, yi = int(round(x)), int(round(y))
        d = render_window(s, xi - 5, yi - 5, 11, 11, noise=False)
        flux = float(np.sum(d["image"].astype(float) - d["zodi"])) * OMEGA_PIX_SR * 1e12
        lam, _ = reference_table(det).lookup(x + 1.0, y + 1.0)
        assert flux == pytest.approx(sky.true_flux_density(name, lam), rel=1e-3), (name, det)
        assert d["flags"][5, 5] & (1 << BITS["SOURCE"])


def test_galaxy_aperture_flux_matches_truth():
    from photutils.aperture import CircularAperture, aperture_photometry

    sky = default_sky()
    for det in (2, 4):
        s = _covering("M101", det)[0]
        x, y = source_pixels(s)["M101"]
        xi, yi = int(round(x)), int(round(y))
        d = render_window(s, xi - 30, yi - 30, 61, 61, noise=False)
        img = d["image"].astype(float) - d["zodi"]
        lam, _ = reference_table(det).lookup(x + 1.0, y + 1.0)
        for radius in (30.0, 90.0):
            ap = CircularAperture((x - xi + 30, y - yi + 30), r=radius / 6.153)
            got = aperture_photometry(img, ap, method="exact")["aperture_sum"][0]
            truth = sky.true_flux_density("M101", lam, radius_arcsec=radius,
                                          fwhm_arcsec=DETECTOR_FWHM[det])
            assert got * OMEGA_PIX_SR * 1e12 == pytest.approx(truth, rel=0.01)


def test_truth_of_the_sky():
    sky = default_sky()
    names = {s.name for s in sky.sources}
    assert {"M101", "M31", "RA0", "NEP"} <= names
    m101 = sky.source("M101")
    assert m101.kind == "galaxy" and (m101.ra, m101.dec) == TARGETS["M101"]
    # the disc is an exponential of scale length 30" to better than 0.1 % in enclosed flux
    disc = [c for c in m101.components if c.sigma_arcsec > 0]
    for radius in (15.0, 30.0, 60.0, 150.0):
        frac = sum(c.weight * m101.enclosed_fraction(c, radius) for c in disc) / sum(
            c.weight for c in disc)
        h = radius / 30.0
        assert frac == pytest.approx(1 - (1 + h) * np.exp(-h), rel=1e-3)
    total = sky.true_flux_density("M101", 3.29)
    assert sky.true_flux_density("M101", 3.29, radius_arcsec=1e4) == pytest.approx(total)
    # 3.3 um PAH emission and the 1.6 um stellar bump in the galaxy's spectrum
    assert total > 1.3 * max(sky.true_flux_density("M101", 3.05),
                             sky.true_flux_density("M101", 3.6))
    lam = np.linspace(1.0, 2.4, 141)
    assert 1.45 < lam[np.argmax(sky.true_flux_density("M101", lam))] < 1.75
    # point-source surface brightness integrates to its flux density
    ra, dec = TARGETS["NEP"]
    step = 0.4
    off = (np.arange(-60, 61) * step) / 3600
    rr, dd = np.meshgrid(ra + off / np.cos(np.deg2rad(dec)), dec + off)
    sb = sky.surface_brightness(rr, dd, 2.0, fwhm_arcsec=6.0)
    integral = sb.sum() * np.deg2rad(step / 3600) ** 2 * 1e12
    assert integral == pytest.approx(sky.true_flux_density("NEP", 2.0), rel=2e-3)
    with pytest.raises(SpherexInputError):
        sky.true_flux_density("nope", 2.0)


# --- PSF -------------------------------------------------------------------------------------


def test_psf_cube_and_header():
    cube = psf_cube(4)
    assert cube.shape == (121, 101, 101) and cube.dtype == np.float32
    assert np.allclose(cube.sum(axis=(1, 2)), 1.0, atol=1e-5)
    assert cube is psf_cube(4)
    hdr = psf_header(4)
    assert len(hdr) == 509
    assert hdr["XCTR_1"] == pytest.approx(93.22727273) and hdr["XWID_1"] == pytest.approx(186.45454546)
    assert hdr["XCTR_2"] == pytest.approx(278.68181818) and hdr["YCTR_2"] == pytest.approx(93.22727273)
    assert hdr["YCTR_12"] == pytest.approx(278.68181818) and hdr["XCTR_12"] == pytest.approx(93.22727273)
    assert (hdr["CDELT1"], hdr["CTYPE1"], hdr["OVERSAMP"]) == (0.615, "XANG", 10)
    # plane k (x fastest) is the zone's Gaussian: second moment gives its FWHM
    fwhm = zone_fwhm(4)
    r = (np.arange(101) - 50) * 0.615
    for k in (0, 5, 60, 120):
        p = cube[k].astype(float)
        sigma = np.sqrt(np.sum(p.sum(axis=0) * r**2) - 0.615**2 / 12)
        assert sigma * np.sqrt(8 * np.log(2)) == pytest.approx(fwhm[k // 11, k % 11], rel=2e-3)
    assert fwhm[5, 5] < fwhm[0, 0]
    assert set(DETECTOR_FWHM) == set(range(1, 7))
    assert all(5.2 <= v <= 6.1 for v in DETECTOR_FWHM.values())


def test_psf_header_of_the_erratum_writes_the_zone_keywords_y_fast():
    fixed, erratum = psf_header(4), psf_header(4, zone_order="y-fast")
    assert fixed == psf_header(4, zone_order="x-fast") and len(erratum) == 509
    assert [c.keyword for c in fixed.cards] == [c.keyword for c in erratum.cards]
    for k in (1, 2, 12, 50, 121):  # keyword k of the erratum is zone ((k-1) // 11, (k-1) % 11)
        i, j = (k - 1) // 11 + 1, (k - 1) % 11 + 1
        transposed = (j - 1) * 11 + i  # the fixed keyword number of that zone
        for axis in "XY":
            assert erratum[f"{axis}CTR_{k}"] == fixed[f"{axis}CTR_{transposed}"]
            assert erratum[f"{axis}WID_{k}"] == fixed[f"{axis}WID_{transposed}"]
    assert erratum["XCTR_2"] == fixed["YCTR_2"] and erratum["XCTR_2"] != fixed["XCTR_2"]
    with pytest.raises(SpherexInputError, match="zone_order='z-fast'"):
        psf_header(4, zone_order="z-fast")


# --- headers of the real pointing ------------------------------------------------------------


def test_real_pointing_headers_match_the_real_file():
    hdr = frame_headers(REAL_SPEC)
    real = real_header("IMAGE")
    for key in ("PC1_1", "PC1_2", "PC2_1", "PC2_2", "CRVAL1", "CRVAL2", "LATPOLE", "MJD-OBS",
                "DATE-OBS", "DATE-BEG", "OBSID", "EXPIDN", "DETECTOR", "PSF_FWHM"):
        assert hdr["IMAGE"][key] == real[key], key
    assert hdr["IMAGE"]["SPS_ELON"] == pytest.approx(real["SPS_ELON"], abs=0.5)
    assert hdr["IMAGE"]["SPS_ELAT"] == pytest.approx(real["SPS_ELAT"], abs=0.5)
    assert hdr["IMAGE"]["SPS_EPA"] == pytest.approx(real["SPS_EPA"], abs=1.0)
    assert set(hdr) == {"PRIMARY", "IMAGE", "FLAGS", "VARIANCE", "ZODI", "PSF", "WCS-WAVE"}


# --- observation plan ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def coverage():
    return _target_pixels()


def test_plan_counts_per_detector(coverage):
    for name in ("M101", "M31", "RA0"):
        for det in range(1, 7):
            n = len(coverage[(name, det)])
            assert 80 <= n <= 100, (name, det, n)
            assert {s.collection for s, _, _ in coverage[(name, det)]} == {"spherex_qr2"}
    for det in range(1, 7):
        assert len(coverage[("NEP", det)]) > 120
        assert {s.collection for s, _, _ in coverage[("NEP", det)]} == {"spherex_qr2_deep"}


def test_plan_wavelengths_span_each_band(coverage):
    for det in range(1, 7):
        table = reference_table(det)
        lam = [float(table.lookup(x + 1, y + 1)[0]) for _, x, y in coverage[("M101", det)]]
        lo, hi = float(table.values[..., 0].min()), float(table.values[..., 0].max())
        assert min(lam) < lo + 0.15 * (hi - lo) and max(lam) > hi - 0.15 * (hi - lo)
        rolls = [s.pa for s, _, _ in coverage[("M101", det)]]
        assert np.ptp(np.mod(rolls, 360)) > 90  # two passes, opposite rolls


def test_plan_pointings_and_obs_ids():
    plan = observation_plan()
    assert plan == observation_plan()
    by_obs = {}
    for s in plan:
        by_obs.setdefault(s.obsid, {})[s.detector] = s
    assert all(sorted(d) == [1, 2, 3, 4, 5, 6] for d in by_obs.values())
    assert len(plan_by_key()) == len(observation_plan("all"))
    mjd0 = datetime(1858, 11, 17)
    pattern = re.compile(r"(\d{4})W(\d{2})_([12])A_(\d{4})_([1-4])")
    for obsid, dets in list(by_obs.items())[::25]:
        d1, d2, d3, d4 = dets[1], dets[2], dets[3], dets[4]
        assert (d1.ra, d1.dec, d1.pa, d1.mjd_beg) == (d4.ra, d4.dec, d4.pa, d4.mjd_beg)
        assert len({s.mjd_beg for s in dets.values()}) == 1
        sep12 = _separation(d1, d2)
        sep13 = _separation(d1, d3)
        assert sep12 == pytest.approx(3.75, abs=1e-6) and sep13 == pytest.approx(7.5, abs=1e-6)
        m = pattern.fullmatch(obsid)
        assert m
        t = mjd0 + timedelta(days=d1.mjd_beg)
        year, week, weekday = t.isocalendar()
        assert (int(m.group(1)), int(m.group(2))) == (year, week)
        since_monday = (weekday - 1) + (t.hour * 3600 + t.minute * 60 + t.second) / 86400
        assert m.group(3) == ("1" if since_monday < 3.5 else "2")
    # small slews of a visit follow each other 2 minutes apart
    visits = {}
    for obsid, dets in by_obs.items():
        visits.setdefault(obsid[:-2], []).append(dets[1].mjd_beg)
    gaps = np.concatenate([np.diff(sorted(v)) for v in visits.values() if len(v) > 1])
    assert np.allclose(gaps * 86400, 120.0, atol=0.01)
    assert min(s.mjd_beg for s in plan) >= 60796 and max(s.mjd_beg for s in plan) < 60796 + 366


def _separation(a, b):
    va = np.array([np.cos(np.deg2rad(a.dec)) * np.cos(np.deg2rad(a.ra)),
                   np.cos(np.deg2rad(a.dec)) * np.sin(np.deg2rad(a.ra)), np.sin(np.deg2rad(a.dec))])
    vb = np.array([np.cos(np.deg2rad(b.dec)) * np.cos(np.deg2rad(b.ra)),
                   np.cos(np.deg2rad(b.dec)) * np.sin(np.deg2rad(b.ra)), np.sin(np.deg2rad(b.dec))])
    return float(np.rad2deg(np.arccos(np.clip(va @ vb, -1, 1))))


# --- pipeline 7 (QR3, and QR2 reprocessed) ---------------------------------------------------

R7_SAMPLES = "/work/shared/reference/irsa-samples/r7"


def _real_r7_header():
    import json

    with open(f"{R7_SAMPLES}/qr3_D5_IMAGE_header_2026W30_2A_0049_1.json") as f:
        return json.load(f)["header"]


def _r7_covering(name, detector, part="qr3", margin=60):
    plan = [s for s in observation_plan(part) if s.detector == detector]
    names = list(TARGETS)
    out = []
    for s in plan:
        x, y = frame_geometry(s).world2pix(*TARGETS[name])
        if margin <= x <= 2039 - margin and margin <= y <= 2039 - margin:
            out.append((s, float(x), float(y)))
    assert out, (name, detector, part, names)
    return out


@pytest.fixture(scope="module")
def r7_spec():
    return _r7_covering("M101", 5)[0][0]


@pytest.fixture(scope="module")
def r7_raw(r7_spec):
    return frame_bytes(r7_spec)


@pytest.fixture(scope="module")
def r7_file(r7_raw):
    """One pipeline-7 full frame (FLAGS RICE_1-compressed by astropy), opened by astropy."""
    return fits.open(io.BytesIO(r7_raw))


def test_r7_full_frame_layout(r7_file, r7_spec, r7_raw):
    assert r7_spec.pipeline7 and r7_spec.release == "qr3"
    assert [h.name for h in r7_file] == ["PRIMARY", "IMAGE", "FLAGS", "VARIANCE", "ZODI", "EPSF",
                                         "WCS-WAVE"]
    assert r7_file[0].header["VERSION"] == "7.0.5" and len(r7_file[0].header) == 5
    flags = r7_file["FLAGS"]
    assert isinstance(flags, fits.CompImageHDU)
    start = _hdu_offset(r7_file, 2)
    zhdr = fits.Header.fromstring(
        r7_raw[start:flags.fileinfo()["datLoc"]].decode())
    assert (zhdr["ZIMAGE"], zhdr["ZCMPTYPE"], zhdr["ZTILE1"], zhdr["ZTILE2"]) == \
        (True, "RICE_1", 2040, 1)
    assert zhdr["NAXIS1"] == 8 and zhdr["NAXIS2"] == 2040 and zhdr["ZBITPIX"] == 32
    assert flags.data.dtype.kind == "i" and flags.data.shape == (2040, 2040)
    for name in ("IMAGE", "VARIANCE", "ZODI"):
        assert r7_file[name].data.shape == (2040, 2040) and r7_file[name].data.dtype == ">f4"
    assert r7_file["EPSF"].data["EPSF"].shape == (441, 33, 33)


def _hdu_offset(hdul, index):
    return hdul[index].fileinfo()["hdrLoc"]


def test_r7_image_keywords_are_the_real_qr3_set(r7_file, r7_spec):
    real = _real_r7_header()
    hdr = r7_file["IMAGE"].header
    keys = [k for k in hdr if k not in ("COMMENT", "HISTORY")]
    assert keys == list(real)
    for key in ("BUNIT", "EXTTYPE", "KOVR_A", "TSAMP", "DETCOORD", "SHUTTLE_GLOW_CORR",
                "AURORA_CONT", "CTYPE1W", "PS1_0W", "A_0_0", "WCSNAMEA"):
        assert hdr[key] == real[key], key
    assert hdr["OBSID"] == r7_spec.obsid and hdr["DETECTOR"] == 5
    assert hdr["PSF_FWHM"] == real["PSF_FWHM"]                     # real D5 R7 value, 8.63"
    assert re.fullmatch(r"SPS_\d{6}_S34", hdr["SPS_TARGET"])
    for gone in ("NBLMPIX", "NHALOPIX", "NSNOWPIX"):
        assert gone not in hdr
    history = [str(h) for h in hdr["HISTORY"]]
    calibs = {h.split()[1]: h.split()[2] for h in history if h.startswith("[CALIB]")}
    assert {"epsf", "spectral_wcs", "nonfunc_v2", "zodi_scaling_v2", "xtalk_class2"} <= set(calibs)
    assert "average_psf" not in calibs and "nonfunc" not in calibs
    # counters of the R7 bits are the exact counts of FLAGS
    flags = r7_file["FLAGS"].data
    for key, bit in (("L2 N_XTALK", 20), ("L2 SATSTRKS_PXS", 25), ("L2 N_SOURCE", 21),
                     ("L2 N_NONFUNC", 6)):
        assert hdr[key] == np.count_nonzero(flags & (1 << bit)), key
        assert r7_file["FLAGS"].header[key] == hdr[key] if key in r7_file["FLAGS"].header else True
    assert hdr["L2 SATSTRKS"] == int(hdr["L2 SATSTRKS_PXS"] > 0)


def test_r7_flag_cards_name_the_r7_bits(r7_file):
    hdr = r7_file["FLAGS"].header
    assert not [k for k in hdr if k.startswith("MP_")]
    names = {int(k[4:]): hdr[k] for k in hdr if k.startswith("MSKN")}
    masks = {int(k[4:]): hdr[k] for k in hdr if k.startswith("MSKM")}
    assert names[20] == "CROSSTALK" and names[25] == "STREAK" and names[21] == "SOURCE"
    assert names[0] == "TRANSIENT" and 4 not in names and 5 not in names
    assert masks == {bit: 1 << bit for bit in names}
    # every set bit is a named one
    used = np.bitwise_or.reduce(r7_file["FLAGS"].data.ravel())
    assert used & ~sum(1 << b for b in names) == 0


def test_r7_epsf_table(r7_file):
    epsf = r7_file["EPSF"]
    hdr = epsf.header
    assert [c.name for c in epsf.columns] == ["BINX", "BINY", "XCENTER", "YCENTER", "XWIDTH",
                                              "YWIDTH", "NSTAR", "NEFF_MEAN", "CWAVE", "CBAND",
                                              "EPSF"]
    assert (hdr["TFORM11"], hdr["TDIM11"], hdr["OVSMPX"], hdr["OVSMPY"], hdr["NAXIS2"]) == \
        ("1089D", "(33,33)", 5, 5, 441)
    assert hdr["DETECTOR"] == "5" and hdr["DETCOORD"] == "sky"
    d = epsf.data
    np.testing.assert_allclose(d["EPSF"].sum(axis=(1, 2)), 1.0, rtol=0, atol=1e-12)
    assert list(d["BINX"][:3]) == [0, 1, 2] and list(d["BINY"][:22:21]) == [0, 1]  # x fast
    np.testing.assert_allclose(d["XCENTER"], (d["BINX"] + 0.5) * 2040 / 21 - 0.5, atol=1e-3)
    peak = np.unravel_index(np.argmax(d["EPSF"][220]), (33, 33))
    assert peak == (16, 16)
    # CWAVE is the R7 wavelength at the zone centre
    table = WCS(r7_file["IMAGE"].header, fobj=r7_file, key="W")
    table.sip = None
    wl = table.pixel_to_world_values(float(d["XCENTER"][220]), float(d["YCENTER"][220]))[0]
    assert d["CWAVE"][220] == pytest.approx(wl, abs=1e-5)


def test_r7_epsf_on_d3_is_11_by_41():
    from glue_spherex.local_archive.synthetic.pipeline7 import epsf_table

    t = epsf_table(3)
    assert len(t.data) == 451 and t.data["BINX"].max() == 10 and t.data["BINY"].max() == 40
    np.testing.assert_allclose(t.data["EPSF"].sum(axis=(1, 2)), 1.0, atol=1e-12)


def test_r7_wcs_wave_is_the_real_hdu(r7_file, r7_raw):
    with open(f"{R7_SAMPLES}/qr3_D5_WCS-WAVE_2026W30_era.fits", "rb") as f:
        real = f.read()
    assert r7_raw[_hdu_offset(r7_file, 6):] == real[2880:]
    assert [str(h) for h in r7_file["WCS-WAVE"].header["HISTORY"]][1] == \
        "Calibration source file: spectral_wcs_5_v3.0.fits"


@pytest.mark.parametrize("flags_mode", ["compressed", "plain"])
def test_r7_cutout_matches_parent_and_keeps_epsf_whole(r7_file, r7_spec, flags_mode):
    x0, y0, nx, ny = 700, 900, 33, 29
    cut = make_cutout(r7_spec, x0, y0, nx, ny, flags=flags_mode)
    assert [h.name for h in cut] == [h.name for h in r7_file]
    assert isinstance(cut["FLAGS"], fits.CompImageHDU) == (flags_mode == "compressed")
    for name in ("IMAGE", "FLAGS", "VARIANCE", "ZODI"):
        np.testing.assert_array_equal(cut[name].data, r7_file[name].data[y0:y0 + ny, x0:x0 + nx])
        assert cut[name].header["CRPIX1A"] == 1 - x0 and cut[name].header["CRPIX2W"] == 1 - y0
    assert cut["FLAGS"].header["MSKN0025"] == "STREAK"
    np.testing.assert_array_equal(cut["EPSF"].data["EPSF"], r7_file["EPSF"].data["EPSF"])
    w = WCS(cut["IMAGE"].header, fobj=cut, key="W")
    w.sip = None
    wp = WCS(r7_file["IMAGE"].header, fobj=r7_file, key="W")
    wp.sip = None
    np.testing.assert_allclose(w.pixel_to_world_values(3, 4),
                               wp.pixel_to_world_values(x0 + 3, y0 + 4), rtol=0, atol=1e-12)


def test_cutout_flags_mode_is_checked(r7_spec):
    with pytest.raises(SpherexInputError, match="compressed"):
        cutout_bytes(r7_spec, 0, 0, 10, 10, flags="zip")


def test_qr2_and_its_reprocessing_agree_within_calibrations():
    from glue_spherex.local_archive.synthetic.pipeline7 import R7_GAIN

    reproc = {(s.obsid, s.detector): s for s in observation_plan("reprocessed")
              if s.tag == "l2b-v26-2026-196"}
    qr2 = next(s for s, x, y in _target_pixels()[("M101", 1)] if (s.obsid, 1) in reproc
               and 40 < x < 2000 and 40 < y < 2000)
    r7 = reproc[(qr2.obsid, 1)]
    assert (r7.obsid, r7.detector, r7.ra, r7.mjd_beg, r7.collection) == \
        (qr2.obsid, qr2.detector, qr2.ra, qr2.mjd_beg, qr2.collection)
    assert r7.pipeline7 and not qr2.pipeline7 and r7.key != qr2.key
    assert "/l2b-v26-2026-196/" in r7.key and r7.key.startswith("qr2/level2/")
    x, y = source_pixels(qr2)["M101"]
    assert source_pixels(r7)["M101"] == (x, y)
    box = (int(x) - 30, int(y) - 30, 61, 61)
    a = render_window(qr2, *box, noise=False)
    b = render_window(r7, *box, noise=False)
    np.testing.assert_array_equal(a["zodi"], b["zodi"])      # D1: the same wavelength table
    flux_a = float((a["image"] - a["zodi"]).sum())
    flux_b = float((b["image"] / R7_GAIN[1] - b["zodi"]).sum())
    assert flux_b == pytest.approx(flux_a, rel=0.01)          # the R7 PSF is broader
    peak_a, peak_b = (a["image"] - a["zodi"]).max(), (b["image"] - b["zodi"]).max()
    assert peak_b < peak_a


def test_calibration_uuids_name_identical_calibrations():
    from glue_spherex.local_archive.synthetic.pipeline7 import epsf_hdu_bytes, wave_hdu_bytes_r7

    def calibs(spec):
        hdr = frame_headers(spec)["IMAGE"]
        return {h.split()[1]: h.split()[2] for h in map(str, hdr["HISTORY"])
                if h.startswith("[CALIB]")}

    qr3 = observation_plan("qr3")
    by_det = {}
    for s in qr3[:60]:
        by_det.setdefault(s.detector, []).append(s)
    seen = {}
    for det, specs in by_det.items():
        uuids = {calibs(s)["epsf"] for s in specs[:2]} | set()
        assert len(uuids) == 1
        seen[det] = (uuids.pop(), calibs(specs[0])["spectral_wcs"])
        assert epsf_hdu_bytes(det) == epsf_hdu_bytes(det)
    # different detectors: different tables, different UUIDs
    assert len({u for u, _ in seen.values()}) == len(seen)
    assert len({w for _, w in seen.values()}) == len(seen)
    assert wave_hdu_bytes_r7(1) != wave_hdu_bytes_r7(2)
    # QR2: one spectral_wcs UUID per detector too (D3 keeps the real file's)
    qr2 = {s.detector: calibs(s)["spectral_wcs"] for s in observation_plan()[:6]}
    assert qr2[3] == "0d47d467-abe7-4583-b55d-3e9357b06aae" and len(set(qr2.values())) == 6
    assert set(qr2.values()).isdisjoint(w for _, w in seen.values())


def test_r7_plan_paths_and_tags():
    qr3 = observation_plan("qr3")
    assert {s.collection for s in qr3} == {"spherex_qr3", "spherex_qr3_deep"}
    tag = re.compile(r"l2b(_retry)?-v27-2026-\d{3}")
    for s in qr3[::97]:
        assert tag.fullmatch(s.version_tag) and s.pipeline7
        assert re.fullmatch(rf"qr3/level2/{s.planning_period}/{s.version_tag}/{s.detector}/"
                            rf"level2_{s.obsid}D{s.detector}_spx_{s.version_tag}\.fits", s.key)
    assert any(s.tag.startswith("l2b_retry-v27") for s in qr3)
    reproc = observation_plan("reprocessed")
    assert {s.tag for s in reproc} == {"l2b-v26-2026-196", "l2b_retry-v26-2026-203"}
    originals = {(s.obsid, s.detector) for s in observation_plan()}
    assert {(s.obsid, s.detector) for s in reproc} <= originals
    keys = [s.key for s in observation_plan("all")]
    assert len(keys) == len(set(keys))


def test_r7_full_frames_have_their_announced_size(r7_raw, r7_spec, r7_file):
    """The FLAGS heap is padded so that a full file has ``spec.file_size`` bytes (within
    IRSA's access_estsize range), known without generating it (the S3 listing needs it)."""
    assert len(r7_raw) == r7_spec.file_size
    assert 65_440_000 <= r7_spec.file_size <= 65_961_000 and r7_spec.file_size % 2880 == 0
    info = r7_file[2].fileinfo()
    zhdr = fits.Header.fromstring(r7_raw[info["hdrLoc"]:info["datLoc"]].decode())
    assert 8_000_000 < zhdr["PCOUNT"] < 14_000_000          # a real heap is about 12 MB
    assert r7_file["FLAGS"].data.shape == (2040, 2040)      # astropy still decodes it
