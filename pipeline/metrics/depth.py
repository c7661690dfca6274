"""Relative depth accuracy after least-squares scale-and-shift alignment (paper, Appendix A, Table 1).

A probe's depth is only defined up to scale (pointmap probes are trained scale-invariantly)
and, for depth probes read out of an exponential map, effectively up to shift too; so
each prediction is first fitted to the ground truth by d' = s d + t in least squares, per
view, as in MiDaS-style evaluation, and then scored with absrel and delta1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pipeline.errors import ShapeError

DELTA1 = 1.25


def align_scale_shift(pred: Tensor, gt: Tensor) -> Tensor:
    """pred fitted to gt by the least-squares s * pred + t (closed form).

    Args:
        pred: (..., n) predicted depths of one view's valid pixels.
        gt: (n,) ground-truth depths, metres.

    Returns:
        (..., n) aligned predictions; a constant prediction gets t = mean(gt).
    """
    if pred.shape[-1:] != gt.shape:
        raise ShapeError(f"pred: expected (..., n) with n={gt.shape[0]} (from gt), got {tuple(pred.shape)}")
    # centred first, so the sums in pred's own precision (float32 here) cancel nothing; torch
    # sums pairwise, and the aligned depths match a float64 fit to ~1e-6 relative
    g_mean = gt.mean()
    p_c = pred - pred.mean(-1, keepdim=True)
    var = p_c.square().sum(-1, keepdim=True)
    s = (p_c * (gt - g_mean)).sum(-1, keepdim=True) / var.clamp(min=torch.finfo(var.dtype).tiny)
    return p_c.mul_(s).add_(g_mean)


def depth_errors(pred: Tensor, gt: Tensor) -> dict[str, Tensor]:
    """absrel and delta1 of aligned depths.

    Aligned depths <= 0 (possible after a shift) are clamped to the smallest positive
    float, so they count as wrong for delta1 rather than passing max(d/g, g/d) < 1.25
    with a negative ratio.

    Args:
        pred: (..., n) aligned predicted depths (see `align_scale_shift`).
        gt: (n,) ground-truth depths, > 0, metres.

    Returns:
        "depth_abs_rel": (...) mean |d - g| / g; "depth_delta1": (...) share of pixels with
        max(d / g, g / d) < 1.25.

    Example:
        >>> depth_errors(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0]))["depth_delta1"]
        tensor(0.5000)
    """
    d = pred.clamp(min=torch.finfo(pred.dtype).tiny)  # for the ratio only: a depth <= 0 is never within 1.25
    ratio = torch.maximum(d / gt, gt / d)
    return {
        "depth_abs_rel": ((pred - gt).abs() / gt).mean(-1),  # unclamped: an aligned depth of -1 for 1 costs 2
        "depth_delta1": (ratio < DELTA1).to(pred.dtype).mean(-1),
    }


def depth_metrics(pred: Tensor, gt: Tensor, valid: Tensor) -> dict[str, Tensor]:
    """Scale-and-shift aligned absrel and delta1 of one view of one pair.

    Args:
        pred: (..., H, W) predicted depth of the view, in its own camera frame (for a
            pointmap probe of view 1: the z of its points).
        gt: (H, W) ground-truth z-depth, metres.
        valid: (H, W) bool; pixels with gt <= 0 are left out too.

    Returns:
        "depth_abs_rel", "depth_delta1": (...); NaN with fewer than 2 valid pixels.
    """
    mask = valid & (gt > 0)
    if int(mask.sum()) < 2:
        nan = torch.full(pred.shape[:-2], torch.nan, dtype=pred.dtype, device=pred.device)
        return {"depth_abs_rel": nan, "depth_delta1": nan.clone()}
    g = gt[mask]
    return depth_errors(align_scale_shift(pred[..., mask], g), g)
