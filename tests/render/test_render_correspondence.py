"""Correspondences: reprojection cycle, occlusion, agreement with a brute-force ray cast."""

from __future__ import annotations

import numpy as np

from pipeline.render.camera import Camera, look_at
from pipeline.render.correspondence import correspondences, overlap_fraction
from pipeline.render.pairs import pair_from_views, render_view
from tests.render.conftest import CUBE_CENTER, CUBE_EXTENT

UP = np.array([0.0, 0.0, 1.0])


def views_around_cube(renderer, size: int, angle_deg: float = 70.0):
    """Two cameras looking at the cube from directions `angle_deg` apart."""
    target = CUBE_CENTER + np.array([0.0, 0.0, -0.2])
    eyes = []
    for a in (0.0, np.deg2rad(angle_deg)):
        eyes.append(target + np.array([1.7 * np.sin(a), -1.9 * np.cos(a), 1.0]))
    return [render_view(renderer, Camera.from_fov(75.0, size, size, look_at(e, target, UP))) for e in eyes]


def cell(uv: np.ndarray, H: int, W: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top-left pixel (row y0, column x0) of the 2 x 2 pixel centres around sub-pixel uv (N, 2), and weights."""
    x, y = uv[:, 0] - 0.5, uv[:, 1] - 0.5  # pixel-centre coordinates
    x0 = np.clip(np.floor(x).astype(int), 0, W - 2)
    y0 = np.clip(np.floor(y).astype(int), 0, H - 2)
    return y0, x0, (x - x0)[:, None], (y - y0)[:, None]


def test_reprojection_cycle_within_one_pixel(room_with_cube):
    """view 1 -> view 2 -> view 1, reading view 2's correspondences bilinearly between its pixel centres."""
    v1, v2 = views_around_cube(room_with_cube, 128)
    pair = pair_from_views(room_with_cube, v1, v2)
    c12, c21 = pair.corr
    H, W = v1.valid.shape
    i, j = np.nonzero(np.isfinite(c12[..., 0]))
    y0, x0, fx, fy = cell(c12[i, j], H, W)
    back = (c21[y0, x0] * (1 - fx) + c21[y0, x0 + 1] * fx) * (1 - fy)
    back += (c21[y0 + 1, x0] * (1 - fx) + c21[y0 + 1, x0 + 1] * fx) * fy
    # bilinear reading is meaningless across an occlusion edge, where the field jumps: keep
    # cells whose four pixels all see the same mesh
    mesh2 = room_with_cube.caster.face_mesh[v2.face]
    same = (mesh2[y0, x0] == mesh2[y0, x0 + 1]) & (mesh2[y0, x0] == mesh2[y0 + 1, x0])
    same &= mesh2[y0, x0] == mesh2[y0 + 1, x0 + 1]
    mutual = np.isfinite(back[:, 0]) & same
    assert mutual.sum() > 0.3 * H * W
    err = np.linalg.norm(back[mutual] - np.stack([j + 0.5, i + 0.5], -1)[mutual], axis=1)
    assert (err <= 1.0).mean() >= 0.99
    assert np.median(err) < 0.05


def test_exact_correspondence_is_the_projection(room_with_cube):
    v1, v2 = views_around_cube(room_with_cube, 64)
    c12 = correspondences(room_with_cube.caster, v1, v2)
    has = np.isfinite(c12[..., 0])
    uv, _ = v2.camera.project(v1.pts_world[has])
    np.testing.assert_allclose(c12[has], uv, atol=1e-9)
    assert np.isnan(c12[~v1.valid]).all()


def segment_hits_cube(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) True where the open segment a -> b (N, 3) passes through the cube's interior (slab test)."""
    lo, hi = CUBE_CENTER - CUBE_EXTENT / 2, CUBE_CENTER + CUBE_EXTENT / 2
    d = b - a
    with np.errstate(divide="ignore", invalid="ignore"):
        t0, t1 = (lo - a) / d, (hi - a) / d
    tmin = np.nanmax(np.minimum(t0, t1), axis=1)
    tmax = np.nanmin(np.maximum(t0, t1), axis=1)
    return (tmax > tmin + 1e-6) & (tmin < 1 - 1e-6) & (tmax > 1e-6)


def test_occluded_pixels_have_no_correspondence(room_with_cube):
    v1, v2 = views_around_cube(room_with_cube, 96, angle_deg=120.0)
    c12 = correspondences(room_with_cube.caster, v1, v2)
    pts = v1.pts_world[v1.valid]
    uv, z = v2.camera.project(pts)
    in_view = (z > 0) & (uv >= 0).all(1) & (uv[:, 0] < 96) & (uv[:, 1] < 96)
    blocked = segment_hits_cube(np.broadcast_to(v2.camera.center, pts.shape), pts)
    has = np.isfinite(c12[v1.valid][:, 0])
    assert (in_view & blocked).sum() > 100  # the cube hides part of view 1 from view 2
    assert not has[blocked].any()
    # the rest of what is in view is visible, except at the cube's own silhouette edges
    assert has[in_view & ~blocked].mean() > 0.99


def brute_force_first_hit(tris: np.ndarray, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """(N,) first-hit ray parameter of rays origin + t dirs (N, 3) against every triangle (F, 3, 3).

    Float64 Moller-Trumbore with the inside test, every ray against every face: no BVH, no Embree.
    """
    v0, e1, e2 = tris[:, 0], tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]  # (F, 3)
    d = dirs[:, None, :]  # (N, 1, 3)
    p = np.cross(d, e2)  # (N, F, 3)
    det = (e1 * p).sum(-1)
    s = origin - v0  # (F, 3)
    q = np.cross(s, e1)  # (F, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        b1 = (s * p).sum(-1) / det
        b2 = (d * q).sum(-1) / det
        t = (e2 * q).sum(-1) / det
    ok = (b1 >= 0) & (b2 >= 0) & (b1 + b2 <= 1) & (t > 0) & np.isfinite(t)
    return np.where(ok, t, np.inf).min(1)


def test_agrees_with_brute_force_ray_cast(room_with_cube):
    """Visibility of every view-1 point in view 2, by an independent every-ray-every-triangle cast."""
    v1, v2 = views_around_cube(room_with_cube, 40, angle_deg=100.0)
    c12 = correspondences(room_with_cube.caster, v1, v2)
    pts = v1.pts_world[v1.valid]
    uv, z = v2.camera.project(pts)
    in_view = (z > 0) & (uv >= 0).all(1) & (uv[:, 0] < 40) & (uv[:, 1] < 40)
    C = v2.camera.center
    dirs = pts - C
    nearest = brute_force_first_hit(room_with_cube.caster.vertices[room_with_cube.caster.faces], C, dirs)
    visible = in_view & (nearest >= 1 - 1e-4)
    has = np.isfinite(c12[v1.valid][:, 0])
    assert visible.sum() > 200
    assert (has == visible).mean() >= 0.995
    np.testing.assert_allclose(c12[v1.valid][has & visible], uv[has & visible], atol=1e-9)


def test_overlap_is_share_of_view2_pixels_seen_in_view1(room_with_cube):
    v1, v2 = views_around_cube(room_with_cube, 48)
    pair = pair_from_views(room_with_cube, v1, v2)
    expected = np.isfinite(pair.corr[1][..., 0]).sum() / pair.valid[1].sum()
    assert pair.overlap == expected == overlap_fraction(pair.corr[1], pair.valid[1])
    same = pair_from_views(room_with_cube, v1, v1)
    assert same.overlap == 1.0 and same.rotation_deg == 0.0
    np.testing.assert_allclose(same.corr[0][v1.valid], same.corr[1][v1.valid], atol=1e-9)
