"""The habitat-sim backend is import-guarded: without habitat_sim it says how to install it."""

from __future__ import annotations

import importlib.util

import pytest

from pipeline.errors import ConfigError, DependencyError, Probe3rError
from pipeline.render.demo_scenes import box_room
from pipeline.render.habitat_backend import HabitatRenderer
from pipeline.render.pairs import prepare_scene
from pipeline.scenes.base import Scene

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("habitat_sim") is not None, reason="habitat_sim is installed"
)

MESSAGE = (
    "render backend 'habitat' for scene 'room': habitat-sim is not installed; install it with "
    "`conda install habitat-sim -c conda-forge -c aihabitat` (there is no pip wheel for "
    "Python 3.11 on Linux), or use the default backend 'embree'"
)


def scene() -> Scene:
    return Scene("room", "test", tuple(box_room()), source="room.glb")


def test_constructing_without_habitat_sim_says_how_to_install():
    with pytest.raises(Probe3rError) as err:
        HabitatRenderer(scene())
    assert isinstance(err.value, DependencyError) and isinstance(err.value, ImportError)
    assert str(err.value) == MESSAGE


def test_prepare_scene_with_habitat_backend():
    with pytest.raises(DependencyError) as err:
        prepare_scene(scene(), backend="habitat")
    assert str(err.value) == MESSAGE


def test_unknown_backend():
    with pytest.raises(ConfigError, match=r"Unknown render backend 'embre'\. Did you mean 'embree'\?"):
        prepare_scene(scene(), backend="embre")
