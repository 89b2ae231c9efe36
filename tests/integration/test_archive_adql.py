"""The archive's ADQL engine on a small hand-made table: SQL translation, geometry across RA=0
and at the poles, errors (no HTTP here; the pgsphere cross-check is test_archive_pgsphere)."""

import math

import pytest

from glue_spherex.local_archive.adql import AdqlEngine, AdqlError, clean_message


def _poly(*coords):
    return "POLYGON ICRS " + " ".join(repr(float(c)) for c in coords)


PLANES = [
    # planeid, obsid, poly, time_lower, bandpass
    (1, "obs1", _poly(210, 54, 211.5, 54, 211.5, 55, 210, 55), 60500.1, "SPHEREx-D2"),
    (2, "obs2", _poly(210.5, 54, 211.0, 54, 211.0, 54.6, 210.5, 54.6), 60400.5, "SPHEREx-D2"),
    (3, "obs3", _poly(210, 54, 211.5, 54, 211.5, 55, 210, 55), 60450.0, "SPHEREx-D3"),
    (4, "OBS4", _poly(10, -5, 11, -5, 11, -4, 10, -4), 60460.0, "SPHEREx-D2"),
    (5, "obs5", _poly(359.5, -1, 0.5, -1, 0.5, 1, 359.5, 1), 60470.0, "SPHEREx-D2"),     # RA=0
    (6, "obs6", _poly(0, 88.5, 90, 88.5, 180, 88.5, 270, 88.5), 60480.0, "SPHEREx-D1"),  # pole
]


@pytest.fixture(scope="module")
def engine():
    plane = [(pid, obsid, poly, None, t, t + 0.001, 1e-6, 2e-6, band, f"ivo://x?{obsid}",
              "image", 2) for pid, obsid, poly, t, band in PLANES]
    artifact = [(pid, f"ibe/data/spherex/l2/a{pid}.fits", "science") for pid, *_ in PLANES]
    return AdqlEngine({"spherex.plane": plane, "spherex.artifact": artifact})


def ids(engine, where):
    return sorted(r[0] for r in engine.query(
        f"SELECT planeid FROM spherex.plane WHERE {where}").rows)


def test_tutorial_join_returns_time_ordered_uris(engine):
    r = engine.query("""
        SELECT 'https://irsa.ipac.caltech.edu/' || a.uri || '?center=210.8,54.3d&size=0.1' AS uri,
               p.time_bounds_lower
        FROM spherex.artifact a JOIN spherex.plane p ON a.planeid = p.planeid
        WHERE 1 = CONTAINS(POINT('ICRS', 210.8, 54.3), p.poly)
              AND p.energy_bandpassname = 'SPHEREx-D2'
        ORDER BY p.time_bounds_lower""")
    assert [c.name for c in r.columns] == ["uri", "time_bounds_lower"]
    assert [(c.datatype, c.unit) for c in r.columns] == [("char", ""), ("double", "d")]
    assert r.rows == [
        ("https://irsa.ipac.caltech.edu/ibe/data/spherex/l2/a2.fits?center=210.8,54.3d&size=0.1",
         60400.5),
        ("https://irsa.ipac.caltech.edu/ibe/data/spherex/l2/a1.fits?center=210.8,54.3d&size=0.1",
         60500.1)]


def test_geometry_across_ra_zero(engine):
    for ra in (359.6, 0.0, 0.4, -0.3):
        assert ids(engine, f"1 = CONTAINS(POINT('ICRS', {ra}, 0.5), poly)") == [5]
    assert ids(engine, "1 = CONTAINS(POINT('ICRS', 0.6, 0), poly)") == []
    assert ids(engine, "1 = INTERSECTS(CIRCLE('ICRS', 0.7, 0, 0.25), poly)") == [5]
    assert ids(engine, "1 = INTERSECTS(CIRCLE('ICRS', 0.7, 0, 0.15), poly)") == []
    assert 5 in ids(engine, "0 = CONTAINS(POINT('ICRS', 210.8, 54.3), poly)")


