"""The in-memory scene every source produces and every renderer consumes.

A scene is a list of triangle meshes in one world frame (metres, z up is NOT assumed:
the world frame is whatever the file says). Each mesh carries exactly one way to colour
its surface: a base-colour texture with per-vertex UVs, per-vertex colours, or one flat
colour. Keeping this tiny and source-agnostic is what lets procedural rooms, HM3D glb
files and test fixtures all go through the same renderer path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.errors import SceneError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True, eq=False)
class TexturedMesh:
    """One triangle mesh with its surface colour.

    Attributes:
        name: mesh or material name, used in error messages.
        vertices: (V, 3) float64 world coordinates in metres.
        faces: (F, 3) int64 vertex indices, counter-clockwise seen from outside.
        uv: (V, 2) float64 texture coordinates, trimesh's convention: u right, v UP, so
            texture row = (1 - v) * Ht (glTF's v-down is flipped by the loader). Values
            outside [0, 1] wrap (repeat). Present iff `texture` is.
        texture: (Ht, Wt, 3) uint8 RGB base-colour image, or None.
        vertex_colors: (V, 3) uint8 RGB per vertex, or None.
        base_color: (3,) uint8 RGB flat colour, used when there is neither texture nor
            vertex colours (and multiplied into neither: glTF's factor is folded in by loaders).
    """

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray | None = None
    texture: np.ndarray | None = None
    vertex_colors: np.ndarray | None = None
    base_color: np.ndarray = field(default_factory=lambda: np.array([180, 180, 180], np.uint8))

    def __post_init__(self) -> None:
        v, f = self.vertices, self.faces
        if v.ndim != 2 or v.shape[1] != 3:
            raise SceneError(f"mesh '{self.name}': vertices must be (V, 3), got {v.shape}")
        if f.ndim != 2 or f.shape[1] != 3:
            raise SceneError(f"mesh '{self.name}': faces must be (F, 3), got {f.shape}")
        if f.size and (f.min() < 0 or f.max() >= len(v)):
            raise SceneError(f"mesh '{self.name}': face index out of range [0, {len(v)})")
        if (self.uv is None) != (self.texture is None):
            raise SceneError(f"mesh '{self.name}': uv and texture must be given together")
        if self.uv is not None and self.uv.shape != (len(v), 2):
            raise SceneError(f"mesh '{self.name}': uv must be ({len(v)}, 2), got {self.uv.shape}")
        if self.texture is not None and (self.texture.ndim != 3 or self.texture.shape[2] != 3):
            raise SceneError(f"mesh '{self.name}': texture must be (Ht, Wt, 3), got {self.texture.shape}")
        if self.vertex_colors is not None and self.vertex_colors.shape != (len(v), 3):
            raise SceneError(
                f"mesh '{self.name}': vertex_colors must be ({len(v)}, 3), got {self.vertex_colors.shape}"
            )


@dataclass(frozen=True, eq=False)
class Scene:
    """A renderable scene: meshes in one world frame, plus where it came from.

    Attributes:
        scene_id: stable identifier, recorded with every pair rendered from it.
        split: one of SPLITS; pairs inherit their scene's split (never split by pair).
        meshes: the scene's meshes.
        source: human-readable origin (file path or "procedural:seed=…"), for messages.
        up: the world's up direction (unit vector). Camera sampling keeps image "up" along
            it; glTF files (HM3D included) are y-up, the procedural rooms are z-up.
    """

    scene_id: str
    split: str
    meshes: tuple[TexturedMesh, ...]
    source: str = ""
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise SceneError(f"scene '{self.scene_id}': split must be one of {SPLITS}, got '{self.split}'")
        if not self.meshes:
            raise SceneError(f"scene '{self.scene_id}' ({self.source}): has no meshes")

    @property
    def n_faces(self) -> int:
        return int(sum(len(m.faces) for m in self.meshes))

    def bounds(self) -> np.ndarray:
        """(2, 3) axis-aligned min and max corner of all vertices, metres."""
        allv = np.concatenate([m.vertices for m in self.meshes])
        return np.stack([allv.min(0), allv.max(0)])
