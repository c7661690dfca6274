"""Pair sampling: ranges honoured, pair kinds, determinism, free space, and refusing the impossible."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from pipeline.errors import ConfigError, SamplingError
from pipeline.render.demo_scenes import box_room
from pipeline.render.pairs import PairRender, PairSamplingConfig, prepare_scene, sample_pair
from pipeline.render.sampling import free_space, rotation_angle_deg
from pipeline.scenes.base import Scene

SMALL = {"height": 48, "width": 64}


def sample(renderer, seed: int, n: int, **cfg) -> list[PairRender]:
    rng = np.random.default_rng(seed)
    config = PairSamplingConfig(**{**SMALL, **cfg})
    return [sample_pair(renderer, config, rng) for _ in range(n)]


def test_shapes_and_dtypes_at_default_resolution(furnished_room):
    pair = sample_pair(furnished_room, PairSamplingConfig(), np.random.default_rng(0))
    H = W = 224
    assert pair.rgb.shape == (2, H, W, 3) and pair.rgb.dtype == np.uint8
    assert pair.depth.shape == (2, H, W) and pair.depth.dtype == np.float64
    assert pair.pts_world.shape == pair.pts_view1.shape == (2, H, W, 3)
    assert pair.valid.shape == (2, H, W) and pair.valid.dtype == bool
    assert pair.K.shape == (2, 3, 3) and pair.cam_to_world.shape == (2, 4, 4)
    assert pair.corr.shape == (2, H, W, 2)
    assert isinstance(pair.overlap, float) and isinstance(pair.rotation_deg, float)


def test_non_square_resolution(furnished_room):
    (pair,) = sample(furnished_room, 1, 1, height=40, width=72)
    assert pair.rgb.shape == (2, 40, 72, 3) and pair.corr.shape == (2, 40, 72, 2)
    assert pair.K[0, 0, 2] == 36 and pair.K[0, 1, 2] == 20


def test_measured_overlap_and_rotation_within_ranges(furnished_room):
    for pair in sample(furnished_room, 2, 4, overlap=(0.4, 0.8), rotation_deg=(10.0, 60.0)):
        assert 0.4 <= pair.overlap <= 0.8
        assert 10.0 <= pair.rotation_deg <= 60.0
        # recorded values are the measured ones
        assert pair.overlap == np.isfinite(pair.corr[1][..., 0]).sum() / pair.valid[1].sum()
        R = pair.cam_to_world[:, :3, :3]
        assert pair.rotation_deg == rotation_angle_deg(R[0], R[1])


def test_simple_and_difficult_pairs(furnished_room):
    simple = sample(furnished_room, 3, 3, kind="simple")
    difficult = sample(furnished_room, 3, 3, kind="difficult", overlap=(0.02, 1.0))
    assert all(p.overlap >= 0.5 and p.rotation_deg <= 45 for p in simple)
    assert all(p.overlap <= 0.5 and p.rotation_deg >= 90 for p in difficult)
    assert min(p.overlap for p in simple) > max(p.overlap for p in difficult)


def test_same_seed_same_pair(furnished_room):
    a, b = sample(furnished_room, 7, 2), sample(furnished_room, 7, 2)
    for pa, pb in zip(a, b, strict=True):
        for name in ("rgb", "depth", "pts_world", "pts_view1", "valid", "K", "cam_to_world", "corr"):
            np.testing.assert_array_equal(getattr(pa, name), getattr(pb, name))
        assert (pa.overlap, pa.rotation_deg) == (pb.overlap, pb.rotation_deg)
    (other,) = sample(furnished_room, 8, 1)
    assert not np.array_equal(other.cam_to_world, a[0].cam_to_world)


def test_cameras_are_in_free_space_with_clearance(furnished_room):
    for pair in sample(furnished_room, 4, 3, min_clearance=0.4):
        eyes = pair.cam_to_world[:, :3, 3]
        assert free_space(furnished_room.caster, eyes, 0.4, np.random.default_rng(0)).all()
        # inside the room, at least 0.4 m from its walls, and outside every sphere and the cube
        assert ((eyes >= 0.4) & (eyes <= np.array([6.0, 6.0, 2.8]) - 0.4)).all()
        for mesh in furnished_room.scene.meshes[6:]:
            lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
            assert not ((eyes > lo) & (eyes < hi)).all(1).any(), mesh.name


def test_free_space_rejects_points_inside_objects(furnished_room):
    cube = next(m for m in furnished_room.scene.meshes if m.name == "cube")
    inside = cube.vertices.mean(0)[None]
    assert not free_space(furnished_room.caster, inside, 0.0, np.random.default_rng(0))[0]
    outside_room = np.array([[-1.0, 3.0, 1.4]])
    assert not free_space(furnished_room.caster, outside_room, 0.0, np.random.default_rng(0))[0]


def test_tiny_closed_box_raises_sampling_error():
    tiny = prepare_scene(Scene("tiny_box", "test", tuple(box_room((0.2, 0.2, 0.2))), source="unit test"))
    start = time.perf_counter()
    with pytest.raises(SamplingError) as err:
        sample_pair(tiny, PairSamplingConfig(min_clearance=0.3), np.random.default_rng(0))
    assert time.perf_counter() - start < 10
    assert str(err.value) == (
        "scene 'tiny_box' (unit test): no 'any' camera pair found in 200 tries: "
        "camera 1 in free space (min_clearance 0.3 m) failed 200x"
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("height", 0, "render.height must be >= 1, got 0"),
        (
            "fov_deg",
            (80.0, 50.0),
            "render.fov_deg must be (low, high) with low <= high inside (0.0, 180.0), got (80.0, 50.0)",
        ),
        (
            "overlap",
            (0.2, 1.5),
            "render.overlap must be (low, high) with low <= high inside [0.0, 1.0], got (0.2, 1.5)",
        ),
        (
            "rotation_deg",
            (-5.0, 30.0),
            "render.rotation_deg must be (low, high) with low <= high inside [0.0, 180.0], got (-5.0, 30.0)",
        ),
        ("min_clearance", -0.1, "render.min_clearance must be >= 0 metres, got -0.1"),
        ("kind", "hard", "Unknown render.kind 'hard'. Valid: any, simple, difficult"),
        ("up", (0.0, 0.0, 0.0), "render.up must be a non-zero 3-vector, got (0.0, 0.0, 0.0)"),
    ],
)
def test_config_errors_name_field_and_value(field, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        PairSamplingConfig(**{field: value})


def test_kind_ranges_that_leave_nothing_are_refused():
    with pytest.raises(
        ConfigError, match=r"render.kind 'simple' accepts overlap \(0.5, 1.0\).*overlap \(0.1, 0.3\)"
    ):
        PairSamplingConfig(kind="simple", overlap=(0.1, 0.3))
