"""The archive's TAP, SIA2 and VOSI services, exercised by clients nobody here wrote
(pyvo, astroquery, requests) against the real server on 127.0.0.1.

Expected rows are derived independently of the archive's engine: a frame contains a position
when astropy's TAN-SIP WCS of the frame maps it onto the 2040x2040 pixel grid.
"""

import csv
import io
import json

import numpy as np
import pytest
import pyvo
import requests
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.time import Time

from glue_spherex.local_archive.catalog import EM_RANGES
from glue_spherex.local_archive.synthetic import TARGETS, frame_wcs

M101 = (210.80227, 54.34895)
SAMPLES = "/work/shared/reference/irsa-samples"

TUTORIAL = """SELECT 'https://irsa.ipac.caltech.edu/' || a.uri || '?center=210.80227,54.34895d&size=0.1' AS uri, p.time_bounds_lower
FROM spherex.artifact a JOIN spherex.plane p ON a.planeid = p.planeid
WHERE 1 = CONTAINS(POINT('ICRS', 210.80227, 54.34895), p.poly) AND p.energy_bandpassname = 'SPHEREx-D2'
ORDER BY p.time_bounds_lower"""  # noqa: E501  (verbatim from the IRSA tutorial)


def pixel_position(spec, ra, dec):
    x, y = frame_wcs(spec).all_world2pix(ra, dec, 0)
    return float(x), float(y)


def frames_containing(catalog, ra, dec, margin, keep=lambda spec: True):
    """Keys of frames whose pixel grid, shrunk (margin > 0) or grown (< 0) by ``margin``
    pixels, contains the position; the footprint polygon's straight edges differ from the
    SIP-curved grid edge by well under 5 px."""
    centres = SkyCoord(np.array([s.ra for s in catalog.specs]),
                       np.array([s.dec for s in catalog.specs]), unit="deg")
    near = centres.separation(SkyCoord(ra, dec, unit="deg")).deg < 2.6   # half-diagonal 2.47
    out = set()
    for i in np.flatnonzero(near):
        spec = catalog.specs[i]
        if not keep(spec):
            continue
        x, y = pixel_position(spec, ra, dec)
        if margin - 0.5 <= x <= 2039.5 - margin and margin - 0.5 <= y <= 2039.5 - margin:
            out.add(catalog.keys[i])
    return out


def test_tutorial_query_through_pyvo(archive):
    n0 = len(archive.log)
    result = pyvo.dal.TAPService(archive.tap_url).search(TUTORIAL)
    table = result.to_table()
    assert 60 <= len(table) <= 220  # QR2 (~90), its pipeline-7 reprocessings and QR3
    times = np.array(table["time_bounds_lower"])
    assert np.all(np.diff(times) >= 0)
    assert table["time_bounds_lower"].unit == u.day
    prefix = "https://irsa.ipac.caltech.edu/ibe/data/spherex/"
    suffix = "?center=210.80227,54.34895d&size=0.1"
    keys = set()
    for uri in table["uri"]:
        assert uri.startswith(prefix) and uri.endswith(suffix)
        keys.add(uri[len(prefix):-len(suffix)])
    specs = archive.catalog.by_key
    assert all(specs[k].detector == 2 for k in keys)
    def d2(spec):
        return spec.detector == 2

    assert frames_containing(archive.catalog, *M101, 5, d2) <= keys \
        <= frames_containing(archive.catalog, *M101, -5, d2)
    # one POST to /TAP/sync, as pyvo does it
    assert [(r.method, r.path, r.status) for r in archive.log[n0:]] == [("POST", "/TAP/sync", 200)]


