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
        hits = self.caster.cast(camera.center, pixel_ray_dirs(camera))
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


def pixel_ray_dirs(camera: Camera) -> np.ndarray:
    """The directions of `Camera.pixel_rays`, computed without BLAS.

    Same rays (pixel centres, camera-frame z = 1, row-major), but as elementwise products:
    numpy's (H*W, 3) @ (3, 3) goes to multithreaded OpenBLAS, whose spinning threads cost
    several times the work itself when every core already runs a render process.

    Returns:
        (H*W, 3) float64 world directions, camera-frame z component 1.
    """
    j, i = np.meshgrid(np.arange(camera.width) + 0.5, np.arange(camera.height) + 0.5)
    K_inv = np.linalg.inv(camera.K)
    d = [K_inv[r, 0] * j.ravel() + K_inv[r, 1] * i.ravel() + K_inv[r, 2] for r in range(3)]
    d = [d[0] / d[2], d[1] / d[2], np.ones_like(d[2])]
    R = camera.cam_to_world[:3, :3]
    return np.stack([R[r, 0] * d[0] + R[r, 1] * d[1] + R[r, 2] for r in range(3)], axis=1)
