"""Source catalogs for catalog-scale runs: every format in, every bad row reported."""

import astropy.units as u
import numpy as np
import pytest
from astropy.table import MaskedColumn, QTable, Table

from glue_spherex.analysis.sources import read_sources
from glue_spherex.errors import SpherexInputError


def _catalog():
    return Table({"source_id": ["a", "b", "c", "d", "e", "b", "g", "h"],
                  "RAJ2000": [210.8, np.nan, 10.68, 400.0, 12.0, 210.9, 359.9, 0.0],
                  "DEJ2000": [54.35, 1.0, 41.27, 0.0, -91.0, 54.3, -89.9, 90.0],
                  "aperture": [6.0, 6.0, 8.0, 6.0, 6.0, 6.0, -1.0, 200.0]})


@pytest.mark.parametrize("suffix", [".ecsv", ".csv", ".fits", ".vot"])
def test_every_bad_row_is_reported_with_its_reason_in_every_format(tmp_path, suffix):
    path = tmp_path / f"sources{suffix}"
    _catalog().write(path, format={".vot": "votable"}.get(suffix))
    result = read_sources(path)
    assert list(result.sources["id"]) == ["a", "c"]
    assert np.allclose(result.sources["ra"].to_value(u.deg), [210.8, 10.68])
    assert np.allclose(result.sources["radius"].to_value(u.arcsec), [6.0, 8.0])
    reasons = dict(zip(result.rejected["id"], result.rejected["reason"]))
    assert set(reasons) == {"b", "d", "e", "g", "h"}
    assert "not a number" in reasons["b"] or "duplicate" in reasons["b"]
    assert "RA 400" in reasons["d"] and "Dec -91" in reasons["e"]
    assert "radius -1" in reasons["g"] and "radius 200" in reasons["h"]
    # each row is in exactly one of the two tables
    assert len(result.sources) + len(result.rejected) == len(_catalog())
    assert sorted(result.rejected["row"]) == [1, 3, 4, 5, 6, 7]


def test_duplicate_ids_keep_the_first_and_name_it():
    table = Table({"id": ["x", "y", "x"], "ra": [1.0, 2.0, 3.0], "dec": [0.0, 0.0, 0.0]})
    result = read_sources(table)
    assert list(result.sources["id"]) == ["x", "y"]
    assert list(result.rejected["reason"]) == ["duplicate id 'x' (first at row 0)"]


def test_units_sexagesimal_and_masked_values():
    table = QTable({"name": ["m101", "m31", "blank"],
                    "ra": ["14h03m12.5s", "00:42:44.3", ""],
                    "dec": ["+54d20m56s", "+41:16:09", "10"]})
    result = read_sources(table, radius=5 * u.arcsec)
    assert np.allclose(result.sources["ra"].to_value(u.deg), [210.80208, 10.68458], atol=1e-4)
    assert np.allclose(result.sources["dec"].to_value(u.deg), [54.34889, 41.26917], atol=1e-4)
    assert list(result.rejected["id"]) == ["blank"]
    assert np.all(result.sources["radius"] == 5 * u.arcsec)
    radians = Table({"id": ["p"], "ra": [np.pi] * u.rad, "dec": [0.1] * u.rad})
    assert np.isclose(read_sources(radians).sources["ra"][0].to_value(u.deg), 180.0)
    masked = Table({"id": ["q", "r"], "ra": MaskedColumn([1.0, 2.0], mask=[False, True]),
                    "dec": [0.0, 0.0]})
    assert list(read_sources(masked).rejected["reason"]) == ["RA or Dec missing or not a number"]


def test_bad_catalogs_are_one_line_input_errors(tmp_path):
    with pytest.raises(SpherexInputError, match="does not exist"):
        read_sources(tmp_path / "missing.ecsv")
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"not a table at all\n" * 10)
    with pytest.raises(SpherexInputError, match="cannot read the source catalog") as err:
        read_sources(junk)
    assert "\n" not in str(err.value)
    with pytest.raises(SpherexInputError, match="no RA column.*it has x, y"):
        read_sources(Table({"x": [1.0], "y": [2.0]}))
    with pytest.raises(SpherexInputError, match="no column 'ra_x'"):
        read_sources(Table({"ra": [1.0], "dec": [2.0]}), ra_column="ra_x")
    with pytest.raises(SpherexInputError, match="no rows"):
        read_sources(Table({"ra": [], "dec": []}))
