"""Procedural indoor rooms: the embedded default scene source.

A room is a pure function of (seed, index): `np.random.default_rng([seed, index])` draws a
footprint (rectangle, L, T or a rectangle with a cut corner), a ceiling height, textures
and 5–18 furniture-like objects (boxes, tables, shelves, cylinders, spheres, small items
on tables). Objects stand on the floor inside the footprint with a wall margin and never
overlap each other's bounding circles, so cameras placed in free space see clean
geometry. World frame: metres, z up, floor at z = 0, footprint in x, y ≥ 0.
"""

from __future__ import annotations

import numpy as np

from pipeline.scenes import primitives as P
from pipeline.scenes.base import Scene, TexturedMesh
from pipeline.scenes.textures import random_texture

WALL_MARGIN = 0.05  # metres kept between any object and any wall
SHAPES = ("rectangle", "l_shape", "t_shape", "cut_corner")


def procedural_scene_id(seed: int, index: int) -> str:
    """The id of procedural room `index` under `seed`, e.g. 'procedural-0-000007'."""
    return f"procedural-{seed}-{index:06d}"


def footprint(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """A random room footprint: (shape name, (P, 2) counter-clockwise polygon in metres)."""
    shape = SHAPES[rng.integers(len(SHAPES))]
    w, d = rng.uniform(3.0, 9.0), rng.uniform(3.0, 8.0)
    if shape == "rectangle":
        poly = [(0, 0), (w, 0), (w, d), (0, d)]
    elif shape == "l_shape":
        cw, cd = w * rng.uniform(0.35, 0.6), d * rng.uniform(0.35, 0.6)
        poly = [(0, 0), (w, 0), (w, d - cd), (w - cw, d - cd), (w - cw, d), (0, d)]
    elif shape == "t_shape":
        stem = w * rng.uniform(0.35, 0.6)
        x0, cd = rng.uniform(0, w - stem), d * rng.uniform(0.3, 0.5)
        poly = [(x0, 0), (x0 + stem, 0), (x0 + stem, cd), (w, cd), (w, d), (0, d), (0, cd), (x0, cd)]
    else:
        c = min(w, d) * rng.uniform(0.25, 0.45)
        poly = [(0, 0), (w - c, 0), (w, c), (w, d), (0, d)]
    return shape, np.array(poly, np.float64)


def _inside(poly: np.ndarray, pts: np.ndarray, margin: float) -> bool:
    """True if every point (N, 2) lies inside the polygon at least `margin` from every edge."""
    a, b = poly, np.roll(poly, -1, axis=0)
    e = b - a
    # Crossing-number test for inside, then point-to-segment distances for the margin.
    y, x = pts[:, None, 1], pts[:, None, 0]
    crosses = ((a[:, 1] > y) != (b[:, 1] > y)) & (
        x < a[:, 0] + (y - a[:, 1]) * e[:, 0] / np.where(e[:, 1] == 0, 1, e[:, 1])
    )
    if not (crosses.sum(1) % 2 == 1).all():
        return False
    t = np.clip(((pts[:, None] - a) * e).sum(-1) / (e**2).sum(-1), 0, 1)
    dist = np.linalg.norm(pts[:, None] - (a + t[..., None] * e), axis=-1)
    return bool(dist.min() >= margin)


def _table(rng: np.random.Generator, tile: float) -> tuple[P.Part, np.ndarray, float]:
    sx, sy, h = rng.uniform(0.6, 2.0), rng.uniform(0.5, 1.2), rng.uniform(0.45, 1.1)
    top_t, leg = rng.uniform(0.03, 0.08), rng.uniform(0.04, 0.09)
    parts = [P.transformed(P.box(np.array([sx, sy, top_t]), tile), 0.0, np.array([0, 0, h - top_t]))]
    for cx in (-1, 1):
        for cy in (-1, 1):
            off = np.array([cx * (sx / 2 - leg), cy * (sy / 2 - leg), 0.0])
            parts.append(P.transformed(P.box(np.array([leg, leg, h - top_t]), tile), 0.0, off))
    return P.merge(parts), np.array([sx, sy]), h


def _shelf(rng: np.random.Generator, tile: float, max_h: float) -> tuple[P.Part, np.ndarray, float]:
    sx, sy, h = rng.uniform(0.6, 2.0), rng.uniform(0.25, 0.5), rng.uniform(0.8, max_h)
    t = rng.uniform(0.02, 0.04)
    sides = [
        P.transformed(P.box(np.array([t, sy, h]), tile), 0.0, np.array([s * (sx - t) / 2, 0, 0]))
        for s in (-1, 1)
    ]
    back = P.transformed(P.box(np.array([sx, t, h]), tile), 0.0, np.array([0, (sy - t) / 2, 0]))
    n_boards = int(rng.integers(2, 6))
    boards = [
        P.transformed(P.box(np.array([sx - 2 * t, sy - t, t]), tile), 0.0, np.array([0, -t / 2, z]))
        for z in np.linspace(0.05, h - t, n_boards)
    ]
    return P.merge([*sides, back, *boards]), np.array([sx, sy]), h


def _object(rng: np.random.Generator, kind: str, room_h: float) -> tuple[P.Part, np.ndarray, float]:
    """Geometry of one object centred on x = y = 0 on z = 0: (part, (2,) xy extent, height)."""
    tile = rng.uniform(0.3, 1.5)
    if kind == "table":
        return _table(rng, tile)
    if kind == "shelf":
        return _shelf(rng, tile, min(2.2, room_h - 0.15))
    if kind == "cylinder":
        r, h = rng.uniform(0.1, 0.6), rng.uniform(0.2, min(2.0, room_h - 0.2))
        return P.cylinder(r, h, tile), np.array([2 * r, 2 * r]), h
    if kind == "sphere":
        r = rng.uniform(0.1, 0.6)
        return P.sphere(r, tile), np.array([2 * r, 2 * r]), 2 * r
    size = np.array([rng.uniform(0.2, 1.5), rng.uniform(0.2, 1.5), rng.uniform(0.2, min(1.8, room_h - 0.2))])
    return P.box(size, tile), size[:2], size[2]


def _rotate(xy: np.ndarray, yaw: float) -> np.ndarray:
    """Rotate (..., 2) vectors counter-clockwise by `yaw` radians (as `primitives.transformed`)."""
    c, s = np.cos(yaw), np.sin(yaw)
    return xy @ np.array([[c, s], [-s, c]])


def _footprint_corners(extent: np.ndarray, yaw: float, centre: np.ndarray) -> np.ndarray:
    hx, hy = extent / 2
    return _rotate(np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]]), yaw) + centre


