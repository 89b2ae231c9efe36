"""Where classes saved in older glue session files live now (glue's ``PATH_PATCHES``).

A ``.glu`` file names each object's class by its dotted path. The package was reorganised
(0.1 -> 0.2 layout); these entries let glue find the classes of sessions written before, as
glue-wwt does for its own moves. Registered when :mod:`glue_spherex.plugin` is imported,
which glue does before it restores a session with SPHEREx objects in it.
"""

from __future__ import annotations

#: old dotted path -> new dotted path
MOVED = {
    "glue_spherex.live_spectrum.CutoutSelectionSubsetState":
        "glue_spherex.plugin.live_spectrum.CutoutSelectionSubsetState",
    "glue_spherex.cube.CubeCoordinates": "glue_spherex.plugin.cube_data.CubeCoordinates",
}

__all__ = ["MOVED", "register"]


def register():
    """Add :data:`MOVED` to glue's table of moved classes (idempotent)."""
    from glue.core.state import PATH_PATCHES

    PATH_PATCHES.update(MOVED)
