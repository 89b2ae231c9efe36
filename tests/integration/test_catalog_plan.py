"""TAP_UPLOAD in the local archive (through pyvo, as IRSA is asked) and catalog planning:
one upload query per batch gives, per source, exactly the images ``query_region`` finds."""

import http.client
import io

import numpy as np
import pytest
import pyvo
import requests
from astropy.table import Table

from glue_spherex.errors import SpherexInputError
from glue_spherex.irsa import SpherexClass, plan_catalog
from glue_spherex.irsa.catalog_plan import PLAN_COLUMNS
from glue_spherex.local_archive.server import MAX_UPLOAD_BYTES
from glue_spherex.local_archive.synthetic.sky import TARGETS
from glue_spherex.local_archive.tap import MAX_UPLOAD_ROWS

M101 = TARGETS["M101"]


def _tap(archive):
    return pyvo.dal.TAPService(archive.tap_url)


# -- TAP_UPLOAD -----------------------------------------------------------------------------

def test_capabilities_announce_inline_uploads(archive):
    methods = [m.ivo_id for m in _tap(archive).upload_methods]
    assert "ivo://ivoa.net/std/TAPRegExt#upload-inline" in methods


def test_uploaded_table_is_queried_as_sent(archive):
    cat = Table({"idx": np.array([0, 1, 2], dtype=np.int64), "Name": ["a", "b", "c"],
                 "ra": [210.8, 10.0, 0.0], "dec": [54.35, -4.5, 0.0]})
    out = _tap(archive).run_sync(
        "SELECT u.idx, u.name, u.ra FROM TAP_UPLOAD.cat AS u WHERE u.ra > 5 ORDER BY u.idx",
        uploads={"cat": cat}).to_table()
    assert list(out["idx"]) == [0, 1]
    assert list(out["name"]) == ["a", "b"]
    assert list(out["ra"]) == [210.8, 10.0]


def test_upload_joins_footprints_and_lives_for_one_query_only(archive):
    tap = _tap(archive)
    cat = Table({"idx": [7], "ra": [M101[0]], "dec": [M101[1]]})
    joined = tap.run_sync(
        "SELECT u.idx, p.obs_publisher_did FROM TAP_UPLOAD.cat u JOIN spherex.plane p "
        "ON 1 = CONTAINS(POINT('ICRS', u.ra, u.dec), p.poly)", uploads={"cat": cat}).to_table()
    single = tap.run_sync(
        f"SELECT p.obs_publisher_did FROM spherex.plane p WHERE "
        f"1 = CONTAINS(POINT('ICRS', {M101[0]!r}, {M101[1]!r}), p.poly)").to_table()
    assert len(joined) > 0 and set(joined["idx"]) == {7}
    assert sorted(joined["obs_publisher_did"]) == sorted(single["obs_publisher_did"])
    with pytest.raises(pyvo.dal.DALQueryError, match="tap_upload.cat' does not exist"):
        tap.run_sync("SELECT * FROM TAP_UPLOAD.cat")


@pytest.mark.parametrize("upload, match", [
    ("cat,param:other", "the request has no part 'other'"),
    ("cat,http://example.org/t.xml", "only inline uploads"),
    ("1cat,param:cat", "not an ADQL identifier"),
])
def test_bad_upload_parameter_is_one_error_line(archive, upload, match):
    buf = io.BytesIO()
    Table({"x": [1]}).write(buf, format="votable")
    r = requests.post(archive.tap_url + "/sync",
                      data={"REQUEST": "doQuery", "LANG": "ADQL", "UPLOAD": upload,
                            "QUERY": "SELECT * FROM TAP_UPLOAD.cat"},
                      files={"cat": ("cat", buf.getvalue())}, timeout=30)
    assert r.status_code == 400
    assert match in r.text.split('value="ERROR">', 1)[1].split("</INFO>", 1)[0]


def test_unreadable_votable_is_refused(archive):
    r = requests.post(archive.tap_url + "/sync",
                      data={"REQUEST": "doQuery", "LANG": "ADQL", "UPLOAD": "cat,param:cat",
                            "QUERY": "SELECT * FROM TAP_UPLOAD.cat"},
                      files={"cat": ("cat", b"<VOTABLE><oops")}, timeout=30)
    assert r.status_code == 400 and "not a readable VOTable" in r.text


def test_too_many_rows_refused_clearly(archive):
    cat = Table({"i": np.arange(MAX_UPLOAD_ROWS + 1, dtype=np.int32)})
    with pytest.raises(pyvo.dal.DALQueryError, match=r"200,001 rows.*at most 200,000"):
        _tap(archive).run_sync("SELECT COUNT(*) FROM TAP_UPLOAD.big", uploads={"big": cat})


def test_too_large_body_refused_before_it_is_read(archive):
    con = http.client.HTTPConnection("127.0.0.1", archive.port, timeout=30)
    con.putrequest("POST", "/TAP/sync")
    con.putheader("Content-Type", "multipart/form-data; boundary=xyz")
    con.putheader("Content-Length", str(MAX_UPLOAD_BYTES + 1))
    con.endheaders()
    con.send(b"--xyz\r\n")
    r = con.getresponse()
    body = r.read().decode()
    con.close()
    assert r.status == 413
    assert "50,000,000 bytes" in body


