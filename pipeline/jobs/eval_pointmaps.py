"""Score every location's pointmap (or depth) prediction of a batch of pairs.

Per pair, the ground truth's side of every metric (valid points, their E.1
normalisation for both views and for view 2, the depth pixels) is prepared once
(`pair_targets`) and shared by every prediction method of the batch (probe sets, the
head lens, the model's own output). Each method's locations are stacked on a leading dim,
gathered once to the pair's valid pixels as channels-first rows, so the medians,
alignments and depth fits run once for all of them (the metrics in `pipeline.metrics`
take leading dims).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from pipeline.metrics.depth import align_scale_shift, depth_errors
from pipeline.metrics.pointmap import Normalised, normalise, ssi_point_errors, view_means
from pipeline.metrics.procrustes import procrustes_point_errors
from pipeline.probes.heads import take_stacked, token_order_pixels

POINTMAP_METRICS = ("ssi_error", "ssi_error_v1", "ssi_error_v2", "procrustes_v2_error")
DEPTH_METRICS = ("depth_abs_rel", "depth_delta1")
METRICS = POINTMAP_METRICS + DEPTH_METRICS
MIN_PROCRUSTES_POINTS = 3
MIN_DEPTH_POINTS = 2


class PairTargets(NamedTuple):
    """What every prediction of one pair is scored against, prepared once per pair.

    Attributes:
        valid: (V, H, W) bool, the ground truth's valid pixels.
        pixels: (n,) their flat indices into (V, H, W), view by view in `token_order_pixels`'s
            order; every point set below lists the pixels in this order.
        n_view: valid pixels per view.
        points: E.1's normalised GT points of both views ((3, n), view 1 first); None
            without a valid pixel.
        view2: (3, n2) view 2's GT points for the Procrustes fit, and `view2_normalised`
            their E.1 normalisation; None with fewer than 3.
        depth: (m,) view 1's GT depth at its valid pixels with depth > 0, and `depth_keep`
            which of view 1's valid pixels those are (None: all of them); depth None with
            fewer than 2.
    """

    valid: Tensor
    pixels: Tensor
    n_view: tuple[int, int]
    points: Normalised | None
    view2: Tensor | None
    view2_normalised: Normalised | None
    depth: Tensor | None
    depth_keep: Tensor | None


def pair_targets(gt: Tensor, depth: Tensor, valid: Tensor, patch_size: int = 1) -> PairTargets:
    """The GT side of every metric of one pair (see `PairTargets`).

    Args:
        gt: (V, H, W, 3) ground-truth points in view 1's camera frame, metres.
        depth: (V, H, W) ground-truth z-depth of each view in its own frame, metres.
        valid: (V, H, W) bool.
        patch_size: the pixel order's patch (`token_order_pixels`): the model's, so that
            per-token predictions of a fully valid pair are read without a gather; 1 is
            image order. No metric depends on it beyond float rounding of its sums.
    """
    gt, depth = gt.float(), depth.float()
    n_view = (int(valid[0].sum()), int(valid[1].sum()))
    pixels = token_order_pixels(valid, patch_size)
    points = gather_stacked([gt], pixels)[0]
    view2 = points[:, n_view[0] :] if n_view[1] >= MIN_PROCRUSTES_POINTS else None
    d1 = depth.flatten()[pixels[: n_view[0]]]  # view 1's pixels come first
    keep = d1 > 0
    enough_depth = int(keep.sum()) >= MIN_DEPTH_POINTS
    return PairTargets(
        valid=valid,
        pixels=pixels,
        n_view=n_view,
        points=normalise(points) if sum(n_view) else None,
        view2=view2,
        view2_normalised=None if view2 is None else normalise(view2),
        depth=d1[keep] if enough_depth else None,
        depth_keep=None if bool(keep.all()) else keep,
    )


def batch_targets(
    gt: Tensor, depth: Tensor, valid: Tensor, device: torch.device | str = "cpu", patch_size: int = 1
) -> list[PairTargets]:
    """`pair_targets` of each pair of a batch ((B, V, H, W, 3), (B, V, H, W), (B, V, H, W)), on `device`."""
    return [
        pair_targets(g.to(device), d.to(device), v.to(device), patch_size)
        for g, d, v in zip(gt, depth, valid, strict=True)
    ]


def gather_stacked(images: Sequence[Tensor], pixels: Tensor) -> Tensor:
    """Chosen pixels of L images of one pair, stacked channels first: (L, C, n) float32.

    Equals `torch.stack([gather_valid(x, valid) for x in images])` for pixels = the flat
    indices of valid, without the boolean index and the stack's copies (`take_stacked`).

    Args:
        images: L tensors (V, H, W, C), any layout, on one device.
        pixels: (n,) flat indices into (V, H, W), on that device.
    """
    c = images[0].shape[-1]
    return take_stacked(images, pixels[None] * c + torch.arange(c, device=pixels.device)[:, None])


def score_pair(
    pred: Tensor, conf: Tensor | None, targets: PairTargets, *, head: str, procrustes_scale: bool
) -> dict[str, Tensor]:
    """Every metric of L predictions of one pair.

    Depth is scored on view 1 only: a pointmap probe's view-2 points are in view 1's frame,
    so their z is not view 2's depth, and Table 1 compares both probe kinds on equal pixels.

    Args:
        pred: (L, C, n) the predictions at the pair's valid pixels, in `targets.pixels` order
            (view 1's first): pointmaps in view 1's frame (C = 3), or depth (C = 1, head
            "depth"; view 1's pixels are enough).
        conf: (L, n2) predicted confidences at view 2's valid pixels (None for depth).
        targets: the pair's `pair_targets`.
        head: "pointmap" or "depth".
        procrustes_scale: fit a similarity in E.2 (see `procrustes_view2_error`).

    Returns:
        metric name (METRICS) -> (L,); pointmap metrics are NaN for depth predictions.
    """
    n1 = targets.n_view[0]
    out = {name: torch.full(pred.shape[:1], torch.nan, device=pred.device) for name in METRICS}
    if head == "pointmap":
        if targets.points is not None:
            out.update(view_means(ssi_point_errors(pred, targets.points), targets.n_view))
        if targets.view2 is not None and conf is not None:
            errors = procrustes_point_errors(
                pred[..., n1:], conf, targets.view2, targets.view2_normalised, with_scale=procrustes_scale
            )
            out["procrustes_v2_error"] = errors.mean(-1)
        view1_depth = pred[:, 2, :n1]
    else:
        view1_depth = pred[:, 0, :n1]
    if targets.depth is not None:
        d = view1_depth if targets.depth_keep is None else view1_depth[:, targets.depth_keep]
        out.update(depth_errors(align_scale_shift(d, targets.depth), targets.depth))
    return out


def score_rows(
    rows: Sequence[tuple[Tensor, Tensor | None]],
    targets: Sequence[PairTargets],
    *,
    head: str,
    procrustes_scale: bool,
) -> dict[str, np.ndarray]:
    """Every metric of every location's prediction, given at each pair's valid pixels.

    Args:
        rows: (B,) per pair, pred (L, C, n) at the pair's `targets.pixels`, channels first,
            and conf (L, n2) at its view-2 pixels only (the Procrustes weights; no metric
            reads view 1's): `ProbeSet.at_pixels`, `head_lens_at_pixels`, `gather_stacked`.
            For depth, pred may hold view 1's pixels only and conf be None, as depth is
            scored on view 1 alone (`ProbeSet.view1_depth_at_pixels`).
        targets: (B,) the pairs' `pair_targets` (`batch_targets`), on the predictions' device.
        head: "pointmap" or "depth".
        procrustes_scale: see `score_pair`.

    Returns:
        metric name -> (B, L) float64, locations in the order of the rows.
    """
    scores = [
        score_pair(
            pred, conf if head == "pointmap" else None, t, head=head, procrustes_scale=procrustes_scale
        )
        for (pred, conf), t in zip(rows, targets, strict=True)
    ]
    return {name: np.stack([r[name].double().cpu().numpy() for r in scores]) for name in METRICS}


def score_targets(
    outputs: Mapping[str, Mapping[str, Tensor]],
    targets: Sequence[PairTargets],
    *,
    head: str,
    procrustes_scale: bool,
) -> dict[str, np.ndarray]:
    """`score_rows` of predictions given as images.

    Args:
        outputs: location -> {"pred": (B, V, H, W, C), "conf": (B, V, H, W)}.
        targets: (B,) the pairs' `pair_targets` (`batch_targets`), on the predictions' device.
        head: "pointmap" or "depth".
        procrustes_scale: see `score_pair`.

    Returns:
        metric name -> (B, L) float64, locations in the order of `outputs`.
    """
    rows = [
        (
            gather_stacked([o["pred"][b] for o in outputs.values()], t.pixels),
            gather_stacked([o["conf"][b, ..., None] for o in outputs.values()], t.pixels[t.n_view[0] :])[
                :, 0
            ],
        )
        for b, t in enumerate(targets)
    ]
    return score_rows(rows, targets, head=head, procrustes_scale=procrustes_scale)


def score_batch(
    outputs: Mapping[str, Mapping[str, Tensor]],
    gt: Tensor,
    depth: Tensor,
    valid: Tensor,
    *,
    head: str,
    procrustes_scale: bool,
) -> dict[str, np.ndarray]:
    """`score_targets` for a batch whose targets are not prepared yet (one prediction method).

    Args:
        outputs: location -> {"pred": (B, V, H, W, C), "conf": (B, V, H, W)}.
        gt: (B, V, H, W, 3) ground-truth points in view 1's camera frame.
        depth: (B, V, H, W) ground-truth depth of each view in its own frame.
        valid: (B, V, H, W) bool.
        head, procrustes_scale: see `score_pair`.

    Returns:
        metric name -> (B, L) float64, locations in the order of `outputs`.
    """
    device = next(iter(outputs.values()))["pred"].device
    return score_targets(
        outputs, batch_targets(gt, depth, valid, device), head=head, procrustes_scale=procrustes_scale
    )
