"""The astroquery-style query API: validation, configuration, name resolution, TAP and SIA2.

Queries run against the local archive (a real HTTP server evaluating the ADQL with a SQL
engine); results are checked against each other (TAP vs SIA2, filtered vs unfiltered) and
against the archive's request log, not against numbers copied from the implementation.
"""


import astropy.units as u
import pytest
from astropy.coordinates import SkyCoord
from astropy.coordinates.name_resolve import sesame_url
from astropy.time import Time
from sesame_standin import sesame_standin

from glue_spherex.errors import SpherexInputError, SpherexServiceError
from glue_spherex.irsa.config import ENV_ARCHIVE_URL, IRSA_URL, conf, settings
from glue_spherex.irsa.core import (
    COLUMNS,
    Spherex,
    SpherexClass,
    build_adql,
    parse_bandpasses,
    parse_collection,
    parse_size,
    parse_time,
)
from glue_spherex.irsa.resolve import resolve_target

M101 = (210.80227, 54.34895)

# -- validation (no network) ------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    ("D2", (2,)), ("d2", (2,)), ("SPHEREx-D2", (2,)), ("spherex-d5", (5,)), (2, (2,)),
    (["D3", "SPHEREx-D1", 3], (1, 3)), (None, (1, 2, 3, 4, 5, 6)),
])
def test_bandpass_forms(value, expected):
    assert parse_bandpasses(value) == expected


@pytest.mark.parametrize("value", ["D7", "D0", 7, "D2' OR '1'='1", "SPHEREx-D2; DROP", "",
                                   True, [], "2.5"])
def test_bad_bandpass_is_named_in_one_line(value):
    with pytest.raises(SpherexInputError) as info:
        parse_bandpasses(value)
    message = str(info.value)
    assert "\n" not in message
    assert "D1-D6" in message


@pytest.mark.parametrize("value, param", [
    ("0.1deg", "0.1"), ("6arcmin", "0.1"), ("36arcsec", "0.01"), ("60px", "60px"),
    (0.1 * u.deg, "0.1"), (60 * u.pix, "60px"), (0.05, "0.05"), ("0.2", "0.2"),
])
def test_size_forms(value, param):
    assert parse_size(value).param == param


@pytest.mark.parametrize("value", ["-0.1deg", 0, -3 * u.arcmin, "1.5px", "5deg", "3 kg",
                                   5 * u.kg, float("nan"), "abc", None])
def test_bad_size(value):
    with pytest.raises(SpherexInputError) as info:
        parse_size(value)
    assert "\n" not in str(info.value)


def test_time_forms():
    assert parse_time((61000, 61001.5)) == (61000.0, 61001.5)
    t = Time(["2025-12-01T00:00:00", "2025-12-02T00:00:00"])
    assert parse_time((t[0], t[1])) == pytest.approx((t[0].mjd, t[1].mjd))
    assert parse_time(t) == pytest.approx((t[0].mjd, t[1].mjd))
    for bad in [(2, 1), (1, 1), (1,), "61000", (float("inf"), 1), ("x", 2)]:
        with pytest.raises(SpherexInputError):
            parse_time(bad)


def test_collection_and_via():
    assert parse_collection("both") == ("spherex_qr2", "spherex_qr2_deep")
    with pytest.raises(SpherexInputError, match="wide, deep or both"):
        parse_collection("spherex_qr2' OR 1=1 --")
    with pytest.raises(SpherexInputError, match="tap or sia"):
        SpherexClass("http://127.0.0.1:9").query_region(M101, via="ftp")


@pytest.mark.parametrize("ra, dec", [(10, 95), (10, -90.5), (400, 0), (float("nan"), 0)])
def test_bad_position(ra, dec):
    with pytest.raises(SpherexInputError) as info:
        resolve_target((ra, dec))
    assert "\n" not in str(info.value)


def test_adql_only_from_whitelisted_values():
    adql = build_adql(*M101, (2, 5), ("spherex_qr2",), (61000.0, 61010.0))
    assert "'SPHEREx-D2', 'SPHEREx-D5'" in adql
    assert "POINT('ICRS', 210.80227, 54.34895)" in adql
    # anything not produced by the validators is refused, not quoted into the query
    with pytest.raises(SpherexInputError):
        build_adql(*M101, ("2' OR '1'='1",), ("spherex_qr2",))
    with pytest.raises(SpherexInputError):
        build_adql(*M101, (2,), ("spherex_qr2'--",))
    with pytest.raises((SpherexInputError, ValueError)):
        build_adql("210 OR 1=1", 54, (2,), ("spherex_qr2",))


# -- configuration ----------------------------------------------------------------------------


