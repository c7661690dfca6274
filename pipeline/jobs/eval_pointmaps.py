"""Score every location's pointmap (or depth) prediction of a batch of pairs.

One call per prediction method (a probe set, the head lens, the model's own output): the
locations are stacked on a leading dim so each pair's medians, alignments and depth fits
run once for all of them (the metrics in `pipeline.metrics` take leading dims).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

from pipeline.metrics.depth import depth_metrics
from pipeline.metrics.pointmap import ssi_error
from pipeline.metrics.procrustes import procrustes_view2_error

POINTMAP_METRICS = ("ssi_error", "ssi_error_v1", "ssi_error_v2", "procrustes_v2_error")
DEPTH_METRICS = ("depth_abs_rel", "depth_delta1")
METRICS = POINTMAP_METRICS + DEPTH_METRICS


def score_pair(
    pred: Tensor, conf: Tensor, gt: Tensor, depth: Tensor, valid: Tensor, *, head: str, procrustes_scale: bool
) -> dict[str, Tensor]:
    """Every metric of L predictions of one pair.

    Depth is scored on view 1 only: a pointmap probe's view-2 points are in view 1's frame,
    so their z is not view 2's depth, and Table 1 compares both probe kinds on equal pixels.

    Args:
        pred: (L, V, H, W, 3) pointmaps in view 1's frame, or (L, V, H, W, 1) depth (head "depth").
        conf: (L, V, H, W) predicted confidences.
        gt: (V, H, W, 3) ground-truth points in view 1's camera frame, metres.
        depth: (V, H, W) ground-truth z-depth of each view in its own frame, metres.
        valid: (V, H, W) bool.
        head: "pointmap" or "depth".
        procrustes_scale: fit a similarity in E.2 (see `procrustes_view2_error`).

    Returns:
        metric name (METRICS) -> (L,); pointmap metrics are NaN for depth predictions.
    """
    if head == "pointmap":
        out = ssi_error(pred, gt, valid)
        out["procrustes_v2_error"] = procrustes_view2_error(
            pred, conf, gt, valid, with_scale=procrustes_scale
        )
        view1_depth = pred[:, 0, ..., 2]
    else:
        nan = torch.full(pred.shape[:1], torch.nan, dtype=pred.dtype, device=pred.device)
        out = {name: nan for name in POINTMAP_METRICS}
        view1_depth = pred[:, 0, ..., 0]
    out.update(depth_metrics(view1_depth, depth[0], valid[0]))
    return out


def score_batch(
    outputs: Mapping[str, Mapping[str, Tensor]],
    gt: Tensor,
    depth: Tensor,
    valid: Tensor,
    *,
    head: str,
    procrustes_scale: bool,
) -> dict[str, np.ndarray]:
    """Every metric of every location's prediction, pair by pair.

    Args:
        outputs: location -> {"pred": (B, V, H, W, C), "conf": (B, V, H, W)}.
        gt: (B, V, H, W, 3) ground-truth points in view 1's camera frame (NaN where not valid).
        depth: (B, V, H, W) ground-truth depth of each view in its own frame.
        valid: (B, V, H, W) bool.
        head: "pointmap" or "depth".
        procrustes_scale: see `score_pair`.

    Returns:
        metric name -> (B, L) float64, locations in the order of `outputs`.
    """
    pred = torch.stack(
        [o["pred"].float() for o in outputs.values()], 1
    )  # (B, L, V, H, W, C), on their device
    conf = torch.stack([o["conf"].float() for o in outputs.values()], 1)
    gt, depth, valid = (t.to(pred.device) for t in (gt, depth, valid))
    rows = [
        score_pair(
            pred[b],
            conf[b],
            gt[b].float(),
            depth[b].float(),
            valid[b],
            head=head,
            procrustes_scale=procrustes_scale,
        )
        for b in range(pred.shape[0])
    ]
    return {name: np.stack([r[name].double().cpu().numpy() for r in rows]) for name in METRICS}
