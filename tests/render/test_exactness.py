"""Depth and pointmaps are exact on an analytic scene, and the frames agree with the poses."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.render.camera import Camera, look_at
from pipeline.render.pairs import pair_from_views, render_view
from pipeline.render.renderer import pixel_ray_dirs
from tests.render.conftest import ROOM

UP = np.array([0.0, 0.0, 1.0])


def box_depth(camera: Camera) -> np.ndarray:
    """(H, W) closed-form z-depth inside the box [0, ROOM]: nearest wall plane along each ray."""
    origins, dirs = camera.pixel_rays()
    with np.errstate(divide="ignore"):
        far = np.where(dirs > 0, np.array(ROOM), 0.0)
        t = (far - origins) / dirs
    t[~np.isfinite(t) | (t <= 0)] = np.inf
    return t.min(1).reshape(camera.height, camera.width)


CAMERAS = [
    ((1.3, 2.1, 1.2), (3.1, 4.2, 0.4), 224, 224, 60.0),
    ((3.5, 0.7, 2.2), (0.3, 4.5, 1.7), 96, 160, 75.0),
    ((2.0, 2.5, 1.3), (2.0, 2.5, 0.0), 64, 64, 90.0),  # looking straight down
]


@pytest.mark.parametrize(("eye", "target", "H", "W", "fov"), CAMERAS)
def test_depth_matches_closed_form(empty_room, eye, target, H, W, fov):
    cam = Camera.from_fov(fov, W, H, look_at(np.array(eye), np.array(target), UP))
    view = render_view(empty_room, cam)
    assert view.rgb.shape == (H, W, 3) and view.depth.shape == (H, W) and view.pts_world.shape == (H, W, 3)
    assert view.valid.all()
    np.testing.assert_allclose(view.depth, box_depth(cam), rtol=0, atol=1e-9)


@pytest.mark.parametrize(("eye", "target", "H", "W", "fov"), CAMERAS)
def test_pointmap_is_backprojected_depth(empty_room, eye, target, H, W, fov):
    cam = Camera.from_fov(fov, W, H, look_at(np.array(eye), np.array(target), UP))
    view = render_view(empty_room, cam)
    j, i = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    pix = np.stack([j, i, np.ones_like(j)], -1)
    pts_cam = (pix @ np.linalg.inv(cam.K).T) * view.depth[..., None]
    pts_world = pts_cam @ cam.cam_to_world[:3, :3].T + cam.cam_to_world[:3, 3]
    np.testing.assert_allclose(view.pts_world, pts_world, rtol=0, atol=1e-9)
    # every point lies on a wall of the box
    on_wall = np.isclose(view.pts_world, 0.0, atol=1e-9) | np.isclose(
        view.pts_world, np.array(ROOM), atol=1e-9
    )
    assert on_wall.any(-1).all()


def test_pair_frames_agree_with_poses(empty_room):
    cam1 = Camera.from_fov(60.0, 64, 48, look_at(np.array([1.0, 1.0, 1.5]), np.array([3.0, 4.0, 1.0]), UP))
    cam2 = Camera.from_fov(70.0, 64, 48, look_at(np.array([3.0, 1.5, 1.2]), np.array([1.5, 4.5, 0.8]), UP))
    pair = pair_from_views(empty_room, render_view(empty_room, cam1), render_view(empty_room, cam2))
    assert pair.pts_view1.shape == (2, 48, 64, 3) and pair.K.shape == (2, 3, 3)
    np.testing.assert_array_equal(pair.cam_to_world, np.stack([cam1.cam_to_world, cam2.cam_to_world]))
    # view 1's own points have z == depth in view 1's frame
    np.testing.assert_allclose(pair.pts_view1[0, ..., 2], pair.depth[0], atol=1e-9)
    # view 2's points, taken to view 2's frame through view 1's pose, have z == view-2 depth
    rel = np.linalg.inv(cam2.cam_to_world) @ cam1.cam_to_world  # view-1 frame -> view-2 frame
    in2 = pair.pts_view1[1] @ rel[:3, :3].T + rel[:3, 3]
    np.testing.assert_allclose(in2[..., 2], pair.depth[1], atol=1e-9)
    # and back to the world through view 1's pose
    world = pair.pts_view1 @ cam1.cam_to_world[:3, :3].T + cam1.cam_to_world[:3, 3]
    np.testing.assert_allclose(world, pair.pts_world, atol=1e-9)


def test_misses_are_invalid_with_zero_depth_and_nan_points(empty_room):
    from pipeline.render.demo_scenes import quad
    from pipeline.render.pairs import prepare_scene
    from pipeline.scenes.base import Scene

    plane = quad("plane", np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float))
    renderer = prepare_scene(Scene("plane", "test", (plane,), source="test"))
    cam = Camera.from_fov(
        90.0, 32, 32, look_at(np.array([0.5, 0.5, 0.8]), np.array([0.5, 0.5, 0.0]), np.array([0, 1.0, 0]))
    )
    view = render_view(renderer, cam)
    assert 0 < view.valid.mean() < 1
    assert (view.depth[~view.valid] == 0).all() and np.isnan(view.pts_world[~view.valid]).all()
    assert (view.rgb[~view.valid] == 0).all() and (view.face[~view.valid] == -1).all()
    np.testing.assert_allclose(view.depth[view.valid], 0.8, atol=1e-12)


@pytest.mark.parametrize(("eye", "target", "H", "W", "fov"), CAMERAS)
def test_renderer_rays_are_the_camera_rays(eye, target, H, W, fov):
    cam = Camera.from_fov(fov, W, H, look_at(np.array(eye), np.array(target), UP))
    K = cam.K.copy()
    K[0, 1], K[1, 2] = 0.7, K[1, 2] + 3.2  # skew and an off-centre principal point too
    cam = Camera(K=K, cam_to_world=cam.cam_to_world, width=W, height=H)
    np.testing.assert_allclose(pixel_ray_dirs(cam), cam.pixel_rays()[1], rtol=0, atol=1e-13)