def test_settings_precedence(monkeypatch):
    monkeypatch.delenv(ENV_ARCHIVE_URL, raising=False)
    assert settings().archive_url == IRSA_URL
    assert settings().tap_url == IRSA_URL + "/TAP"
    with conf.set_temp("archive_url", "http://127.0.0.1:1234/"):
        s = settings()
        assert s.archive_url == "http://127.0.0.1:1234"
        assert s.sia_url == "http://127.0.0.1:1234/SIA"
        monkeypatch.setenv(ENV_ARCHIVE_URL, "http://127.0.0.1:5678")
        assert settings().archive_url == "http://127.0.0.1:5678"
        assert settings(archive_url="http://127.0.0.1:9999").tap_url == "http://127.0.0.1:9999/TAP"
    monkeypatch.delenv(ENV_ARCHIVE_URL)
    with conf.set_temp("tap_url", "http://127.0.0.1:1/tap"):
        assert settings().tap_url == "http://127.0.0.1:1/tap"
        # an explicit archive moves every service with it
        assert settings(archive_url="http://127.0.0.1:2").tap_url == "http://127.0.0.1:2/TAP"
    with conf.set_temp("workers", 3):
        assert settings().workers == 3
        assert settings(workers=5).workers == 5


@pytest.mark.parametrize("kwargs", [
    dict(archive_url="ftp://x"), dict(archive_url="irsa"), dict(archive_url="http://h/?q=1"),
    dict(workers=0), dict(workers=65), dict(workers=2.5), dict(max_retries=-1),
    dict(timeout=0), dict(timeout=(1, 2, 3)), dict(timeout="fast"),
])
def test_bad_settings(kwargs):
    with pytest.raises(SpherexInputError):
        settings(**kwargs)


# -- name resolution --------------------------------------------------------------------------

# Sesame's plain-text answers (the format astropy's resolver reads: a "%J ra dec" line);
# coordinates as in CDS's answer for M31.
SESAME_M31 = """# M31	#Q8371913
#=S=Simbad (CDS, via client/server):    1
%@ 1575544
%I.0 M  31
%C.0 AGN
%J 10.68470833 +41.26875000 = 00:42:44.33 +41:16:07.5
%J.E [1.0 1.0 0] 2006AJ....131.1163S

#====Done (2026-Sep-28,05:15:40z)====
"""

@pytest.fixture
def sesame():
    """Sesame on 127.0.0.1, answering with a real document for M31."""
    with sesame_standin({"M31": SESAME_M31}):
        yield


def test_name_resolved_by_sesame(sesame):
    coord = resolve_target("M31")
    assert coord.ra.deg == pytest.approx(10.68470833)
    assert coord.dec.deg == pytest.approx(41.26875)


def test_unknown_name(sesame):
    with pytest.raises(SpherexInputError, match="unknown target 'NotARealObjectXYZ'"):
        resolve_target("NotARealObjectXYZ")


def test_unreachable_resolver_says_so():
    # port 9 on loopback: nothing listens, so the connection is refused at once
    with sesame_url.set(["http://127.0.0.1:9/sesame/"]), \
            pytest.raises(SpherexServiceError) as info:
        resolve_target("M101")
    assert str(info.value).startswith("could not resolve 'M101': name resolver unreachable")


def test_coordinates_need_no_resolver():
    with sesame_url.set(["http://127.0.0.1:9/sesame/"]):
        assert resolve_target("210.80227 54.34895").ra.deg == pytest.approx(210.80227)
        c = resolve_target("14h03m12.5448s +54d20m56.22s")
        assert c.separation(SkyCoord(*M101, unit="deg")).arcsec < 0.1
        assert resolve_target(SkyCoord(*M101, unit="deg").galactic).ra.deg == \
            pytest.approx(M101[0])


# -- against the local archive ----------------------------------------------------------------


@pytest.fixture(scope="module")
def m101_all(archive):
    return SpherexClass(archive.url).query_region(M101, size=0.1 * u.deg)


