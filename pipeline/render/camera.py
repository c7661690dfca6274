"""Pinhole cameras with OpenCV axes and pixel-centre rays.

Conventions (used by every module that touches geometry):
- camera axes are OpenCV's: x right, y down, z forward; metres.
- pixel (u, v) = (column, row); the centre of pixel (i, j) (row i, col j) is at
  u = j + 0.5, v = i + 0.5, so a ray through pixel centres uses those coordinates with K.
- `cam_to_world` maps camera coordinates to world coordinates: X_w = R X_c + t.

Small (N, 3) x (3, 3) products use einsum rather than `@`: numpy sends `@` to a
multithreaded BLAS whose threads fight the render workers for the cores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.errors import ShapeError


@dataclass(frozen=True, eq=False)
class Camera:
    """A pinhole camera.

    Attributes:
        K: (3, 3) float64 intrinsics, pixels.
        cam_to_world: (4, 4) float64 rigid transform, OpenCV camera axes to world, metres.
        width: image width W in pixels.
        height: image height H in pixels.
    """

    K: np.ndarray
    cam_to_world: np.ndarray
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.K.shape != (3, 3):
            raise ShapeError(f"Camera.K: expected (3, 3), got {self.K.shape}")
        if self.cam_to_world.shape != (4, 4):
            raise ShapeError(f"Camera.cam_to_world: expected (4, 4), got {self.cam_to_world.shape}")

    @classmethod
    def from_fov(cls, fov_x_deg: float, width: int, height: int, cam_to_world: np.ndarray) -> Camera:
        """Square-pixel camera with the principal point at the image centre."""
        f = 0.5 * width / np.tan(np.deg2rad(fov_x_deg) / 2)
        K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], np.float64)
        return cls(K=K, cam_to_world=np.asarray(cam_to_world, np.float64), width=width, height=height)

    @property
    def world_to_cam(self) -> np.ndarray:
        """(4, 4) inverse of cam_to_world, computed exactly for a rigid transform."""
        R, t = self.cam_to_world[:3, :3], self.cam_to_world[:3, 3]
        out = np.eye(4)
        out[:3, :3] = R.T
        out[:3, 3] = -R.T @ t
        return out

    @property
    def center(self) -> np.ndarray:
        """(3,) camera centre in world coordinates."""
        return self.cam_to_world[:3, 3].copy()

    def pixel_rays(self) -> tuple[np.ndarray, np.ndarray]:
        """Rays through every pixel centre, row-major.

        Returns:
            origins: (H*W, 3) world, all equal to the camera centre.
            dirs_world: (H*W, 3) world directions with camera-frame z component 1 (not unit),
                so a hit at ray parameter t has z-depth exactly t.
        """
        j, i = np.meshgrid(np.arange(self.width) + 0.5, np.arange(self.height) + 0.5)
        pix = np.stack([j.ravel(), i.ravel(), np.ones(j.size)], axis=1)
        dirs_cam = np.einsum("ij,nj->ni", np.linalg.inv(self.K), pix)
        dirs_cam /= dirs_cam[:, 2:3]
        dirs_world = np.einsum("ij,nj->ni", self.cam_to_world[:3, :3], dirs_cam)
        origins = np.broadcast_to(self.center, dirs_world.shape).copy()
        return origins, dirs_world

    def project(self, points_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project world points to pixel coordinates.

        Args:
            points_world: (..., 3) world points, metres.

        Returns:
            uv: (..., 2) pixel coordinates (u = column, v = row; pixel centres at +0.5).
            z: (...) camera-frame depth; points with z <= 0 are behind the camera.
        """
        w2c = self.world_to_cam
        pc = np.einsum("ij,...j->...i", w2c[:3, :3], points_world) + w2c[:3, 3]
        z = pc[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uvw = np.einsum("ij,...j->...i", self.K, pc)
            uv = uvw[..., :2] / uvw[..., 2:3]
        return uv, z


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """(4, 4) cam_to_world of an OpenCV camera at `eye` looking at `target`.

    `up` is the world direction that should appear up in the image (-y of the camera).
    """
    eye, target, up = (np.asarray(a, np.float64) for a in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    n = np.linalg.norm(x)
    if n < 1e-9:  # looking straight along `up`: pick any perpendicular
        x = np.cross(z, np.array([1.0, 0, 0]) if abs(z[0]) < 0.9 else np.array([0, 1.0, 0]))
        n = np.linalg.norm(x)
    x /= n
    y = np.cross(z, x)
    out = np.eye(4)
    out[:3, 0], out[:3, 1], out[:3, 2], out[:3, 3] = x, y, z, eye
    return out
