"""Dense pixel correspondences between two rendered views, with exact occlusion.

For each valid pixel of a source view, its exact surface point is projected into the
target camera. It has a correspondence there iff it lands inside the target image, in
front of the camera, and is not occluded. Occlusion is decided by a second exact ray cast
from the target camera's centre towards the point: with the direction P - C, the point
itself sits at t = 1, so the point is visible iff the first hit has t >= 1 - rtol. A
relative tolerance (not an absolute one) keeps the test scale-free; both distances are
float64-refined, so a surface never occludes itself.
"""

from __future__ import annotations

import numpy as np

from pipeline.render.base import ViewRender
from pipeline.render.camera import Camera
from pipeline.render.raycast import RayCaster

OCCLUSION_RTOL = 1e-4


def correspondences(
    caster: RayCaster, src: ViewRender, dst: ViewRender, *, rtol: float = OCCLUSION_RTOL
) -> np.ndarray:
    """Where each pixel of `src` is seen in `dst`.

    Args:
        caster: ray caster of the scene both views were rendered from.
        src: view whose pixels are looked up.
        dst: view they are looked up in.
        rtol: relative distance tolerance of the occlusion test.

    Returns:
        (H, W, 2) float64 sub-pixel (u, v) in `dst` (u = column, v = row, pixel centres at
        +0.5) of each `src` pixel's surface point; NaN where `src` is invalid or the point
        is outside `dst`'s image, behind it, or occluded.
    """
    H, W = src.valid.shape
    out = np.full((H * W, 2), np.nan)
    idx = np.flatnonzero(src.valid.ravel())
    pts = src.pts_world.reshape(-1, 3)[idx]
    cam = dst.camera
    uv, z = project(cam, pts)
    inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] >= 0) & (uv[:, 1] < cam.height)
    idx, pts, uv = idx[inside], pts[inside], uv[inside]
    hits = caster.cast(cam.center, pts - cam.center)
    # A miss can only come from float32 traversal slipping through a crack next to the
    # point's own face, so it counts as visible.
    visible = hits.t >= 1.0 - rtol
    out[idx[visible]] = uv[visible]
    return out.reshape(H, W, 2)


def project(camera: Camera, points_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`Camera.project` for (N, 3) points, as einsums: numpy's (N, 3) @ (3, 3) goes to
    multithreaded OpenBLAS, whose spinning threads cost more than the work when every core
    runs a render process.

    Returns:
        uv: (N, 2) pixel coordinates (pixel centres at +0.5); z: (N,) camera-frame depth.
    """
    w2c = camera.world_to_cam
    pc = np.einsum("ij,nj->ni", w2c[:3, :3], points_world) + w2c[:3, 3]
    uvw = np.einsum("ij,nj->ni", camera.K, pc)
    with np.errstate(divide="ignore", invalid="ignore"):
        return uvw[:, :2] / uvw[:, 2:3], pc[:, 2]


def overlap_fraction(corr_2to1: np.ndarray, valid2: np.ndarray) -> float:
    """Share of view-2 valid pixels that are visible in view 1.

    Args:
        corr_2to1: (H, W, 2) correspondences of view-2 pixels in view 1, NaN where none.
        valid2: (H, W) bool valid mask of view 2.

    Returns:
        Overlap in [0, 1]; 0 when view 2 has no valid pixel.
    """
    n = int(valid2.sum())
    if n == 0:
        return 0.0
    return float(np.isfinite(corr_2to1[..., 0]).sum() / n)
