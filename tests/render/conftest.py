"""Shared scenes for the renderer tests, built directly from TexturedMesh."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.render.demo_scenes import box_room, cube, room_with_objects
from pipeline.render.pairs import prepare_scene
from pipeline.render.renderer import SceneRenderer
from pipeline.scenes.base import Scene

ROOM = (4.0, 5.0, 2.6)
CUBE_CENTER, CUBE_EXTENT = np.array([2.0, 2.5, 0.6]), 1.0


@pytest.fixture(scope="session")
def empty_room() -> SceneRenderer:
    """The box [0, 4] x [0, 5] x [0, 2.6], walls facing inwards."""
    return prepare_scene(Scene("empty_room", "test", tuple(box_room(ROOM)), source="test"))


@pytest.fixture(scope="session")
def room_with_cube() -> SceneRenderer:
    """The empty room plus a 1 m cube standing in its middle (an occluder)."""
    meshes = (*box_room(ROOM), cube("cube", CUBE_CENTER, CUBE_EXTENT))
    return prepare_scene(Scene("room_with_cube", "test", meshes, source="test"))


@pytest.fixture(scope="session")
def furnished_room() -> SceneRenderer:
    """6 x 6 x 2.8 m room with a cube and four textured spheres (about 5k faces)."""
    return prepare_scene(room_with_objects(n_spheres=4, subdivisions=3))
