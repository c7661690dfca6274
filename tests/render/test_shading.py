"""Texture sampling (bilinear, repeat, v up), vertex colours and flat colour at known pixels."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.render.camera import Camera, look_at
from pipeline.render.demo_scenes import checker_texture, quad
from pipeline.render.pairs import prepare_scene, render_view
from pipeline.render.shading import sample_bilinear
from pipeline.scenes.base import Scene, TexturedMesh

UNIT_SQUARE = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float)  # faces +z


def top_down_camera(size: int = 32) -> Camera:
    """Camera 1 m above the unit square's centre, image x along world x, image up along world y."""
    pose = look_at(np.array([0.5, 0.5, 1.0]), np.array([0.5, 0.5, 0.0]), np.array([0.0, 1.0, 0.0]))
    return Camera.from_fov(40.0, size, size, pose)


def render_mesh(mesh: TexturedMesh, camera: Camera):
    return render_view(prepare_scene(Scene("shading", "test", (mesh,), source="test")), camera)


def gradient_texture(n: int = 16) -> np.ndarray:
    """(n, n, 3) uint8: red = 10 * column, green = 10 * row (row 0 at the top), blue 0."""
    i, j = np.indices((n, n))
    return np.stack([10 * j, 10 * i, np.zeros_like(i)], -1).astype(np.uint8)


def test_gradient_texture_is_bilinear_and_v_up():
    view = render_mesh(quad("grad", UNIT_SQUARE, texture=gradient_texture()), top_down_camera())
    assert view.valid.all()
    x, y = view.pts_world[..., 0], view.pts_world[..., 1]  # uv == (x, y) on this quad
    col, row = 16 * x - 0.5, (1 - y) * 16 - 0.5  # texel-centre coordinates; v up means row 0 at y = 1
    inside = (col >= 0) & (col <= 15) & (row >= 0) & (row <= 15)  # away from the wrap seam
    assert inside.mean() > 0.8
    np.testing.assert_allclose(view.rgb[..., 0][inside], 10 * col[inside], atol=0.51)
    np.testing.assert_allclose(view.rgb[..., 1][inside], 10 * row[inside], atol=0.51)
    # image top (small image row) looks at large world y, i.e. v near 1, i.e. texture row near 0
    assert view.rgb[0, :, 1].mean() < view.rgb[-1, :, 1].mean()


def test_checkerboard_colours_at_square_centres():
    tex = checker_texture(4, 8, ((255, 255, 255), (0, 0, 0)))  # 4 x 4 squares, top-left white
    view = render_mesh(quad("checker", UNIT_SQUARE, texture=tex), top_down_camera(64))
    x, y = view.pts_world[..., 0], view.pts_world[..., 1]
    square_col, square_row = np.floor(4 * x), np.floor(4 * (1 - y))
    frac_x, frac_y = 4 * x - square_col, 4 * (1 - y) - square_row
    central = (np.abs(frac_x - 0.5) < 0.3) & (np.abs(frac_y - 0.5) < 0.3)  # far from bilinear blending
    expected = np.where((square_col + square_row) % 2 == 0, 255, 0)
    np.testing.assert_array_equal(view.rgb[..., 0][central], expected[central])


def test_repeat_wrapping():
    tex = gradient_texture(8).reshape(-1, 3).astype(np.float32)
    uv = np.array([[0.3, 0.6], [0.7, 0.2]])
    base = sample_bilinear(tex, 8, 8, uv)
    for shift in ([1.0, 0.0], [-3.0, 2.0], [5.0, -7.0]):
        np.testing.assert_allclose(sample_bilinear(tex, 8, 8, uv + shift), base, atol=1e-3)
    # on the seam (u = 0 exactly: half-way between the last and the first column's centres)
    seam = sample_bilinear(tex, 8, 8, np.array([[0.0, 0.5]]))
    assert seam[0, 0] == pytest.approx(0.5 * (0 + 70))


def test_uv_repeat_on_a_mesh():
    """uv spanning [0, 3] tiles a texture three times across the quad."""
    uv = 3 * np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    view = render_mesh(quad("tiled", UNIT_SQUARE, texture=gradient_texture(), uv=uv), top_down_camera())
    x, y = view.pts_world[..., 0], view.pts_world[..., 1]
    col, row = (3 * x % 1) * 16 - 0.5, (1 - (3 * y % 1)) * 16 - 0.5
    inside = (col >= 0) & (col <= 15) & (row >= 0) & (row <= 15)
    np.testing.assert_allclose(view.rgb[..., 0][inside], 10 * col[inside], atol=0.51)
    np.testing.assert_allclose(view.rgb[..., 1][inside], 10 * row[inside], atol=0.51)


def test_vertex_colours_interpolate_barycentrically():
    corners = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    tri = TexturedMesh("tri", UNIT_SQUARE[:3], np.array([[0, 1, 2]]), vertex_colors=corners)
    renderer = prepare_scene(Scene("tri", "test", (tri,), source="test"))
    view = render_view(renderer, top_down_camera())
    v = view.valid
    assert 0.2 < v.mean() < 0.8
    # corner weights of the hit from its position: p = w0 c0 + w1 c1 + w2 c2, c = (0,0), (1,0), (1,1)
    x, y = view.pts_world[..., 0][v], view.pts_world[..., 1][v]
    w = np.stack([1 - x, x - y, y], -1)
    np.testing.assert_allclose(view.rgb[v], 255 * w, atol=0.51)


def test_flat_base_colour():
    mesh = quad("flat", UNIT_SQUARE, base_color=np.array([12, 34, 56], np.uint8))
    view = render_mesh(mesh, top_down_camera())
    assert (view.rgb[view.valid] == [12, 34, 56]).all()
