"""Embree ray casting with exact float64 hits, built once per scene.

Embree (through embreex) intersects in float32: its hit distance and barycentrics are
good to about 1e-7 relative, which is millimetres in a large scene and far from the exact
pointmaps probe3r promises. So Embree is used only to find *which* triangle a ray hits
(the BVH traversal, the expensive part); the hit itself is recomputed in float64 with the
Möller–Trumbore intersection against that triangle. The result is exact up to float64
rounding for every ray whose float32 traversal picked the right triangle. Only rays
passing within float32 precision (about 1e-7 of the scene size) of an edge may get the
neighbour across that edge; the refined hit then lies on the neighbour's plane, off the
true one by at most that same 1e-7 times the crease's slope.

All meshes of a scene are concatenated into one Embree geometry; `face_mesh` maps a
global face index back to its mesh, which is all shading needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from embreex import rtcore_scene
from embreex.mesh_construction import TriangleMesh

from pipeline.errors import SceneError, ShapeError
from pipeline.scenes.base import Scene


@dataclass(frozen=True, eq=False)
class Hits:
    """First hits of N rays.

    Attributes:
        t: (N,) float64 ray parameter of the hit (distance in units of the ray direction's
            length), inf where the ray hits nothing.
        face: (N,) int64 global face index (`RayCaster` order), -1 where nothing is hit.
        bary: (N, 3) float64 barycentric weights of the face's three corners at the hit;
            they sum to 1 and may leave [0, 1] by float32-traversal slack near edges.
        points: (N, 3) float64 world hit points, metres, NaN where nothing is hit.
    """

    t: np.ndarray
    face: np.ndarray
    bary: np.ndarray
    points: np.ndarray

    @property
    def hit(self) -> np.ndarray:
        """(N,) bool, True where the ray hit a face."""
        return self.face >= 0


class RayCaster:
    """One Embree BVH over all meshes of a scene, with float64 refinement.

    Attributes:
        scene: the scene it was built from.
        vertices: (Vt, 3) float64 world vertices of all meshes, concatenated.
        faces: (F, 3) int64 indices into `vertices`, meshes in scene order.
        face_mesh: (F,) int32 index of each face's mesh in `scene.meshes`.
        face_normals: (F, 3) float64 unit normals, right-handed from the corner order
            (counter-clockwise seen from the side the normal points to).
    """

    def __init__(self, scene: Scene) -> None:
        if scene.n_faces == 0:
            raise SceneError(f"scene '{scene.scene_id}' ({scene.source}): has no faces to render")
        self.scene = scene
        offsets = np.cumsum([0] + [len(m.vertices) for m in scene.meshes])
        self.vertices = np.concatenate([np.asarray(m.vertices, np.float64) for m in scene.meshes])
        self.faces = np.concatenate(
            [np.asarray(m.faces, np.int64) + off for m, off in zip(scene.meshes, offsets, strict=False)]
        )
        self.face_mesh = np.repeat(
            np.arange(len(scene.meshes), dtype=np.int32), [len(m.faces) for m in scene.meshes]
        )
        corners = self.vertices[self.faces]  # (F, 3 corners, 3 xyz)
        self._v0 = np.ascontiguousarray(corners[:, 0])
        self._e1 = np.ascontiguousarray(corners[:, 1] - corners[:, 0])
        self._e2 = np.ascontiguousarray(corners[:, 2] - corners[:, 0])
        n = np.cross(self._e1, self._e2)
        norm = np.linalg.norm(n, axis=1, keepdims=True)
        self.face_normals = np.divide(n, norm, out=np.zeros_like(n), where=norm > 0)
        # Embree sees coordinates relative to the scene centre: float32 keeps the most
        # precision there, which matters for scenes far from the world origin.
        lo, hi = self.vertices.min(0), self.vertices.max(0)
        self._shift = 0.5 * (lo + hi)
        self._embree = rtcore_scene.EmbreeScene()
        TriangleMesh(
            scene=self._embree,
            vertices=(self.vertices - self._shift).astype(np.float32),
            indices=self.faces.astype(np.int32),
        )

    @property
    def n_faces(self) -> int:
        return len(self.faces)

    def cast(self, origins: np.ndarray, dirs: np.ndarray) -> Hits:
        """First hit of each ray, exact in float64.

        Args:
            origins: (N, 3) or (3,) world ray origins, metres.
            dirs: (N, 3) world ray directions, any non-zero length; `Hits.t` is in units
                of this length (camera rays with camera-z 1 give t = z-depth).

        Returns:
            Hits of the N rays.
        """
        dirs = np.asarray(dirs, np.float64)
        if dirs.ndim != 2 or dirs.shape[1] != 3:
            raise ShapeError(f"RayCaster.cast: dirs must be (N, 3), got {dirs.shape}")
        origins = np.broadcast_to(np.asarray(origins, np.float64), dirs.shape)
        n = len(dirs)
        t = np.full(n, np.inf)
        face = np.full(n, -1, np.int64)
        bary = np.zeros((n, 3))
        points = np.full((n, 3), np.nan)
        if n == 0:
            return Hits(t, face, bary, points)
        res = self._embree.run(
            np.ascontiguousarray(origins - self._shift, np.float32),
            np.ascontiguousarray(dirs, np.float32),
            output=1,
        )
        prim = res["primID"].astype(np.int64)
        idx = np.flatnonzero(prim >= 0)
        if idx.size == 0:
            return Hits(t, face, bary, points)
        f = prim[idx]
        o, d = origins[idx], dirs[idx]
        tt, b1, b2 = _moller_trumbore(o, d, self._v0[f], self._e1[f], self._e2[f])
        # A ray parallel to its face (det == 0) has no float64 refinement; Embree's float32
        # answer is the best there is for that measure-zero case.
        bad = ~np.isfinite(tt)
        if bad.any():
            tt[bad] = res["tfar"][idx[bad]]
            b1[bad], b2[bad] = res["u"][idx[bad]], res["v"][idx[bad]]
        t[idx], face[idx] = tt, f
        bary[idx] = np.stack([1.0 - b1 - b2, b1, b2], axis=1)
        points[idx] = o + tt[:, None] * d
        return Hits(t, face, bary, points)


def _moller_trumbore(
    o: np.ndarray, d: np.ndarray, v0: np.ndarray, e1: np.ndarray, e2: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float64 ray/plane-of-triangle intersection, no inside test (the face is known).

    Args:
        o, d: (N, 3) ray origins and directions.
        v0, e1, e2: (N, 3) first corner and the two edges from it of each ray's face.

    Returns:
        t, b1, b2: (N,) ray parameter and the barycentric weights of corners 1 and 2;
            NaN or inf where the ray is parallel to the face.
    """
    p = np.cross(d, e2)
    det = np.einsum("ij,ij->i", e1, p)
    s = o - v0
    q = np.cross(s, e1)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / det
        b1 = np.einsum("ij,ij->i", s, p) * inv
        b2 = np.einsum("ij,ij->i", d, q) * inv
        t = np.einsum("ij,ij->i", e2, q) * inv
    return t, b1, b2
