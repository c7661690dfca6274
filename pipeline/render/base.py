"""What every renderer backend returns, and the interface pair sampling relies on.

Two backends exist: the Embree ray caster (`pipeline.render.renderer.SceneRenderer`, the
default, exact) and habitat-sim (`pipeline.render.habitat_backend`, optional). Pair
sampling and correspondences only need `render` and a `RayCaster` for geometry queries,
so both backends plug into the same `sample_pair`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pipeline.render.camera import Camera
from pipeline.render.raycast import RayCaster
from pipeline.scenes.base import Scene


@dataclass(frozen=True, eq=False)
class ViewRender:
    """One rendered view.

    Attributes:
        camera: the camera it was rendered with.
        rgb: (H, W, 3) uint8 colour; black where invalid.
        depth: (H, W) float64 z-depth in this view's camera frame, metres; 0 where invalid.
        pts_world: (H, W, 3) float64 surface point seen through each pixel centre, world
            frame, metres; NaN where invalid.
        valid: (H, W) bool, True where the pixel's ray hit the scene.
        face: (H, W) int64 global face index of the hit (`RayCaster` order); -1 where
            invalid.
    """

    camera: Camera
    rgb: np.ndarray
    depth: np.ndarray
    pts_world: np.ndarray
    valid: np.ndarray
    face: np.ndarray

    @property
    def K(self) -> np.ndarray:
        """(3, 3) float64 intrinsics, pixels (pixel centres at +0.5)."""
        return self.camera.K

    @property
    def cam_to_world(self) -> np.ndarray:
        """(4, 4) float64 OpenCV camera frame to world frame, metres."""
        return self.camera.cam_to_world


class Renderer(Protocol):
    """A scene prepared for rendering many views.

    Attributes:
        scene: the scene being rendered.
        caster: exact ray caster over the same scene, for correspondences and sampling.
    """

    scene: Scene
    caster: RayCaster

    def render(self, camera: Camera, *, shade: bool = True) -> ViewRender:
        """Render one view; with shade=False rgb is left black (geometry-only, faster)."""
        ...