def test_geometry_at_the_pole(engine):
    # the pole and points on every side of it lie inside polygon 6; dec 88 does not
    for ra, dec in ((0, 90), (45, 89.6), (135, 89.6), (225, 89.6), (315, 89.6)):
        assert ids(engine, f"1 = CONTAINS(POINT('ICRS', {ra}, {dec}), poly)") == [6], (ra, dec)
    assert ids(engine, "1 = CONTAINS(POINT('ICRS', 45, 88.0), poly)") == []
    # The great-circle edges between the dec-88.5 corners bulge towards the pole, so the
    # boundary is 1.671 deg from (200, 87) (sampled along the edges), not 1.5.
    assert ids(engine, "1 = INTERSECTS(CIRCLE('ICRS', 200, 87.0, 1.69), poly)") == [6]
    assert ids(engine, "1 = INTERSECTS(CIRCLE('ICRS', 200, 87.0, 1.65), poly)") == []
    assert ids(engine, "1 = INTERSECTS(CIRCLE('ICRS', 20, 87.0, 2.5), poly)") == [6]


def test_distance_coords_box_and_range(engine):
    r = engine.query("SELECT DISTANCE(POINT('ICRS', 359.5, 0), POINT('ICRS', 0.5, 0)) AS d, "
                     "DISTANCE(0, 89, 180, 89) AS d2, COORD1(POINT('ICRS', 370, 5)) AS c1, "
                     "COORD2(POINT('ICRS', 10, -5)) AS c2 FROM spherex.plane WHERE planeid = 1")
    d, d2, c1, c2 = r.rows[0]
    assert d == pytest.approx(1.0, abs=1e-12)
    assert d2 == pytest.approx(2.0, abs=1e-12)      # across the pole
    assert (c1, c2) == (10.0, -5.0)
    assert [c.datatype for c in r.columns] == ["double"] * 4
    assert ids(engine, "1 = INTERSECTS(BOX('ICRS', 0, 0, 0.4, 0.4), poly)") == [5]
    assert ids(engine, "1 = CONTAINS(BOX('ICRS', 0, 0, 0.4, 0.4), poly)") == [5]
    # COORDRANGE wraps through RA=0 when ra1 > ra2
    assert ids(engine, "1 = INTERSECTS(COORDRANGE('ICRS', 355, 5, -2, 2), poly)") == [5]
    assert ids(engine, "1 = INTERSECTS(COORDRANGE('ICRS', 5, 355, -0.5, 0.5), poly)") == []
    assert ids(engine, "1 = INTERSECTS(COORDRANGE('ICRS', 0, 360, 89, 90), poly)") == [6]


def test_adql_functions_are_translated(engine):
    r = engine.query("SELECT LOG(10.0) AS ln10, LOG10(1000.0) AS l, TRUNCATE(2.7) AS t, "
                     "TRUNCATE(-2.7) AS tn, MOD(7, 3) AS m, CEILING(1.2) AS c, FLOOR(-1.5) AS f, "
                     "POWER(2, 10) AS p, PI() AS pival, ABS(-3) AS a, COT(1.0) AS cot "
                     "FROM spherex.plane WHERE planeid = 1")
    row = dict(zip([c.name for c in r.columns], r.rows[0]))
    assert row["ln10"] == pytest.approx(math.log(10))            # ADQL LOG is natural
    assert row["l"] == pytest.approx(3.0)
    assert (row["t"], row["tn"], row["m"], row["c"], row["f"]) == (2, -2, 1, 2, -2)
    assert (row["p"], row["a"]) == (1024, 3)
    assert row["pival"] == pytest.approx(math.pi)
    assert row["cot"] == pytest.approx(1 / math.tan(1.0))