# -- planning ---------------------------------------------------------------------------------

SOURCES = Table({
    "name": ["m101", "m101_ne", "m31", "ra0", "nep", "nowhere"],
    "ra": [M101[0], M101[0] + 0.5, TARGETS["M31"][0], TARGETS["RA0"][0] + 0.2,
           TARGETS["NEP"][0], 120.0],
    "dec": [M101[1], M101[1] + 0.3, TARGETS["M31"][1], TARGETS["RA0"][1] - 0.1,
            TARGETS["NEP"][1], -60.0],
})


@pytest.mark.parametrize("kwargs", [
    dict(bandpass="D2"),
    dict(release="all", bandpass=["D1", "D5"]),
    dict(release="qr3", collection="both"),
    dict(collection="both", bandpass="D3", time=(60796.0, 60900.0)),
])
def test_plan_equals_query_region_per_source(archive, kwargs):
    arch = SpherexClass(archive.url)
    plan = plan_catalog(SOURCES, archive=arch, batch_size=4, **kwargs)
    assert tuple(plan.colnames) == PLAN_COLUMNS
    assert plan.meta["batches"] == 2 and plan.meta["rejected"] == 0
    assert len(plan) > 0
    for name, ra, dec in SOURCES:
        expected = arch.query_region((ra, dec), **kwargs)
        got = plan[plan["source_id"] == name]
        assert sorted(got["access_url"]) == sorted(expected["access_url"]), name
        by_url = {r["access_url"]: r for r in expected}
        for row in got:
            ref = by_url[row["access_url"]]
            assert (row["obs_id"], row["detector"], row["version"], row["release"]) == \
                (ref["obs_id"], ref["detector"], ref["version"], ref["release"])
            assert row["t_min"] == ref["t_min"]
            assert row["access_url"] == f"{archive.url}/ibe/data/spherex/{row['s3_key']}"
            assert (row["ra"], row["dec"]) == (ra, dec)
    assert len(plan[plan["source_id"] == "nowhere"]) == 0
    # image-major: the rows of one file are together
    urls = list(plan["access_url"])
    assert urls == sorted(urls)


def test_one_batch_gives_the_same_plan(archive):
    arch = SpherexClass(archive.url)
    a = plan_catalog(SOURCES, archive=arch, bandpass="D4", batch_size=1)
    b = plan_catalog(SOURCES, archive=arch, bandpass="D4")
    assert a.meta["batches"] == len(SOURCES) and b.meta["batches"] == 1
    assert list(a["source_id"]) == list(b["source_id"])
    assert list(a["access_url"]) == list(b["access_url"])


def test_rejected_rows_are_left_out_and_counted(archive):
    cat = Table({"id": ["ok", "bad", "ok"], "ra": [M101[0], 400.0, M101[0]],
                 "dec": [M101[1], 0.0, M101[1]]})
    plan = plan_catalog(cat, archive=SpherexClass(archive.url), bandpass="D1")
    assert plan.meta["rejected"] == 2 and plan.meta["sources"] == 1
    assert set(plan["source_id"]) == {"ok"}


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "batch_size"),
    (dict(batch_size=300_000), "batch_size"),
    (dict(bandpass="D9"), "bandpass"),
    (dict(versions="some"), "versions"),
])
def test_bad_options_are_one_line_input_errors(archive, kwargs, match):
    with pytest.raises(SpherexInputError, match=match):
        plan_catalog(SOURCES, archive=SpherexClass(archive.url), **kwargs)


def test_a_batch_cut_at_the_row_limit_is_asked_again_in_halves(archive, monkeypatch):
    from glue_spherex.errors import SpherexServiceError
    from glue_spherex.irsa import catalog_plan

    arch = SpherexClass(archive.url)
    every = dict(bandpass="D2", release="all", versions="all")   # plan rows = answer rows
    whole = plan_catalog(SOURCES, archive=arch, **every)
    most = max(int((whole["source_id"] == n).sum()) for n in SOURCES["name"])
    assert len(whole) > most > 0
    monkeypatch.setattr(catalog_plan, "MAX_PLAN_ROWS", most)   # the archive's MAXREC
    n0 = len(archive.log)
    split = plan_catalog(SOURCES, archive=arch, **every)
    asked = [r for r in archive.log[n0:] if r.path == "/TAP/sync"]
    assert split.meta["batches"] > 1 and len(asked) > split.meta["batches"]
    assert list(split["source_id"]) == list(whole["source_id"])
    assert list(split["access_url"]) == list(whole["access_url"])
    monkeypatch.setattr(catalog_plan, "MAX_PLAN_ROWS", most - 1)
    with pytest.raises(SpherexServiceError, match="truncated the plan of 1 sources"):
        plan_catalog(SOURCES, archive=arch, **every)
