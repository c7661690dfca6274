"""The default backend: Embree ray casting through pixel centres, float64-exact geometry.

One ray per pixel centre, with the camera-frame z component of its direction equal to 1,
so the refined ray parameter of a hit *is* its z-depth and the world point is
origin + t * dir with no division: depth and pointmap agree to float64 rounding.
"""

from __future__ import annotations

import numpy as np

from pipeline.render.base import ViewRender
from pipeline.render.camera import Camera
from pipeline.render.raycast import RayCaster
from pipeline.render.shading import Shader
from pipeline.scenes.base import Scene


class SceneRenderer:
    """A scene prepared once (BVH and colour tables) for rendering many views.

    Attributes:
        scene: the scene being rendered.
        caster: its exact ray caster, shared with correspondences and pair sampling.
        shader: its per-face colour tables.
    """

    backend = "embree"

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self.caster = RayCaster(scene)
        self.shader = Shader(scene)

    def render(self, camera: Camera, *, shade: bool = True) -> ViewRender:
        """Render one view.

        Args:
            camera: pinhole camera, OpenCV axes.
            shade: compute colours; False leaves rgb black, for geometry-only checks.

        Returns:
            The view's rgb, depth, world pointmap, valid mask and face ids, (H, W, ...).
        """
        H, W = camera.height, camera.width
        origins, dirs = camera.pixel_rays()
        hits = self.caster.cast(origins[0], dirs)
        valid = hits.hit
        rgb = np.zeros((H * W, 3), np.uint8)
        if shade and valid.any():
            rgb[valid] = self.shader.shade(hits.face[valid], hits.bary[valid])
        depth = np.where(valid, hits.t, 0.0)
        return ViewRender(
            camera=camera,
            rgb=rgb.reshape(H, W, 3),
            depth=depth.reshape(H, W),
            pts_world=hits.points.reshape(H, W, 3),
            valid=valid.reshape(H, W),
            face=hits.face.reshape(H, W),
        )