def test_table_layout(m101_all, archive):
    t = m101_all
    assert tuple(t.colnames) == COLUMNS
    assert len(t) > 0
    assert list(t["cutout_index"]) == list(range(1, len(t) + 1))
    assert all(t["t_min"][:-1] <= t["t_min"][1:])
    assert all(t["t_max"] > t["t_min"])
    assert t["t_min"].unit == u.d and t["em_min"].unit == u.um
    for row in t:
        assert row["access_url"].startswith(archive.url + "/ibe/data/spherex/qr2/level2/")
        assert row["cutout_url"] == (f"{row['access_url']}?center=210.80227000,54.34895000"
                                     "&size=0.1")
        assert row["bandpass"] == f"SPHEREx-D{row['detector']}"
        assert row["obs_id"] in row["access_url"]
        assert row["collection"] == "spherex_qr2"
        assert row["em_min"] < row["em_max"]
    # every detector images M101 (the plan visits it in all six bands)
    assert set(t["detector"]) == {1, 2, 3, 4, 5, 6}
    # detector wavelength ranges go up with the detector number (µm, not metres)
    ranges = {d: (t["em_min"][t["detector"] == d][0], t["em_max"][t["detector"] == d][0])
              for d in range(1, 7)}
    assert 0.7 < ranges[1][0] < ranges[2][0] < ranges[6][0] < ranges[6][1] < 5.1


def test_bandpass_filter_matches_unfiltered(m101_all, archive):
    t = SpherexClass(archive.url).query_region(M101, bandpass=["D2", "SPHEREx-D5"])
    expected = sorted(m101_all["obs_id"][(m101_all["detector"] == 2)
                                         | (m101_all["detector"] == 5)])
    assert sorted(t["obs_id"]) == expected
    assert set(t["bandpass"]) == {"SPHEREx-D2", "SPHEREx-D5"}