def _footprint_outline(extent: np.ndarray, yaw: float, centre: np.ndarray) -> np.ndarray:
    """Points along the rotated footprint's edges, closer together than the wall margin.

    Checking corners alone would let a box straddle an L-shape's inner corner; sampling
    the outline densely (spacing < 2 × margin) guarantees no wall crosses the footprint.
    """
    corners = _footprint_corners(extent, yaw, centre)
    n = int(np.ceil(extent.max() / (1.5 * WALL_MARGIN))) + 1
    t = np.linspace(0, 1, n)[None, :, None]
    return (corners[:, None] + t * (np.roll(corners, -1, axis=0) - corners)[:, None]).reshape(-1, 2)


def _place(
    rng: np.random.Generator,
    poly: np.ndarray,
    kind: str,
    extent: np.ndarray,
    placed: list[tuple[np.ndarray, float]],
) -> tuple[np.ndarray, float] | None:
    """A (centre (2,), yaw) keeping the object inside the room and clear of `placed` circles."""
    lo, hi = poly.min(0), poly.max(0)
    radius = float(np.linalg.norm(extent) / 2)
    for _ in range(40):
        if kind == "shelf":  # back against a random wall, facing into the room
            k = rng.integers(len(poly))
            a, b = poly[k], poly[(k + 1) % len(poly)]
            edge = b - a
            length = np.linalg.norm(edge)
            if length < extent[0] + 2 * WALL_MARGIN:
                continue
            inward = np.array([-edge[1], edge[0]]) / length
            along = rng.uniform(extent[0] / 2 + WALL_MARGIN, length - extent[0] / 2 - WALL_MARGIN)
            centre = a + edge / length * along + inward * (extent[1] / 2 + 2 * WALL_MARGIN)
            yaw = float(np.arctan2(edge[1], edge[0])) + np.pi  # local +y (the back) faces the wall
        else:
            centre, yaw = rng.uniform(lo, hi), float(rng.uniform(0, 2 * np.pi))
        if not _inside(poly, _footprint_corners(extent, yaw, centre), WALL_MARGIN):
            continue  # cheap rejection before the dense outline test
        if not _inside(poly, _footprint_outline(extent, yaw, centre), WALL_MARGIN):
            continue
        if all(np.linalg.norm(centre - c) > radius + r + 0.05 for c, r in placed):
            placed.append((centre, radius))
            return centre, yaw
    return None


