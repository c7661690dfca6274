"""Scale-shift invariant pointmap error (paper, Appendix E.1).

Metrics work on point sets: the valid pixels of a pair (or of one view), gathered into
(n, 3) rows, with any number of leading prediction dims (locations, probe sets) in front,
because a pair's valid mask is the same for every location's prediction. Medians are the
numpy kind (the mean of the two middle values for an even count) and come from
`torch.kthvalue`, which is linear in n; sorting 38 locations x 100k points per pair was
the slowest part of evaluation.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pipeline.errors import ShapeError


def median(x: Tensor, dim: int = -1) -> Tensor:
    """numpy-style median along `dim`: the mean of the two middle values for an even count.

    Args:
        x: (..., n, ...) finite values; n >= 1 along `dim`.

    Returns:
        x with `dim` removed.
    """
    n = x.shape[dim]
    if n == 0:
        raise ShapeError(f"median of an empty dim {dim} of shape {tuple(x.shape)}")
    lo = x.kthvalue((n + 1) // 2, dim=dim).values
    return lo if n % 2 else (lo + x.kthvalue(n // 2 + 1, dim=dim).values) / 2


def shift_and_scale(points: Tensor) -> tuple[Tensor, Tensor]:
    """Steps 1-3 of E.1: subtract the median depth; scale = median distance to the median point.

    Args:
        points: (..., n, 3) points of one pointmap pair (or of one view), xyz in one camera frame.

    Returns:
        shifted: (..., n, 3) with the median z subtracted from every z.
        scale: (...,) median norm of `shifted` relative to its coordinate-wise median.
    """
    z = points[..., 2]
    shifted = torch.cat([points[..., :2], (z - median(z)[..., None])[..., None]], dim=-1)
    origin = median(shifted, dim=-2)  # (..., 3) coordinate-wise
    return shifted, median((shifted - origin[..., None, :]).norm(dim=-1))


def ssi_point_errors(pred: Tensor, gt: Tensor) -> Tensor:
    """Per-point scale-shift invariant error of E.1 between matching point sets.

    Both sets are shifted by their own median depth; the prediction is then multiplied by
    s_gt / s_pred (about the camera origin, as the paper writes it) and compared with the
    shifted ground truth, which is not rescaled: the error is in the ground truth's units.

    Args:
        pred: (..., n, 3) predicted points, e.g. (L, n, 3) for L locations.
        gt: (n, 3) ground-truth points in the same camera frame, metres.

    Returns:
        (..., n) L2 distance per point, metres.

    Example:
        >>> g = torch.rand(100, 3) + 1
        >>> ssi_point_errors(2.0 * g + torch.tensor([0, 0, 5.0]), g).abs().max() < 1e-5
        tensor(True)
    """
    if pred.shape[-2:] != gt.shape or gt.shape[-1] != 3:
        raise ShapeError(
            f"pred: expected (..., n, 3) with n={gt.shape[0]} (from gt (n, 3)), got {tuple(pred.shape)}"
        )
    p, s_p = shift_and_scale(pred)
    g, s_g = shift_and_scale(gt)
    ratio = s_g / s_p.clamp(min=torch.finfo(s_p.dtype).tiny)
    return (p * ratio[..., None, None] - g).norm(dim=-1)


def gather_valid(images: Tensor, valid: Tensor) -> Tensor:
    """Valid pixels of one pair as rows.

    Args:
        images: (..., V, H, W, C) per-pixel values of one pair.
        valid: (V, H, W) bool.

    Returns:
        (..., n, C) with n = valid.sum(), in (view, y, x) order.
    """
    if images.shape[-4:-1] != valid.shape:
        raise ShapeError(
            f"images: expected (..., V, H, W, C) with (V, H, W)={tuple(valid.shape)}, got {tuple(images.shape)}"
        )
    return images[..., valid, :]


def ssi_error(pred: Tensor, gt: Tensor, valid: Tensor) -> dict[str, Tensor]:
    """Mean scale-shift invariant error of one pair, over both views and per view (E.1).

    Args:
        pred: (..., V, H, W, 3) predicted pointmaps of one pair, both in view 1's frame.
        gt: (V, H, W, 3) ground-truth pointmaps in view 1's camera frame, metres.
        valid: (V, H, W) bool, ground-truth valid pixels.

    Returns:
        "ssi_error": (...) mean over the valid pixels of both views; "ssi_error_v1",
        "ssi_error_v2": (...) the same errors averaged per view (NaN for a view without
        valid pixels). All NaN when the pair has no valid pixel.
    """
    n_view = valid.flatten(1).sum(1)
    lead = pred.shape[:-4]
    if int(n_view.sum()) == 0:
        nan = torch.full(lead, torch.nan, dtype=pred.dtype, device=pred.device)
        return {"ssi_error": nan, "ssi_error_v1": nan, "ssi_error_v2": nan.clone()}
    err = ssi_point_errors(gather_valid(pred, valid), gather_valid(gt, valid))
    v1, v2 = err.split([int(n_view[0]), int(n_view[1])], dim=-1)
    nan = torch.full(lead, torch.nan, dtype=err.dtype, device=err.device)
    return {
        "ssi_error": err.mean(-1),
        "ssi_error_v1": v1.mean(-1) if v1.shape[-1] else nan,
        "ssi_error_v2": v2.mean(-1) if v2.shape[-1] else nan,
    }