def test_time_filter_matches_unfiltered(m101_all, archive):
    mid = sorted(m101_all["t_min"])[len(m101_all) // 2]
    window = (mid - 0.5, mid + 3.0)
    t = SpherexClass(archive.url).query_region(M101, time=window)
    keep = (m101_all["t_max"] >= window[0]) & (m101_all["t_min"] <= window[1])
    assert 0 < len(t) < len(m101_all)
    assert sorted(t["obs_id"] + t["bandpass"]) == sorted(
        m101_all["obs_id"][keep] + m101_all["bandpass"][keep])


def test_tap_and_sia_agree(archive):
    q = SpherexClass(archive.url)
    tap = q.query_region(M101, bandpass="D2", collection="both")
    sia = q.query_region(M101, bandpass="D2", collection="both", via="sia")
    key = ("obs_id", "detector", "collection", "access_url", "cutout_url")
    assert len(tap) > 0
    assert sorted(tuple(r[k] for k in key) for r in tap) == \
        sorted(tuple(r[k] for k in key) for r in sia)
    assert all(a == pytest.approx(b) for a, b in zip(sorted(tap["t_min"]), sorted(sia["t_min"])))
    # only SIA2 gives cloud_access; its key is the file's path below /ibe/data/spherex/
    assert set(tap["cloud_access"]) == {""}
    for row in sia:
        key = row["access_url"].split("/ibe/data/spherex/")[1]
        assert f'"key":"{key}"' in row["cloud_access"]


def test_collections(archive):
    q = SpherexClass(archive.url)
    wide = q.query_region(M101, bandpass="D3")
    deep = q.query_region(M101, bandpass="D3", collection="deep")
    both = q.query_region(M101, bandpass="D3", collection="both")
    assert set(wide["collection"]) <= {"spherex_qr2"}
    assert set(deep["collection"]) <= {"spherex_qr2_deep"}
    assert len(both) == len(wide) + len(deep)


def test_pixel_size_in_url(archive):
    t = SpherexClass(archive.url).query_region(M101, size=60 * u.pix, bandpass=2)
    assert all(url.endswith("&size=60px") for url in t["cutout_url"])


def test_injection_attempt_never_reaches_the_service(archive):
    before = len(archive.log)
    with pytest.raises(SpherexInputError):
        SpherexClass(archive.url).query_region(M101, bandpass="D2' OR '1'='1")
    with pytest.raises(SpherexInputError):
        SpherexClass(archive.url).query_region((M101[0], 95.0))
    assert len(archive.log) == before


def test_module_instance_follows_environment(archive, monkeypatch):
    monkeypatch.setenv(ENV_ARCHIVE_URL, archive.url)
    t = Spherex.query_region(SkyCoord(*M101, unit="deg"), bandpass="D2")
    assert len(t) > 0 and t["access_url"][0].startswith(archive.url)


def test_unreachable_service_is_a_service_error():
    # nothing listens on port 9 of loopback
    with pytest.raises(SpherexServiceError, match="TAP query to http://127.0.0.1:9/TAP failed"):
        SpherexClass("http://127.0.0.1:9").query_region(M101)
    with pytest.raises(SpherexServiceError, match="SIA query"):
        SpherexClass("http://127.0.0.1:9").query_region(M101, via="sia")


# -- releases and processing versions -----------------------------------------------------------


def test_release_and_version_choices_are_validated():
    from glue_spherex.irsa.core import parse_release

    assert parse_release("QR3") == "qr3" and parse_release(" all ") == "all"
    with pytest.raises(SpherexInputError, match="give qr2, qr3 or all"):
        parse_release("qr4")
    assert parse_collection("wide", "qr2") == ("spherex_qr2",)
    assert parse_collection("both", "qr3") == ("spherex_qr2", "spherex_qr2_deep", "spherex_qr3",
                                               "spherex_qr3_deep")
    with pytest.raises(SpherexInputError, match="versions"):
        SpherexClass("http://127.0.0.1:9").query_region(M101, versions="latest")


def test_version_key_orders_versions_then_retries_then_dates():
    from glue_spherex.irsa.core import version_key

    tags = ["l2b-v27-2026-240", "l2b-v21-2025-300", "l2b_retry-v26-2026-203",
            "l2b-v26-2026-196", "l2b-v26-2026-250", "l2b_retry-v27-2026-223", "", "weird"]
    assert sorted(tags, key=version_key) == [
        "", "weird", "l2b-v21-2025-300", "l2b-v26-2026-196", "l2b-v26-2026-250",
        "l2b_retry-v26-2026-203", "l2b-v27-2026-240", "l2b_retry-v27-2026-223"]


@pytest.fixture(scope="module")
def m101_d2_versions(archive):
    q = SpherexClass(archive.url)
    return {(rel, v): q.query_region(M101, bandpass="D2", collection="both", release=rel,
                                     versions=v)
            for rel in ("qr2", "qr3", "all") for v in ("newest", "all")}


def test_release_qr2_gives_only_the_pipeline_6_files(m101_d2_versions, archive):
    t = m101_d2_versions[("qr2", "newest")]
    assert len(t) > 0 and tuple(t.colnames) == COLUMNS
    assert set(t["release"]) == {"qr2"}
    assert all(v.startswith("l2b-v21-") for v in t["version"])
    for url in t["access_url"]:
        spec = archive.catalog.by_key[url.split("/ibe/data/spherex/")[1]]
        assert not spec.pipeline7 and spec.tag == ""
    # nothing to deduplicate among them: 'all' versions is the same table
    assert list(t["access_url"]) == list(m101_d2_versions[("qr2", "all")]["access_url"])


def test_newest_version_per_exposure_with_retry_breaking_ties(m101_d2_versions, archive):
    from glue_spherex.irsa.core import version_key

    for rel in ("qr3", "all"):
        every, newest = m101_d2_versions[(rel, "all")], m101_d2_versions[(rel, "newest")]
        groups = {}
        for row in every:
            groups.setdefault((row["obs_id"], row["detector"]), []).append(str(row["version"]))
        assert len(newest) == len(groups) < len(every)
        chosen = {(r["obs_id"], r["detector"]): str(r["version"]) for r in newest}
        assert chosen == {g: max(v, key=version_key) for g, v in groups.items()}
        for row in newest:
            spec = archive.catalog.by_key[row["access_url"].split("/ibe/data/spherex/")[1]]
            assert spec.version_tag == row["version"] and spec.release == row["release"]
            assert spec.pipeline7 == (rel == "qr3" or not row["version"].startswith("l2b-v21"))
    every = m101_d2_versions[("all", "all")]
    chosen = {(r["obs_id"], r["detector"]): str(r["version"])
              for r in m101_d2_versions[("all", "newest")]}
    versions = {}
    for row in every:
        versions.setdefault((row["obs_id"], row["detector"]), set()).add(str(row["version"]))
    # a QR2 exposure with a reprocessing: the pipeline-7 version wins over l2b-v21
    reprocessed = [g for g, v in versions.items() if "l2b-v26-2026-196" in v]
    assert reprocessed and all(chosen[g].startswith(("l2b-v26", "l2b_retry-v26")) for g in reprocessed)
    # the tie between a regular run and its retry of the same version goes to the retry
    tied = [g for g, v in versions.items() if {"l2b-v26-2026-196", "l2b_retry-v26-2026-203"} <= v]
    assert tied and all(chosen[g] == "l2b_retry-v26-2026-203" for g in tied)
    # QR3 rows: their own collections and paths
    qr3 = m101_d2_versions[("qr3", "newest")]
    assert {"spherex_qr3", "spherex_qr3_deep"} & set(qr3["collection"])
    assert all("/spherex/qr3/" in u_ for u_, r in zip(qr3["access_url"], qr3["release"])
               if r == "qr3")


def test_tap_and_sia_agree_on_releases(archive):
    q = SpherexClass(archive.url)
    for rel in ("qr3", "all"):
        tap = q.query_region(M101, bandpass="D4", release=rel)
        sia = q.query_region(M101, bandpass="D4", release=rel, via="sia")
        key = ("obs_id", "detector", "collection", "access_url", "release", "version")
        assert len(tap) > 0
        assert [tuple(r[k] for k in key) for r in tap] == [tuple(r[k] for k in key) for r in sia]


@pytest.mark.slow
def test_cli_release_qr2_lists_only_todays_files(archive, tmp_path):
    import subprocess
    import sys

    from astropy.table import Table

    out = {}
    for rel in ("qr2", "qr3"):
        path = tmp_path / f"{rel}.ecsv"
        r = subprocess.run([sys.executable, "-m", "glue_spherex.cli", "query", "--ra", "210.80227",
                            "--dec", "54.34895", "-b", "D2", "--release", rel, "--archive",
                            archive.url, "-o", str(path)], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        assert f"release {rel}" in r.stdout
        out[rel] = Table.read(path)
    assert set(out["qr2"]["release"]) == {"qr2"}
    assert all(v.startswith("l2b-v21-") for v in out["qr2"]["version"])
    assert all(not v.startswith("l2b-v21-") for v in out["qr3"]["version"])
    assert set(out["qr2"]["access_url"]).isdisjoint(out["qr3"]["access_url"])


# -- a hostile TAP service ------------------------------------------------------------------------


def _hostile_cases():
    from hostile_tap import GOOD_ROW, TAP_FIELDS

    as_char = tuple((n, "char" if n == "time_bounds_lower" else t) for n, t in TAP_FIELDS)

    def with_cell(i, value):
        return [GOOD_ROW[:i] + (value,) + GOOD_ROW[i + 1:]]

    url = GOOD_ROW[0]
    return {
        "non-numeric": (as_char, with_cell(4, "abc"), "non-numeric time_bounds_lower 'abc'"),
        "bad double": (TAP_FIELDS, with_cell(4, "abc"), "time_bounds_lower"),
        "nan": (TAP_FIELDS, with_cell(6, "NaN"), "empty or NaN value for energy_bounds_lower"),
        "infinite": (TAP_FIELDS, with_cell(5, "Inf"), "time_bounds_upper"),
        "control character": (TAP_FIELDS, with_cell(0, url.replace("level2_", "lev\tel2_")),
                              "uri with control characters"),
        "200 kB URL": (TAP_FIELDS, with_cell(0, url.replace("level2_", "x" * 200_000 + "level2_")),
                       "uri 200110 characters long"),
        "unexpected id": (TAP_FIELDS, with_cell(1, "evil"), "unexpected obs_publisher_did"),
        "missing column": (TAP_FIELDS[:-1], [GOOD_ROW[:-1]], "no column energy_bounds_upper"),
        "not XML": (None, b"\x00\xff<VOTABLE", "TAP query to"),
    }


@pytest.mark.parametrize("case", list(_hostile_cases()))
def test_hostile_tap_answer_is_one_service_error(case):
    from hostile_tap import serve_votable, votable

    fields, rows, message = _hostile_cases()[case]
    body = rows if fields is None else votable(fields, rows)
    with serve_votable(body) as url, pytest.raises(SpherexServiceError, match=message) as info:
        SpherexClass(url).query_region(M101)
    text = str(info.value)
    assert "\n" not in text and len(text) < 400


@pytest.mark.slow
def test_hostile_tap_answer_exits_3_in_the_cli():
    import subprocess
    import sys

    from hostile_tap import GOOD_ROW, TAP_FIELDS, serve_votable, votable

    body = votable(TAP_FIELDS, [GOOD_ROW, GOOD_ROW[:6] + ("NaN",) + GOOD_ROW[7:]])
    with serve_votable(body) as url:
        for command in ("query", "fetch"):
            r = subprocess.run([sys.executable, "-m", "glue_spherex.cli", command, "--ra", "210.8",
                                "--dec", "54.3", "--archive", url], capture_output=True,
                               text=True, timeout=120)
            assert r.returncode == 3, (command, r.stderr)
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and "energy_bounds_lower (row 2)" in lines[0]
            assert "Traceback" not in r.stderr


def test_good_answer_from_the_same_server_is_accepted():
    from hostile_tap import GOOD_ROW, TAP_FIELDS, serve_votable, votable

    with serve_votable(votable(TAP_FIELDS, [GOOD_ROW])) as url:
        t = SpherexClass(url).query_region(M101)
    assert len(t) == 1 and t["version"][0] == "l2b-v21-2025-140" and t["release"][0] == "qr2"
    assert t["access_url"][0] == f"{url}/{GOOD_ROW[0]}"
