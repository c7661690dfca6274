"""One view pair as the figures and viewers need it, and the geometry they share.

Every viewer and figure works on a `PairView` plus a dict of probed pointmaps, so the same
code serves a pair read from the stores and a pair of the user's photos run live. Points
are in view 1's camera frame (OpenCV axes: x right, y down, z forward). Predicted
pointmaps have an arbitrary scale, so each pointmap pair is shown divided by its own scale
(the mean distance to view 1's camera over the drawn pixels, as DUSt3R's loss normalises).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.errors import ShapeError


@dataclass(frozen=True)
class PairView:
    """A pair's images, cameras and reference pointmaps.

    Attributes:
        rgb: (V, H, W, 3) uint8 images, view 1 first.
        valid: (V, H, W) bool, the pixels to draw (GT validity, or all pixels for photos).
        cam_to_view1: (V, 4, 4) each camera's frame to view 1's frame (OpenCV axes), in the
            units of `gt` (metres) or of `model` when there is no GT.
        intrinsics: (V, 3, 3) pinhole K in pixels.
        gt: (V, H, W, 3) ground-truth pointmaps in view 1's frame, or None (photos).
        model: (V, H, W, 3) the model's own output pointmaps in view 1's frame, or None.
        model_conf: (V, H, W) the model's confidence, or None.
        title: one line naming the pair.
        identity: label → value lines describing the run (model, weights, stores, pair).
    """

    rgb: np.ndarray
    valid: np.ndarray
    cam_to_view1: np.ndarray
    intrinsics: np.ndarray
    gt: np.ndarray | None = None
    model: np.ndarray | None = None
    model_conf: np.ndarray | None = None
    title: str = ""
    identity: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        V, H, W, _ = self.rgb.shape
        expect = {
            "valid": (self.valid, (V, H, W)),
            "cam_to_view1": (self.cam_to_view1, (V, 4, 4)),
            "intrinsics": (self.intrinsics, (V, 3, 3)),
            "gt": (self.gt, (V, H, W, 3)),
            "model": (self.model, (V, H, W, 3)),
            "model_conf": (self.model_conf, (V, H, W)),
        }
        for name, (value, shape) in expect.items():
            if value is not None and tuple(value.shape) != shape:
                raise ShapeError(
                    f"PairView.{name}: expected {shape} (V, H, W from rgb {self.rgb.shape}), got {value.shape}"
                )

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) in pixels."""
        return self.rgb.shape[1], self.rgb.shape[2]


def pointmap_scale(points: np.ndarray, mask: np.ndarray) -> float:
    """Mean distance to view 1's camera of the finite masked points (1.0 when there are none).

    Args:
        points: (V, H, W, 3) in view 1's frame.
        mask: (V, H, W) bool.
    """
    keep = mask & np.isfinite(points).all(-1)
    if not keep.any():
        return 1.0
    scale = float(np.linalg.norm(points[keep], axis=-1).mean())
    return scale if scale > 0 else 1.0


def frustum_segments(
    cam_to_view1: np.ndarray, K: np.ndarray, size: tuple[int, int], depth: float
) -> np.ndarray:
    """Line segments drawing a camera as a pyramid from its centre to its image at `depth`.

    Args:
        cam_to_view1: (4, 4) camera frame → view 1's frame.
        K: (3, 3) pinhole intrinsics, pixels.
        size: (H, W) image size, pixels.
        depth: distance of the image rectangle along the optical axis, in the frame's units.

    Returns:
        (8, 2, 3): 4 edges from the centre to the corners, then the 4 sides of the rectangle.
    """
    H, W = size
    corners = np.array([[0, 0, 1], [W, 0, 1], [W, H, 1], [0, H, 1]], dtype=np.float64)
    rays = corners @ np.linalg.inv(K).T * depth  # (4, 3) in the camera frame
    R, t = cam_to_view1[:3, :3], cam_to_view1[:3, 3]
    world = rays @ R.T + t
    edges = [(t, c) for c in world] + [(world[i], world[(i + 1) % 4]) for i in range(4)]
    return np.array(edges)


def confidence_rank(conf: np.ndarray) -> np.ndarray:
    """Each value's percentile rank within its view as uint8 (0 least, 255 most confident).

    Args:
        conf: (V, M) confidences; NaN ranks lowest.
    """
    out = np.zeros(conf.shape, np.uint8)
    for v in range(conf.shape[0]):
        c = np.nan_to_num(conf[v].astype(np.float64), nan=-np.inf)
        ranks = np.argsort(np.argsort(c, kind="stable"), kind="stable")
        out[v] = np.round(ranks * 255 / max(len(c) - 1, 1)).astype(np.uint8)
    return out


def estimate_focal(points: np.ndarray, size: tuple[int, int]) -> float:
    """Focal length (pixels) that best projects a view's own-frame pointmap onto its pixels.

    Least squares of u - cx = f·x/z and v - cy = f·y/z over pixels with z > 0, the way
    DUSt3R recovers intrinsics from a pointmap; used for photos, which have no K.

    Args:
        points: (H, W, 3) in the view's own camera frame.
        size: (H, W).
    """
    H, W = size
    v, u = np.mgrid[0:H, 0:W] + 0.5
    z = points[..., 2]
    ok = np.isfinite(points).all(-1) & (z > 1e-6)
    if not ok.any():
        return float(max(H, W))
    a = np.concatenate([points[..., 0][ok] / z[ok], points[..., 1][ok] / z[ok]])
    b = np.concatenate([u[ok] - W / 2, v[ok] - H / 2])
    f = float(a @ b / max(a @ a, 1e-12))
    return f if f > 0 else float(max(H, W))


def similarity_transform(src: np.ndarray, dst: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(4, 4) rigid transform T (rotation and translation, the scale folded into dst's units)
    minimising sum w·||s·R·src + t - dst||², with the scale applied to the translation only.

    Used to place view 2's camera from two pointmaps of view 2: in its own frame (src) and in
    view 1's frame (dst). Umeyama's closed form with the reflection fix.

    Args:
        src: (M, 3) points; dst: (M, 3) the same points in the target frame; weights: (M,) >= 0.
    """
    w = weights / max(weights.sum(), 1e-12)
    mu_s, mu_d = w @ src, w @ dst
    xs, xd = src - mu_s, dst - mu_d
    cov = (xd * w[:, None]).T @ xs
    U, S, Vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(U @ Vt)) or 1.0
    D = np.diag([1.0, 1.0, d])
    R = U @ D @ Vt
    var_s = float(w @ (xs**2).sum(-1))
    s = float(np.trace(np.diag(S) @ D) / max(var_s, 1e-12))
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, mu_d - s * R @ mu_s
    return T