def test_tap_get_csv_and_maxrec_overflow(archive):
    r = requests.get(archive.tap_url + "/sync", params={
        "REQUEST": "doQuery", "LANG": "ADQL", "FORMAT": "csv",
        "QUERY": "SELECT TOP 5 planeid, energy_bandpassname FROM spherex.plane ORDER BY planeid"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["planeid", "energy_bandpassname"] and len(rows) == 6
    res = pyvo.dal.TAPService(archive.tap_url).search("SELECT planeid FROM spherex.plane",
                                                      maxrec=7)
    assert len(res) == 7 and res.query_status == "OVERFLOW"


def test_bad_adql_is_a_dal_query_error(archive):
    svc = pyvo.dal.TAPService(archive.tap_url)
    with pytest.raises(pyvo.dal.DALQueryError, match="nosuchcol"):
        svc.search("SELECT nosuchcol FROM spherex.plane")
    with pytest.raises(pyvo.dal.DALQueryError, match="parse"):
        svc.search("SELECT planeid FROM spherex.plane WHERE")
    r = requests.post(archive.tap_url + "/sync", data={"REQUEST": "doQuery", "LANG": "ADQL",
                                                       "QUERY": "SELECT FROM WHERE"})
    assert r.status_code == 400
    assert '<INFO name="QUERY_STATUS" value="ERROR">' in r.text


def test_vosi_tables_capabilities_availability(archive):
    svc = pyvo.dal.TAPService(archive.tap_url)
    assert svc.maxrec == 100000 and svc.hardlimit == 2000000
    tables = svc.tables
    assert {"spherex.plane", "spherex.artifact", "spherex.obscore"} <= set(tables.keys())
    cols = {c.name: c for c in tables["spherex.plane"].columns}
    assert cols["time_bounds_lower"].unit == "d"
    assert cols["poly"].datatype.content == "char"
    assert [c.name for c in tables["spherex.obscore"].columns][:3] == \
        ["s_ra", "s_dec", "facility_name"]
    avail = requests.get(archive.tap_url + "/availability")
    assert avail.status_code == 200 and "<avl:available>true</avl:available>" in avail.text


def _irsa_columns():
    with open(f"{SAMPLES}/sia2_m31_response.csv") as f:
        return f.readline().strip().split(",")


def test_sia2_through_pyvo(archive):
    table = pyvo.dal.SIA2Service(archive.sia_url).search(
        pos=(M101[0], M101[1], 1 / 3600), collection="spherex_qr2").to_table()
    assert table.colnames == _irsa_columns()
    keys = {url.split("/ibe/data/spherex/")[1] for url in table["access_url"]}
    def wide(spec):
        return spec.collection == "spherex_qr2"

    assert frames_containing(archive.catalog, *M101, 5, wide) <= keys \
        <= frames_containing(archive.catalog, *M101, -5, wide)
    assert set(table["obs_collection"]) == {"spherex_qr2"}
    assert table["s_ra"].unit == u.deg and table["t_min"].unit == u.day
    assert table["calib_level"].dtype == np.int16 and table["upload_row_id"].dtype == np.int64
    row = table[0]
    spec = archive.catalog.by_key[row["access_url"].split("/ibe/data/spherex/")[1]]
    assert row["access_url"] == f"{archive.url}/ibe/data/spherex/{spec.key}"
    assert (row["em_min"], row["em_max"], row["em_res_power"]) == EM_RANGES[spec.detector]
    assert (row["t_min"], row["t_max"]) == (spec.mjd_beg, spec.mjd_end)
    assert row["obs_publisher_did"] == f"ivo://irsa.ipac/spherex_qr2?{spec.obsid}/D{spec.detector}"
    # target_name is the file's SPS_TARGET, as in IRSA's rows ('SPS_87514')
    cutout = requests.get(f"{row['access_url']}?center={row['s_ra']},{row['s_dec']}&size=0.005")
    with fits.open(io.BytesIO(cutout.content)) as hdul:
        hdr = hdul["IMAGE"].header
        assert (hdr["OBSID"], hdr["DETECTOR"]) == (row["obs_id"], spec.detector)
        assert row["target_name"] == f"SPS_{hdr['SPS_TARGET']}"
    assert json.loads(row["cloud_access"]) == {"aws": {
        "bucket_name": "nasa-irsa-spherex", "key": spec.key, "region": "us-east-1"}}
    # the footprint's first vertex is repeated at the end, as in IRSA's s_region
    coords = row["s_region"].split()[2:]
    assert row["s_region"].startswith("POLYGON ICRS ") and len(coords) == 10
    assert coords[:2] == coords[-2:]


def test_sia2_through_astroquery(archive):
    from astroquery.ipac.irsa import IrsaClass

    irsa = IrsaClass()
    irsa.sia_url, irsa.tap_url = archive.sia_url, archive.tap_url
    pos = SkyCoord(M101[0], M101[1], unit="deg")
    table = irsa.query_sia(pos=(pos, 2 * u.arcsec), collection="spherex_qr2")
    assert len(table) > 100 and set(table["energy_bandpassname"]) == {
        f"SPHEREx-D{d}" for d in range(1, 7)}
    tap = irsa.query_tap(TUTORIAL).to_table()
    assert {u_ for u_ in tap["uri"] if "/spherex/qr2/" in u_} <= {
        f"https://irsa.ipac.caltech.edu/ibe/data/spherex/{k}?center=210.80227,54.34895d&size=0.1"
        for k in (u_.split("/ibe/data/spherex/")[1] for u_ in table["access_url"])}


def test_sia2_error_document_is_irsas(archive):
    r = requests.get(archive.sia_url, params={"POS": "CIRCLE 210.8 95 0.1",
                                              "COLLECTION": "spherex_qr2"})
    assert r.status_code == 400
    with open(f"{SAMPLES}/sia2_error_response.xml", "rb") as f:
        assert r.content == f.read()
    with pytest.raises(pyvo.dal.DALQueryError, match="COLLECTION"):
        pyvo.dal.SIA2Service(archive.sia_url).search(pos=(M101[0], M101[1], 0.01))


def test_sia2_collections(archive):
    def count(**params):
        r = requests.get(archive.sia_url, params={"RESPONSEFORMAT": "csv", **params})
        assert r.status_code == 200, r.text
        return list(csv.DictReader(io.StringIO(r.text)))

    deep = [s for s in archive.catalog.specs if s.collection == "spherex_qr2_deep"]
    assert deep, "the observation plan has a deep field"
    ra, dec = deep[0].ra, deep[0].dec
    pos = f"CIRCLE {ra} {dec} 0.01"
    n_wide = len(count(POS=pos, COLLECTION="spherex_qr2"))
    n_deep = len(count(POS=pos, COLLECTION="spherex_qr2_deep"))
    both = count(POS=pos, COLLECTION=["spherex_qr2", "spherex_qr2_deep"])
    assert n_deep > 0 and len(both) == n_wide + n_deep
    assert count(POS=pos, COLLECTION="spherex_qr9") == []            # unknown: empty, no error
    # FORMAT constrains the file's MIME type (RESPONSEFORMAT chooses the answer's format)
    assert len(count(POS=pos, COLLECTION="spherex_qr2", FORMAT="image/fits")) == n_wide
    assert count(POS=pos, COLLECTION="spherex_qr2", FORMAT="text/plain") == []


def test_sia2_csv_keeps_cloud_access_json(archive):
    r = requests.get(archive.sia_url, params={"POS": f"CIRCLE {M101[0]} {M101[1]} 0.001",
                                              "COLLECTION": "spherex_qr2", "MAXREC": "3",
                                              "RESPONSEFORMAT": "csv"})
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == _irsa_columns() and len(rows) == 4
    assert all(len(row) == 51 for row in rows)
    key = rows[1][15].split("/ibe/data/spherex/")[1]
    assert rows[1][48] == ('{"aws": {"bucket_name": "nasa-irsa-spherex", "key":"' + key
                           + '", "region": "us-east-1"}}')


@pytest.mark.slow
def test_sia2_band_time_and_shapes(archive):
    def keys(**params):
        res = pyvo.dal.SIA2Service(archive.sia_url).search(collection="spherex_qr2", **params)
        return {url.split("/ibe/data/spherex/")[1] for url in res.to_table()["access_url"]}

    around = keys(pos=(M101[0], M101[1], 0.5))
    d3 = keys(pos=(M101[0], M101[1], 0.5), band=(1.8e-6, 2.0e-6))
    assert d3 and {archive.catalog.by_key[k].detector for k in d3} == {3}
    t0 = min(archive.catalog.by_key[k].mjd_beg for k in around)
    early = keys(pos=(M101[0], M101[1], 0.5),
                 time=(Time(t0 - 0.01, format="mjd"), Time(t0 + 1.0, format="mjd")))
    assert early and all(archive.catalog.by_key[k].mjd_beg <= t0 + 1.0 for k in early)
    assert early < around
    box = keys(pos=(M101[0] - 0.2, M101[0] + 0.2, M101[1] - 0.1, M101[1] + 0.1))   # RANGE
    poly = keys(pos=(M101[0] - 0.2, M101[1] - 0.1, M101[0] + 0.2, M101[1] - 0.1,
                     M101[0], M101[1] + 0.1))                                           # POLYGON
    point = keys(pos=(M101[0], M101[1], 1e-4))
    assert point <= poly <= box <= around


@pytest.mark.slow
def test_sia2_across_ra_zero_and_in_the_deep_field(archive):
    ra0, dec0 = TARGETS["RA0"]
    t_start, t_stop = 60796.0, 60860.0       # the deep field is visited all year; take 2 months
    cases = [(0.0, dec0, "spherex_qr2", None), (359.9, dec0 + 0.5, "spherex_qr2", None),
             (ra0, dec0, "spherex_qr2", None), (*TARGETS["NEP"], "spherex_qr2_deep", t_stop)]
    for ra, dec, collection, stop in cases:
        time = None if stop is None else (Time(t_start, format="mjd"), Time(stop, format="mjd"))
        table = pyvo.dal.SIA2Service(archive.sia_url).search(
            pos=(ra, dec, 1 / 3600), collection=collection, time=time).to_table()
        keys = {url.split("/ibe/data/spherex/")[1] for url in table["access_url"]}

        def chosen(spec, collection=collection, stop=stop):
            return spec.collection == collection and (stop is None or spec.mjd_beg < stop)

        inner = frames_containing(archive.catalog, ra, dec, 5, chosen)
        assert inner and inner <= keys <= frames_containing(archive.catalog, ra, dec, -5, chosen)


# --- QR3 and pipeline-7 reprocessings --------------------------------------------------------


def _real_qr3_rows():
    with open(f"{SAMPLES}/r7/qr3_sia_csv_rows_m31.csv") as f:
        return f.read().splitlines()


def test_sia2_repeated_collection_returns_qr2_and_qr3(archive):
    def rows(*collections):
        r = requests.get(archive.sia_url, params={
            "POS": f"CIRCLE {M101[0]} {M101[1]} 0.0003", "COLLECTION": list(collections),
            "RESPONSEFORMAT": "csv"})
        assert r.status_code == 200, r.text
        return list(csv.DictReader(io.StringIO(r.text)))

    qr2, qr3 = rows("spherex_qr2"), rows("spherex_qr3")
    both = rows("spherex_qr2", "spherex_qr3")
    assert qr2 and qr3 and len(both) == len(qr2) + len(qr3)
    assert {r["obs_collection"] for r in both} == {"spherex_qr2", "spherex_qr3"}
    # QR3 rows look like IRSA's: paths, ids, sizes, target names, release dates
    header = _real_qr3_rows()[0].split(",")
    assert list(qr3[0]) == header
    for row in qr3:
        key = row["access_url"].split("/ibe/data/spherex/")[1]
        assert key.startswith("qr3/level2/") and "/l2b" in key and "-v27-2026-" in key
        assert row["obs_publisher_did"] == \
            f"ivo://irsa.ipac/spherex_qr3?{row['obs_id']}/D{row['energy_bandpassname'][-1]}"
        assert 65440 <= int(row["access_estsize"]) <= 65961
        assert row["target_name"].startswith("SPS_") and row["target_name"].endswith("_S34")
        assert row["obs_release_date"] >= "2026-09-15"
        spec = archive.catalog.by_key[key]
        assert spec.pipeline7 and json.loads(row["cloud_access"])["aws"]["key"] == key
    # QR2 holds the pipeline-7 reprocessings beside the originals, under the same ids
    tags = {r["access_url"].split("/")[-3] for r in qr2}
    assert any(t.startswith("l2b-v21-") for t in tags) and "l2b-v26-2026-196" in tags
    dids = [r["obs_publisher_did"] for r in qr2]
    assert len(set(dids)) < len(dids)
    estsizes = {r["access_url"].split("/")[-3][:7]: int(r["access_estsize"]) for r in qr2}
    assert estsizes["l2b-v21"] == 71638 and 65440 <= estsizes["l2b-v26"] <= 65961


def test_tap_observation_collection_tells_wide_deep_and_releases(archive):
    svc = pyvo.dal.TAPService(archive.tap_url)
    counts = svc.search(
        "SELECT o.collection, COUNT(*) AS n FROM spherex.artifact a "
        "JOIN spherex.plane p ON a.planeid = p.planeid "
        "JOIN spherex.observation o ON o.obsid = p.obsid GROUP BY o.collection").to_table()
    got = {str(c): int(n) for c, n in zip(counts["collection"], counts["n"])}
    expected = {}
    for s in archive.catalog.specs:
        expected[s.collection] = expected.get(s.collection, 0) + 1
    assert got == expected
    assert set(got) == {"spherex_qr2", "spherex_qr2_deep", "spherex_qr3", "spherex_qr3_deep"}
    # the artifact path alone cannot tell wide from deep; the join can
    deep = svc.search(
        "SELECT a.uri FROM spherex.artifact a JOIN spherex.plane p ON a.planeid = p.planeid "
        "JOIN spherex.observation o ON o.obsid = p.obsid "
        "WHERE o.collection = 'spherex_qr3_deep' AND p.energy_bandpassname = 'SPHEREx-D4'"
    ).to_table()
    assert len(deep) > 0
    for uri in deep["uri"]:
        spec = archive.catalog.by_key[str(uri)[len("ibe/data/spherex/"):]]
        assert spec.collection == "spherex_qr3_deep" and spec.detector == 4