def generate_room(seed: int, index: int, *, split: str = "train", scene_id: str | None = None) -> Scene:
    """Build procedural room `index` under `seed`.

    Args:
        seed: run seed; with `index` it fixes every array of the room.
        index: room number, ≥ 0.
        split: split recorded on the scene (chosen by the catalog, never by the room).
        scene_id: defaults to `procedural_scene_id(seed, index)`.

    Returns:
        A Scene whose first three meshes are floor, ceiling and walls, then one mesh per
        object, all textured (uv in metres / tile, repeating).

    Example:
        >>> generate_room(0, 3).scene_id
        'procedural-0-000003'
    """
    rng = np.random.default_rng([seed, index])
    shape, poly = footprint(rng)
    height = rng.uniform(2.3, 3.6)
    meshes = [
        _mesh("floor", P.flat_polygon(poly, 0.0, rng.uniform(0.5, 2.5), up=True), random_texture(rng)),
        _mesh("ceiling", P.flat_polygon(poly, height, rng.uniform(0.8, 3.0), up=False), random_texture(rng)),
        _mesh("walls", P.merge(P.walls(poly, height, rng.uniform(0.8, 3.0))), random_texture(rng)),
    ]
    area = 0.5 * abs(P.cross2(poly, np.roll(poly, -1, axis=0)).sum())
    n_objects = int(rng.integers(5, 8 + int(area / 4)))
    kinds = rng.choice(["box", "table", "shelf", "cylinder", "sphere"], size=min(n_objects, 18))
    placed: list[tuple[np.ndarray, float]] = []
    for k, kind in enumerate(kinds):
        part, extent, top = _object(rng, str(kind), height)
        where = _place(rng, poly, kind, extent, placed)
        if where is None:
            continue
        centre, yaw = where
        meshes.append(
            _mesh(f"{kind}_{k:02d}", P.transformed(part, yaw, np.r_[centre, 0.0]), random_texture(rng))
        )
        if kind == "table" and rng.random() < 0.6:  # a small item on the table top
            item = (
                P.sphere(rng.uniform(0.05, 0.15), 0.3)
                if rng.random() < 0.5
                else P.box(rng.uniform(0.1, 0.3, 3), 0.3)
            )
            # Off-centre by at most 15 % of the top's size: with items ≤ 30 cm it never overhangs.
            spot = centre + _rotate((rng.random(2) - 0.5) * 0.3 * extent, yaw)
            item_mesh = P.transformed(item, yaw, np.r_[spot, top])
            meshes.append(_mesh(f"item_{k:02d}", item_mesh, random_texture(rng, "photo")))
    return Scene(
        scene_id=scene_id or procedural_scene_id(seed, index),
        split=split,
        meshes=tuple(meshes),
        source=f"procedural:seed={seed},index={index},shape={shape}",
        up=(0.0, 0.0, 1.0),
    )


def _mesh(name: str, part: P.Part, texture: np.ndarray) -> TexturedMesh:
    return TexturedMesh(name=name, vertices=part.vertices, faces=part.faces, uv=part.uv, texture=texture)
