"""Small analytic scenes for the renderer's tests and benchmark.

These are not the procedural rooms of `pipeline.scenes` (which are the dataset); they are
the simplest scenes whose renders have closed forms: an axis-aligned box room seen from
inside (z up, faces wound to face inwards), spheres and boxes wound to face outwards, and
checkerboard textures. Building them here keeps the renderer's tests free of the scene
sources.
"""

from __future__ import annotations

import numpy as np
import trimesh

from pipeline.scenes.base import Scene, TexturedMesh


def checker_texture(n: int = 8, texel: int = 1, colors: tuple = ((255, 255, 255), (0, 0, 0))) -> np.ndarray:
    """(n * texel, n * texel, 3) uint8 checkerboard, top-left square `colors[0]`."""
    i, j = np.indices((n, n))
    board = np.asarray(colors, np.uint8)[(i + j) % 2]
    return np.repeat(np.repeat(board, texel, axis=0), texel, axis=1)


def quad(name: str, corners: np.ndarray, **colour) -> TexturedMesh:
    """Two-triangle mesh over corners (4, 3) given counter-clockwise from the visible side.

    uv runs from (0, 0) at corner 0 over (1, 0) at corner 1 to (1, 1) at corner 2, unless
    `uv` is passed in `colour`.
    """
    if "texture" in colour:
        colour.setdefault("uv", np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]))
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    return TexturedMesh(name=name, vertices=np.asarray(corners, np.float64), faces=faces, **colour)


def box_room(size: tuple[float, float, float] = (4.0, 5.0, 2.6)) -> list[TexturedMesh]:
    """Walls, floor and ceiling of the box [0, X] x [0, Y] x [0, Z], facing inwards.

    The floor carries a checker texture repeated every metre, the ceiling vertex colours,
    the walls flat colours.
    """
    X, Y, Z = size
    c = np.array([[x, y, z] for z in (0, Z) for y in (0, Y) for x in (0, X)], np.float64)
    # corner index = x + 2 y + 4 z (each 0 or 1)
    floor = quad(
        "floor",
        c[[0, 1, 3, 2]],
        texture=checker_texture(2, 8, ((200, 60, 60), (60, 60, 200))),
        uv=np.array([[0.0, 0.0], [X, 0.0], [X, Y], [0.0, Y]]),
    )
    ceiling = quad(
        "ceiling",
        c[[4, 6, 7, 5]],
        vertex_colors=np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], np.uint8),
    )
    walls = [
        quad("wall_y0", c[[0, 4, 5, 1]], base_color=np.array([200, 200, 180], np.uint8)),
        quad("wall_x1", c[[1, 5, 7, 3]], base_color=np.array([180, 200, 200], np.uint8)),
        quad("wall_y1", c[[3, 7, 6, 2]], base_color=np.array([200, 180, 200], np.uint8)),
        quad("wall_x0", c[[2, 6, 4, 0]], base_color=np.array([190, 190, 190], np.uint8)),
    ]
    return [floor, ceiling, *walls]


def sphere(
    name: str, center: np.ndarray, radius: float, subdivisions: int, textured: bool = True
) -> TexturedMesh:
    """Icosphere (20 * 4**subdivisions faces) facing outwards, checker-textured by longitude/latitude."""
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    v = np.asarray(m.vertices)
    colour: dict = {}
    if textured:
        u = np.arctan2(v[:, 1], v[:, 0]) / (2 * np.pi) + 0.5
        w = np.arccos(np.clip(v[:, 2] / radius, -1, 1)) / np.pi
        colour = {"uv": np.stack([4 * u, 2 * (1 - w)], 1), "texture": checker_texture(16, 4)}
    else:
        colour = {"base_color": np.array([90, 160, 90], np.uint8)}
    return TexturedMesh(name=name, vertices=v + center, faces=np.asarray(m.faces, np.int64), **colour)


def cube(name: str, center: np.ndarray, extent: float) -> TexturedMesh:
    """Axis-aligned cube facing outwards, vertex-coloured."""
    m = trimesh.creation.box(extents=(extent, extent, extent))
    v = np.asarray(m.vertices)
    rgb = np.clip((v / extent + 0.5) * 255, 0, 255).astype(np.uint8)
    return TexturedMesh(
        name=name, vertices=v + center, faces=np.asarray(m.faces, np.int64), vertex_colors=rgb
    )


def room_with_objects(
    n_spheres: int = 3,
    subdivisions: int = 3,
    size: tuple[float, float, float] = (6.0, 6.0, 2.8),
    seed: int = 0,
) -> Scene:
    """A box room with a table-sized cube and `n_spheres` textured icospheres on a grid.

    With subdivisions=5 each sphere has 20480 faces, so 25 spheres make a 512k-face scene.
    """
    rng = np.random.default_rng(seed)
    X, Y, _ = size
    meshes = box_room(size)
    meshes.append(cube("cube", np.array([X / 2, Y / 2, 0.4]), 0.8))
    k = int(np.ceil(np.sqrt(n_spheres)))
    for s in range(n_spheres):
        gx, gy = (s % k + 0.5) / k, (s // k + 0.5) / k
        center = np.array([gx * X, gy * Y, rng.uniform(0.3, 1.8)])
        meshes.append(sphere(f"sphere{s}", center, 0.5 * min(X, Y) / k * 0.5, subdivisions))
    return Scene(
        scene_id=f"demo_room_{n_spheres}x{subdivisions}", split="test", meshes=tuple(meshes), source="demo"
    )
