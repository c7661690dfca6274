"""DUSt3R's confidence-aware, scale-invariant regression loss (dust3r_spec.md §5).

`ConfLoss(Regr3D(L21, norm_mode='avg_dis'), alpha)`: each pair's predicted pointmaps (both
views together) are divided by their mean distance to the origin over the ground truth's
valid pixels, and so are the ground-truth pointmaps; the loss of view v is the mean over
its valid pixels, pooled over the batch, of conf · ‖pred − gt‖ − alpha · log conf, and the
two views' losses add up. Written over leading probe dims so one call scores every probe.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pipeline.errors import ShapeError


def pair_scale(x: Tensor, valid: Tensor) -> Tensor:
    """Mean norm over the valid pixels of both views of each pair ('avg_dis').

    Args:
        x: (..., B, V, H, W, C) points (C = 3) or depths (C = 1); finite where valid.
        valid: (B, V, H, W) ground-truth valid pixels.

    Returns:
        (..., B, 1, 1, 1, 1), clipped to >= 1e-8 so empty pairs stay finite.
    """
    total = torch.where(valid, x.norm(dim=-1), 0).sum(dim=(-3, -2, -1))
    count = valid.sum(dim=(-3, -2, -1))
    return (total / (count + 1e-8)).clamp(min=1e-8)[..., None, None, None, None]


def conf_regression_loss(
    pred: Tensor, conf: Tensor, gt: Tensor, valid: Tensor, *, alpha: float = 0.2
) -> Tensor:
    """DUSt3R's training loss for every probe at once.

    Args:
        pred: (..., B, V, H, W, C) predictions; pointmaps in view 1's frame (C = 3) or depth (C = 1).
        conf: (..., B, V, H, W) predicted confidences, > 0 (1 + exp(r) for DUSt3R heads).
        gt: (B, V, H, W, C) ground truth in the same frame; may be NaN where not valid.
        valid: (B, V, H, W) bool, the pixels that count.
        alpha: weight of the −log conf term.

    Returns:
        (...) the loss of each probe: sum over views of the batch-pooled mean over valid pixels.
        A view with no valid pixel in the batch adds 0 (DUSt3R would return NaN).

    Example:
        >>> conf_regression_loss(torch.ones(5, 2, 2, 4, 4, 3), torch.ones(5, 2, 2, 4, 4),
        ...                      torch.ones(2, 2, 4, 4, 3), torch.ones(2, 2, 4, 4, dtype=torch.bool)).shape
        torch.Size([5])
    """
    if gt.shape != pred.shape[-5:] or valid.shape != gt.shape[:-1] or conf.shape != pred.shape[:-1]:
        raise ShapeError(
            f"expected pred (..., B, V, H, W, C), conf (..., B, V, H, W), gt (B, V, H, W, C) and valid "
            f"(B, V, H, W); got pred {tuple(pred.shape)}, conf {tuple(conf.shape)}, gt {tuple(gt.shape)}, "
            f"valid {tuple(valid.shape)}"
        )
    valid = valid.bool()
    gt = torch.where(valid[..., None], gt, 0)  # NaN-free; no probe axis, so cheap
    gt_n = gt / pair_scale(gt, valid)
    # pred / s_pred − gt_n in one pass over the (large) predictions
    dist = torch.addcmul(-gt_n, pred, 1 / pair_scale(pred, valid)).norm(dim=-1)
    per_pixel = torch.where(valid, conf * dist - alpha * torch.log(conf), 0)
    per_view = per_pixel.sum(dim=(-4, -2, -1)) / valid.sum(dim=(0, 2, 3)).clamp(min=1)
    return per_view.sum(dim=-1)
