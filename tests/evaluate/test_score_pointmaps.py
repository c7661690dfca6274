"""The batched scoring path (shared targets, gathered stacks, selected medians) equals a
straightforward per-prediction computation in numpy float64 on random pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.jobs.eval_pointmaps import METRICS, batch_targets, score_batch, score_targets

H = W = 96  # 2 x 9k pixels, random valid masks


def normalised_np(points: np.ndarray) -> tuple[np.ndarray, float]:
    """E.1 steps 1-3 on (n, 3): subtract the median z; scale = median distance to the median point."""
    shifted = points.copy()
    shifted[:, 2] -= np.median(points[:, 2])
    return shifted, float(np.median(np.linalg.norm(shifted - np.median(shifted, axis=0), axis=1)))


def ssi_np(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """E.1 per-point errors of one prediction (n, 3) against gt (n, 3)."""
    (p, s_p), (g, s_g) = normalised_np(pred), normalised_np(gt)
    return np.linalg.norm(p * (s_g / s_p) - g, axis=1)


def procrustes_np(pred: np.ndarray, gt: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted rigid fit by SVD of the centred weighted covariance, then E.1 on the moved points."""
    w = w / w.sum()
    mu_p, mu_g = w @ pred, w @ gt
    u, _, vh = np.linalg.svd((pred - mu_p).T @ ((gt - mu_g) * w[:, None]))
    d = np.sign(np.linalg.det(vh.T @ u.T))
    rot = vh.T @ np.diag([1.0, 1.0, d]) @ u.T
    return ssi_np(pred @ rot.T + (mu_g - rot @ mu_p), gt)


def depth_np(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """Least-squares s * pred + t to gt, then absrel of the aligned depths as they are and
    delta1 with aligned depths <= 0 counted as wrong (as pipeline/metrics/depth.py defines them)."""
    s, t = np.linalg.lstsq(np.stack([pred, np.ones_like(pred)], 1), gt, rcond=None)[0]
    d = s * pred + t
    abs_rel = float(np.mean(np.abs(d - gt) / gt))
    with np.errstate(divide="ignore"):
        within = (d > 0) & (np.maximum(d / gt, gt / d) < 1.25)
    return abs_rel, float(np.mean(within))


def reference(
    pred: np.ndarray, conf: np.ndarray, gt: np.ndarray, depth: np.ndarray, valid: np.ndarray
) -> dict:
    """Every metric of one prediction of one pair, the plain way (float64)."""
    pred, conf, gt = pred.astype(np.float64), conf.astype(np.float64), gt.astype(np.float64)
    err = ssi_np(pred[valid], gt[valid])
    n1 = int(valid[0].sum())
    out = {"ssi_error": err.mean(), "ssi_error_v1": err[:n1].mean(), "ssi_error_v2": err[n1:].mean()}
    v2 = valid[1]
    out["procrustes_v2_error"] = (
        procrustes_np(pred[1][v2], gt[1][v2], conf[1][v2]).mean() if v2.sum() >= 3 else np.nan
    )
    mask = valid[0] & (depth[0] > 0)
    abs_rel, delta1 = depth_np(pred[0][mask][:, 2], depth[0][mask].astype(np.float64))
    return out | {"depth_abs_rel": abs_rel, "depth_delta1": delta1}


def random_pairs(seed: int) -> tuple[np.ndarray, ...]:
    """Two pairs of GT points, depth, valid masks and three noisy, rescaled predictions each."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, H), np.linspace(-1, 1, W), indexing="ij")
    depth = 2 + rng.uniform(0, 3, size=(2, 2, H, W)) * (1 + 0.3 * xx)
    gt = np.stack([xx * depth, yy * depth, depth], -1).astype(np.float32)  # (B, V, H, W, 3)
    valid = rng.random((2, 2, H, W)) > 0.1
    depth[1, 0, :5] = 0.0  # pixels without depth are left out of the depth metrics only
    noise = rng.normal(0, 0.1, size=(2, 3, 2, H, W, 3))
    scale = rng.uniform(0.5, 2, size=(1, 3, 1, 1, 1, 1))
    pred = (scale * (gt[:, None] + noise) + [0, 0, 0.3]).astype(np.float32)  # (B, L, V, H, W, 3)
    conf = rng.uniform(1, 5, size=(2, 3, 2, H, W)).astype(np.float32)
    return pred, conf, gt, depth.astype(np.float32), valid


@pytest.mark.parametrize("patch_size", [1, 8])
def test_batched_scores_equal_per_prediction_reference(patch_size: int) -> None:
    """In image order (patch 1) and in the per-token order of 8-pixel patches (what evaluate uses)."""
    pred, conf, gt, depth, valid = random_pairs(0)
    # outputs as probe sets give them, but not contiguous: channels of one (..., 4) tensor
    packed = torch.from_numpy(np.concatenate([pred, conf[..., None]], -1))
    outputs = {f"loc{j}": {"pred": packed[:, j, ..., :3], "conf": packed[:, j, ..., 3]} for j in range(3)}
    targets = batch_targets(
        torch.from_numpy(gt), torch.from_numpy(depth), torch.from_numpy(valid), patch_size=patch_size
    )
    got = score_targets(outputs, targets, head="pointmap", procrustes_scale=False)
    for b in range(2):
        for j in range(3):
            ref = reference(pred[b, j], conf[b, j], gt[b], depth[b], valid[b])
            for name in METRICS:
                assert got[name][b, j] == pytest.approx(ref[name], rel=2e-5), (b, j, name)


def test_view2_without_points_and_depth_head() -> None:
    pred, conf, gt, depth, valid = random_pairs(1)
    valid[0, 1] = False
    valid[0, 1, 0, :2] = True  # 2 valid pixels in view 2: too few for a rigid fit
    outputs = {
        f"loc{j}": {"pred": torch.from_numpy(pred[:, j, ..., 2:]), "conf": torch.from_numpy(conf[:, j])}
        for j in range(3)
    }
    args = (torch.from_numpy(gt), torch.from_numpy(depth), torch.from_numpy(valid))
    as_depth = score_batch(outputs, *args, head="depth", procrustes_scale=False)
    outputs = {
        j: {"pred": torch.from_numpy(pred[:, j]), "conf": torch.from_numpy(conf[:, j])} for j in range(3)
    }
    as_points = score_batch(outputs, *args, head="pointmap", procrustes_scale=False)
    assert np.isnan(as_points["procrustes_v2_error"][0]).all()
    assert np.isfinite(as_points["procrustes_v2_error"][1]).all()
    assert all(np.isnan(as_depth[name]).all() for name in METRICS[:4])
    for name in ("depth_abs_rel", "depth_delta1"):  # a depth probe's view-1 depth = a pointmap's z
        np.testing.assert_array_equal(as_depth[name], as_points[name])
