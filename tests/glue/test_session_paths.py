"""Sessions written before the package was reorganised still restore (glue's PATH_PATCHES).

``tests/data/sessions/pre-0.2-layout.glu`` was written by the code of the flat layout
(``glue_spherex.cube.CubeCoordinates``, ``glue_spherex.live_spectrum.CutoutSelectionSubsetState``).
"""

from pathlib import Path

import numpy as np
from glue.core.state import GlueUnSerializer

import glue_spherex.plugin  # noqa: F401 -- registers the moved paths, as glue's plugin loading does
from glue_spherex.plugin.cube_data import CubeCoordinates
from glue_spherex.plugin.live_spectrum import CutoutSelectionSubsetState

SESSION = Path(__file__).resolve().parents[1] / "data" / "sessions" / "pre-0.2-layout.glu"


def test_old_session_file_restores_with_the_moved_classes():
    text = SESSION.read_text()
    assert "glue_spherex.cube.CubeCoordinates" in text  # really an old-layout file
    dc = GlueUnSerializer.loads(text).object("__main__")
    cube, img = dc["cube"], dc["img"]
    assert isinstance(cube.coords, CubeCoordinates)
    assert list(cube.coords.values) == [1.0, 1.5, 2.0]
    # world of slice 1 is the table's second value
    assert np.isclose(cube.coords.pixel_to_world_values(2, 2, 1)[2], 1.5)
    state = dc.subset_groups[0].subset_state
    assert isinstance(state, CutoutSelectionSubsetState)
    assert state.uuids == {img.uuid} and state.radius_arcsec == 12.0