def test_top_offset_like_group_subquery_using(engine):
    assert [r[0] for r in engine.query(
        "SELECT TOP 2 planeid FROM spherex.plane ORDER BY time_bounds_lower DESC").rows] == [1, 6]
    assert [r[0] for r in engine.query(
        "SELECT planeid FROM spherex.plane ORDER BY planeid OFFSET 4").rows] == [5, 6]
    assert ids(engine, "obsid LIKE 'obs%'") == [1, 2, 3, 5, 6]      # LIKE is case-sensitive
    assert ids(engine, "obsid LIKE 'OBS%'") == [4]
    r = engine.query("SELECT energy_bandpassname, COUNT(*) AS n FROM spherex.plane "
                     "GROUP BY energy_bandpassname ORDER BY n DESC, energy_bandpassname")
    assert r.rows == [("SPHEREx-D2", 4), ("SPHEREx-D1", 1), ("SPHEREx-D3", 1)]
    r = engine.query("SELECT COUNT(*), MAX(time_bounds_lower) FROM spherex.plane")
    assert [(c.name, c.datatype) for c in r.columns] == [("count", "long"), ("max", "double")]
    assert r.rows == [(6, 60500.1)]
    assert ids(engine, "planeid IN (SELECT planeid FROM spherex.artifact WHERE uri LIKE '%a3%')") \
        == [3]
    r = engine.query('SELECT p."obsid", a.uri FROM spherex.plane AS p '
                     "JOIN spherex.artifact AS a USING (planeid) WHERE planeid = 4")
    assert r.rows == [("OBS4", "ibe/data/spherex/l2/a4.fits")]


def test_select_star_types_come_from_declarations(engine):
    r = engine.query("SELECT * FROM spherex.plane WHERE planeid = 999")
    assert r.rows == []
    types = {c.name: (c.datatype, c.unit) for c in r.columns}
    assert types["planeid"] == ("long", "")
    assert types["time_bounds_lower"] == ("double", "d")
    assert types["energy_bounds_lower"] == ("double", "m")
    assert types["calibrationlevel"] == ("short", "")
    assert types["poly"] == ("char", "")


def test_maxrec_sets_overflow(engine):
    r = engine.query("SELECT planeid FROM spherex.plane ORDER BY planeid", maxrec=3)
    assert (r.rows, r.overflow) == ([(1,), (2,), (3,)], True)
    r = engine.query("SELECT planeid FROM spherex.plane", maxrec=6)
    assert (len(r.rows), r.overflow) == (6, False)


@pytest.mark.parametrize("query, message", [
    ("SELECT nosuchcol FROM spherex.plane", "nosuchcol"),
    ("SELECT planeid FROM spherex.nosuchtable", "spherex.nosuchtable"),
    ("SELECT planeid FROM plane", "Table 'plane' does not exist"),
    ("SELEC planeid FROM spherex.plane", "Could not parse"),
    ("SELECT planeid FROM spherex.plane WHERE", "Could not parse"),
    ("DELETE FROM spherex.plane", "SELECT"),
    ("SELECT 1 FROM spherex.plane; SELECT 2 FROM spherex.plane", "SELECT"),
    ("SELECT POINT('ICRS', 10, 95) FROM spherex.plane", "dec value 95 lies outside"),
    ("SELECT POINT('GALACTIC', 10, 5) FROM spherex.plane", "not supported"),
    ("SELECT POLYGON('ICRS', 1, 2, 3, 4) FROM spherex.plane", "POLYGON"),
    ("SELECT NOSUCHFUNC(planeid) FROM spherex.plane", "NOSUCHFUNC"),
])
def test_errors_name_the_problem(engine, query, message):
    with pytest.raises(AdqlError, match=message) as info:
        engine.query(query)
    assert clean_message(str(info.value)) == str(info.value)    # no ANSI or control characters


def test_tables_stay_read_only(engine):
    with pytest.raises(AdqlError):
        engine.query("SELECT * FROM spherex.plane; DROP TABLE spherex.plane")
    assert len(engine.query("SELECT planeid FROM spherex.plane").rows) == len(PLANES)


def test_tap_schema_describes_the_tables(engine):
    r = engine.query("SELECT column_name, datatype, unit FROM TAP_SCHEMA.columns "
                     "WHERE table_name = 'spherex.obscore' ORDER BY column_index")
    assert len(r.rows) == 51
    assert r.rows[0] == ("s_ra", "double", "deg")
    assert r.rows[48][0] == "cloud_access"
