"""Triangle-mesh primitives with texture coordinates in metres, for procedural rooms.

Each builder returns a `Part`: vertices (V, 3) float64 in metres (z up), faces (F, 3)
int64 counter-clockwise seen from the visible side, and uv (V, 2) equal to surface
distance in metres divided by the texture's tile size. Tiling by uv > 1 (glTF's default
REPEAT wrap) keeps texel density constant whatever the object's size, which is what makes
a 6 m wall and a 20 cm box look like the same world.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh


@dataclass(frozen=True)
class Part:
    """One piece of geometry with uv; see the module docstring for the conventions."""

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray


def merge(parts: list[Part]) -> Part:
    """Concatenate parts into one, reindexing faces."""
    offsets = np.cumsum([0] + [len(p.vertices) for p in parts[:-1]])
    return Part(
        np.concatenate([p.vertices for p in parts]),
        np.concatenate([p.faces + o for p, o in zip(parts, offsets, strict=True)]),
        np.concatenate([p.uv for p in parts]),
    )


def transformed(part: Part, yaw: float, offset: np.ndarray) -> Part:
    """Rotate a part about z by `yaw` radians, then translate by `offset` (3,) metres."""
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return Part(part.vertices @ rot.T + offset, part.faces, part.uv)


def quad(origin: np.ndarray, du: np.ndarray, dv: np.ndarray, tile: float, max_edge: float) -> Part:
    """A planar rectangle origin + a·du + b·dv (a, b ∈ [0, 1]) split into a grid of cells.

    The visible side is the one du × dv points to. The grid keeps triangles no longer than
    `max_edge` metres, like a scanned mesh, without changing the surface.
    """
    lu, lv = np.linalg.norm(du), np.linalg.norm(dv)
    nu, nv = max(1, int(np.ceil(lu / max_edge))), max(1, int(np.ceil(lv / max_edge)))
    a, b = np.meshgrid(np.linspace(0, 1, nu + 1), np.linspace(0, 1, nv + 1), indexing="xy")
    a, b = a.ravel(), b.ravel()
    verts = origin + a[:, None] * du + b[:, None] * dv
    i = np.arange(nv)[:, None] * (nu + 1) + np.arange(nu)[None, :]
    i = i.ravel()
    faces = np.concatenate([np.stack([i, i + 1, i + nu + 2], 1), np.stack([i, i + nu + 2, i + nu + 1], 1)])
    return Part(verts, faces.astype(np.int64), np.stack([a * lu, b * lv], 1) / tile)


def box(size: np.ndarray, tile: float, max_edge: float = 0.35) -> Part:
    """Closed axis-aligned box (sx, sy, sz) standing on z = 0, centred on x = y = 0, outward faces."""
    lo = np.array([-size[0] / 2, -size[1] / 2, 0.0])
    ex, ey, ez = np.diag(size)
    faces = [
        quad(lo, ey, ex, tile, max_edge),  # bottom, normal -z
        quad(lo + ez, ex, ey, tile, max_edge),  # top, +z
        quad(lo, ex, ez, tile, max_edge),  # front, -y
        quad(lo + ey + ex, -ex, ez, tile, max_edge),  # back, +y
        quad(lo + ey, -ey, ez, tile, max_edge),  # left, -x
        quad(lo + ex, ey, ez, tile, max_edge),  # right, +x
    ]
    return merge(faces)


def cylinder(radius: float, height: float, tile: float, segments: int = 48) -> Part:
    """Closed vertical cylinder on z = 0 around the z axis; the side has a uv seam column."""
    t = np.linspace(0, 2 * np.pi, segments + 1)
    ring = np.stack([radius * np.cos(t), radius * np.sin(t)], 1)
    side_v = np.concatenate([np.c_[ring, np.zeros(segments + 1)], np.c_[ring, np.full(segments + 1, height)]])
    side_uv = np.concatenate(
        [np.c_[t * radius, np.zeros(segments + 1)], np.c_[t * radius, np.full(segments + 1, height)]]
    )
    i = np.arange(segments)
    j = i + segments + 1
    side_f = np.concatenate([np.stack([i, i + 1, j + 1], 1), np.stack([i, j + 1, j], 1)])
    caps = []
    for z, flip in ((0.0, True), (height, False)):
        v = np.concatenate([[[0.0, 0.0, z]], np.c_[ring[:-1], np.full(segments, z)]])
        f = np.stack([np.zeros(segments, int), 1 + i, 1 + (i + 1) % segments], 1)
        caps.append(Part(v, f[:, ::-1] if flip else f, v[:, :2] / tile))
    return merge([Part(side_v, side_f.astype(np.int64), side_uv / tile), *caps])


def sphere(radius: float, tile: float, segments: int = 48, rings: int = 24) -> Part:
    """UV sphere of `radius` resting on z = 0 (centre at z = radius), with a uv seam column."""
    lon = np.linspace(0, 2 * np.pi, segments + 1)
    lat = np.linspace(0, np.pi, rings + 1)
    lo, la = np.meshgrid(lon, lat, indexing="xy")
    verts = radius * np.stack([np.sin(la) * np.cos(lo), np.sin(la) * np.sin(lo), -np.cos(la)], -1).reshape(
        -1, 3
    )
    verts[:, 2] += radius
    i = (np.arange(rings)[:, None] * (segments + 1) + np.arange(segments)[None, :]).ravel()
    n = segments + 1
    faces = np.concatenate([np.stack([i, i + 1, i + n + 1], 1), np.stack([i, i + n + 1, i + n], 1)])
    faces = faces[
        np.abs(
            np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
        ).sum(1)
        > 1e-12
    ]
    uv = np.stack([lo.ravel() * radius, la.ravel() * radius], 1) / tile
    return Part(verts, faces.astype(np.int64), uv)


def cross2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """z component of the cross product of 2D vectors (..., 2); > 0 when b turns left of a."""
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def polygon_triangles(poly: np.ndarray) -> np.ndarray:
    """(T, 3) triangles of a simple counter-clockwise polygon (P, 2) by ear clipping."""
    idx = list(range(len(poly)))
    tris = []
    while len(idx) > 3:
        for k in range(len(idx)):
            a, b, c = idx[k - 1], idx[k], idx[(k + 1) % len(idx)]
            pa, pb, pc = poly[a], poly[b], poly[c]
            if cross2(pb - pa, pc - pb) <= 1e-12:
                continue  # reflex or degenerate corner: not an ear
            others = [poly[m] for m in idx if m not in (a, b, c)]
            if any(_in_triangle(p, pa, pb, pc) for p in others):
                continue
            tris.append((a, b, c))
            idx.pop(k)
            break
    tris.append(tuple(idx))
    return np.array(tris, np.int64)


def _in_triangle(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> bool:
    d = [cross2(b - a, p - a), cross2(c - b, p - b), cross2(a - c, p - c)]
    return min(d) >= -1e-12


def flat_polygon(poly: np.ndarray, z: float, tile: float, *, up: bool, max_edge: float = 0.25) -> Part:
    """Horizontal polygon (floor if `up`, ceiling otherwise) at height z, tessellated to max_edge."""
    tris = polygon_triangles(poly)
    verts = np.c_[poly, np.full(len(poly), z)]
    verts, faces = trimesh.remesh.subdivide_to_size(verts, tris, max_edge=max_edge, max_iter=12)
    faces = np.asarray(faces, np.int64)
    return Part(np.asarray(verts, np.float64), faces if up else faces[:, ::-1], verts[:, :2] / tile)


def walls(poly: np.ndarray, height: float, tile: float, max_edge: float = 0.25) -> list[Part]:
    """One inward-facing wall per edge of a counter-clockwise footprint; u runs along the perimeter."""
    out, dist = [], 0.0
    up = np.array([0.0, 0.0, height])
    for k in range(len(poly)):
        a, b = np.r_[poly[k], 0.0], np.r_[poly[(k + 1) % len(poly)], 0.0]
        part = quad(a, b - a, up, tile, max_edge)  # (b - a) × up points outward: flip the faces
        out.append(Part(part.vertices, part.faces[:, ::-1], part.uv + np.array([dist / tile, 0.0])))
        dist += float(np.linalg.norm(b - a))
    return out
