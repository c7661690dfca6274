"""The Procrustes-aligned second-view error (paper, Appendix E.2, Fig. 4) and what each sublayer adds to it.

View 2's predicted points are moved by the rigid transform that best fits them to the
ground truth, weighted by the prediction's own confidence, and only then scored with the
E.1 error on view 2 alone. A wrong relative pose therefore costs nothing: what is left is
view 2's intra-view geometry, the quantity the paper follows through the decoder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pipeline.errors import ConfigError, ShapeError
from pipeline.metrics.bootstrap import bootstrap_of_means
from pipeline.metrics.pointmap import Normalised, gather_valid, normalise, ssi_point_errors
from pipeline.probing.locations import SUBLAYERS, block_name


def weighted_procrustes(
    pred: Tensor, gt: Tensor, weights: Tensor, *, with_scale: bool = False
) -> tuple[Tensor, Tensor]:
    """Rotation and translation minimising sum_i w_i ||R p_i + t - g_i||^2 (closed form, SVD).

    Solved in float64. The reflection fix (det R = +1) keeps R a rotation even when a
    mirrored fit would be closer. With `with_scale`, a scale s is fitted too (Umeyama's
    similarity, min sum_i w_i ||s R p_i + t - g_i||^2) and folded into the returned matrix.
    The weighted cross-covariance is taken as sum_i w_i p_i g_i^T / W - mu_p mu_g^T
    (W = sum_i w_i): one matrix product of the weighted points against the shared ground
    truth gives every moment of every prediction.

    Args:
        pred: (..., 3, n) points to move, channels first.
        gt: (3, n) target points.
        weights: (..., n) non-negative weights (the probe's confidences of view 2).
        with_scale: also fit a scale (not in the paper, which fits a rigid motion).

    Returns:
        M: (..., 3, 3) the rotation (times s with `with_scale`), and t: (..., 3), so that
        aligned = M @ pred + t[..., None].

    Example:
        >>> R, t = weighted_procrustes(torch.rand(2, 3, 50), torch.rand(3, 50), torch.ones(2, 50))
        >>> R.shape, t.shape
        (torch.Size([2, 3, 3]), torch.Size([2, 3]))
    """
    if pred.shape[-2:] != gt.shape or gt.shape[0] != 3 or weights.shape != pred.shape[:-2] + pred.shape[-1:]:
        raise ShapeError(
            f"expected pred (..., 3, n), gt (3, n), weights (..., n); got {tuple(pred.shape)}, "
            f"{tuple(gt.shape)}, {tuple(weights.shape)}"
        )
    # confidences 1 + exp(r) overflow float32 to inf for r > 88: such a pixel gets the largest
    # float32 weight instead of making every weight NaN after normalising
    w = weights.clamp(max=torch.finfo(torch.float32).max)
    n = pred.shape[-1]
    # rows w·x, w·y, w·z, w in float64, times [gt; 1]: every weighted moment in one product
    weighted = torch.empty((*pred.shape[:-2], 4, n), dtype=torch.float64, device=pred.device)
    weighted[..., 3, :] = w
    torch.mul(pred, weighted[..., 3:, :], out=weighted[..., :3, :])
    g = gt.double()
    moments = weighted @ torch.cat([g, g.new_ones(1, n)]).T  # (..., 4, 4)
    total = moments[..., 3, 3].clamp(min=torch.finfo(torch.float64).tiny)
    mu_p = moments[..., :3, 3] / total[..., None]  # (..., 3)
    mu_g = moments[..., 3, :3] / total[..., None]
    cov = (
        moments[..., :3, :3] / total[..., None, None] - mu_p[..., :, None] * mu_g[..., None, :]
    )  # (..., 3, 3)
    u, sigma, vh = torch.linalg.svd(cov)
    d = torch.sign(torch.linalg.det(vh.transpose(-1, -2) @ u.transpose(-1, -2)))
    signs = torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1)
    rot = vh.transpose(-1, -2) @ torch.diag_embed(signs) @ u.transpose(-1, -2)
    if with_scale:
        var_p = (weighted[..., :3, :] * pred).sum((-1, -2)) / total - mu_p.square().sum(-1)
        scale = (sigma * signs).sum(-1) / var_p.clamp(min=torch.finfo(var_p.dtype).tiny)
        rot = rot * scale[..., None, None]
    t = mu_g - (rot @ mu_p[..., None])[..., 0]
    return rot.to(pred.dtype), t.to(pred.dtype)


def procrustes_point_errors(
    pred: Tensor, conf: Tensor, gt: Tensor, gt_normalised: Normalised, *, with_scale: bool = False
) -> Tensor:
    """Per-point E.2 error: confidence-weighted rigid alignment, then E.1 on these points alone.

    Args:
        pred: (..., 3, n) predicted view-2 points (view 1's frame, any scale), channels first.
        conf: (..., n) the prediction's confidences, the Procrustes weights.
        gt: (3, n) ground-truth view-2 points, metres.
        gt_normalised: `normalise(gt)`, computed once and shared by every prediction.
        with_scale: fit a similarity instead of a rigid motion (see `weighted_procrustes`).

    Returns:
        (..., n) error per point, metres.
    """
    rot, t = weighted_procrustes(pred, gt, conf, with_scale=with_scale)
    return ssi_point_errors((rot @ pred).add_(t[..., None]), gt_normalised)


def procrustes_view2_error(
    pred: Tensor, conf: Tensor, gt: Tensor, valid: Tensor, *, with_scale: bool = False
) -> Tensor:
    """Mean Procrustes-aligned view-2 error of one pair (E.2).

    Args:
        pred: (..., V, H, W, 3) predicted pointmaps of one pair; only view 2 is used.
        conf: (..., V, H, W) predicted confidences.
        gt: (V, H, W, 3) ground truth in view 1's camera frame, metres.
        valid: (V, H, W) bool.
        with_scale: fit a similarity instead of the paper's rigid motion. A rigid fit of
            points of another scale leaves an offset that E.1 does not forgive (it forgives
            depth shift and scale only), so this matters for probes whose scale is free.

    Returns:
        (...) mean error over view 2's valid pixels, metres; NaN when it has fewer than 3.
    """
    mask = valid[1:]
    if int(mask.sum()) < 3:
        return torch.full(pred.shape[:-4], torch.nan, dtype=pred.dtype, device=pred.device)
    g = gather_valid(gt[1:], mask)
    p = gather_valid(pred[..., 1:, :, :, :], mask)
    c = gather_valid(conf[..., 1:, :, :, None], mask)[..., 0, :]
    return procrustes_point_errors(p, c, g, normalise(g), with_scale=with_scale).mean(-1)


def previous_location(block: int, sublayer: str) -> str:
    """The stream location just before block `block`'s `sublayer` adds its output."""
    if sublayer == "self":
        return "dec_in" if block == 0 else f"{block_name(block - 1)}.mlp"
    return f"{block_name(block)}.{SUBLAYERS[SUBLAYERS.index(sublayer) - 1]}"


def sublayer_contributions(errors: Mapping[str, float | np.ndarray], dec_depth: int) -> dict[str, Any]:
    """What each sublayer changes in an error, per block and summed by type, relative to dec_in.

    contribution(bXX.s) = (error after bXX.s - error before it) / error at dec_in; the
    paper quotes the sums per type (self-attention -94%, cross +11%, MLP +7%).

    Args:
        errors: location -> error (e.g. mean Procrustes view-2 error) with dec_in and every
            bXX.self/cross/mlp of the `dec_depth` blocks; floats, or arrays of one shape
            (e.g. one mean per bootstrap resample), computed elementwise.
        dec_depth: decoder blocks.

    Returns:
        {"per_block": {"b00.self": c, ...}, "total": {"self": c, "cross": c, "mlp": c}}.

    Raises:
        ConfigError: a location is missing from `errors`.
    """
    missing = [loc for loc in contribution_locations(dec_depth) if loc not in errors]
    if missing:
        raise ConfigError(f"sublayer contributions need every location from dec_in on; missing {missing[:3]}")
    base = errors["dec_in"]
    per_block = {
        f"{block_name(b)}.{s}": (errors[f"{block_name(b)}.{s}"] - errors[previous_location(b, s)]) / base
        for b in range(dec_depth)
        for s in SUBLAYERS
    }
    total = {s: sum(v for k, v in per_block.items() if k.endswith(f".{s}")) for s in SUBLAYERS}
    return {"per_block": per_block, "total": total}


def contribution_locations(dec_depth: int) -> list[str]:
    """dec_in and every block's three residual locations: what `sublayer_contributions` reads."""
    return ["dec_in"] + [f"{block_name(b)}.{s}" for b in range(dec_depth) for s in SUBLAYERS]


def bootstrap_contributions(
    errors: np.ndarray, dec_depth: int, *, n_boot: int, confidence: float, seed: int
) -> dict[str, dict[str, float]]:
    """`sublayer_contributions` of the mean errors over pairs, with percentile bootstrap intervals.

    A contribution is a ratio of differences of means, not a mean over pairs, so each
    resample of pairs recomputes every location's mean error and then the contributions
    (`bootstrap_of_means`); the draws are those of `bootstrap_mean` for the same seed.

    Args:
        errors: (P, 1 + 3 * dec_depth) per-pair errors at `contribution_locations(dec_depth)`,
            in that order; NaN where a pair has none. A pair with a NaN anywhere is left out
            of every location's mean (its row still counts in the draws, which stay those
            of the other metrics), so no difference mixes two sets of pairs.
        dec_depth: decoder blocks.
        n_boot, confidence, seed: the bootstrap's settings (`bootstrap_mean`).

    Returns:
        "per_block", "total" as in `sublayer_contributions`, and the interval bounds
        "per_block_lo", "per_block_hi", "total_lo", "total_hi" under the same keys.
    """
    locations = contribution_locations(dec_depth)
    if errors.ndim != 2 or errors.shape[1] != len(locations):
        raise ShapeError(f"errors: expected (P, {len(locations)}) for {dec_depth} blocks, got {errors.shape}")
    names = [f"{block_name(b)}.{s}" for b in range(dec_depth) for s in SUBLAYERS]
    # a pair missing any location leaves every mean: each contribution compares the same pairs
    errors = np.where(np.isfinite(errors).all(1, keepdims=True), errors, np.nan)

    def statistic(means: np.ndarray) -> np.ndarray:
        c = sublayer_contributions({loc: means[..., i] for i, loc in enumerate(locations)}, dec_depth)
        return np.stack([c["per_block"][k] for k in names] + [c["total"][s] for s in SUBLAYERS], -1)

    out = bootstrap_of_means(errors, statistic, n_boot=n_boot, confidence=confidence, seed=seed)
    parts = {"per_block": (names, slice(0, len(names))), "total": (SUBLAYERS, slice(len(names), None))}
    suffixes = {"": "value", "_lo": "low", "_hi": "high"}
    return {
        f"{part}{suffix}": dict(zip(keys, out[stat][cols].tolist(), strict=True))
        for part, (keys, cols) in parts.items()
        for suffix, stat in suffixes.items()
    }
