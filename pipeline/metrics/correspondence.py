"""Correspondence accuracy from cross-attention and from token similarity (paper, Appendix E.3, Fig. 5).

For a query patch of view v with a ground-truth match in the other view, the predicted
match is the argmax of its attention row (or of its cosine similarity to the other view's
tokens); the error is the pixel distance between the centres of the predicted and the
true patch. Accuracy at a threshold is the share of a pair's matched queries whose error
is at most the threshold, so a threshold of 0 counts exact patches and one patch side
(16 px) also accepts the 4 neighbours straight across (up, down, left, right), not the
diagonal ones (22.6 px away).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from pipeline.correspond.patches import NO_PATCH, patch_centres
from pipeline.errors import ShapeError
from pipeline.fast_linear import linear


def similarity_matches(view1: Tensor, view2: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Argmax of cosine similarity, both ways: the no-attention baseline.

    One similarity matrix serves both view directions (its transpose is the other's), and
    it is computed pair by pair as a `linear` of one view's unit tokens by the other's,
    which takes oneDNN's product on a CPU. The argmaxes are numpy's: over rows of a few
    hundred keys torch's took 9x as long. Both take the first of equal maxima.

    Args:
        view1: (..., Q1, D) tokens of view 1 at one location.
        view2: (..., Q2, D) tokens of view 2 at the same location.

    Returns:
        (..., Q1) index of the most similar view-2 token of each view-1 token, and
        (..., Q2) the same from view 2 into view 1 (int64, row-major patch indices).
    """
    if view1.shape[:-2] != view2.shape[:-2] or view1.shape[-1] != view2.shape[-1]:
        raise ShapeError(
            f"views: expected (..., Q1, D) and (..., Q2, D) with equal leading dims and D, got "
            f"{tuple(view1.shape)} and {tuple(view2.shape)}"
        )
    a = torch.nn.functional.normalize(view1.float(), dim=-1)
    b = torch.nn.functional.normalize(view2.float(), dim=-1)
    lead = a.shape[:-2]
    pairs = zip(a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:]), strict=True)
    sims = torch.stack([linear(x, y) for x, y in pairs]).reshape(*lead, a.shape[-2], b.shape[-2])
    s = sims.cpu().numpy()
    return s.argmax(-1), s.argmax(-2)


def probability_argmax(probs: np.ndarray) -> np.ndarray:
    """Argmax over the last dim of non-negative float16 values (attention weights), first of equal maxima.

    Non-negative IEEE floats are ordered as their bit patterns read as signed integers,
    and equal floats have equal patterns (bar -0.0, which a softmax does not produce), so
    the argmax runs on the int16 view: numpy's integer argmax is vectorised, while torch's
    float16 argmax took 10x as long and numpy's float16 one longer still. A row of NaN
    (a map that was not stored) gives some index; callers mask those rows.

    Args:
        probs: (..., K) float16 values >= 0 (or NaN rows).

    Returns:
        (...) int64 index of the first largest value.
    """
    if probs.dtype != np.float16:
        raise TypeError(f"probability_argmax takes float16 maps, got {probs.dtype}")
    return probs.view(np.int16).argmax(-1)


def match_errors(pred: np.ndarray, gt: np.ndarray, grid: tuple[int, int], patch_size: int) -> np.ndarray:
    """Pixel distance between predicted and true patch centres.

    Args:
        pred: (..., Q) predicted patch index in the other view (row-major over `grid`).
        gt: (..., Q) true patch index, broadcastable to pred; -1 where the query has none.
        grid: (h, w) patch grid of the other view.
        patch_size: pixels per patch side.

    Returns:
        (..., Q) float32 pixels; NaN where gt is -1.

    Example:
        >>> match_errors(np.array([1, 0]), np.array([0, -1]), (2, 2), 16)
        array([16., nan], dtype=float32)
    """
    centres = patch_centres(grid, patch_size).astype(np.float32)
    gt_b = np.broadcast_to(gt, np.broadcast_shapes(np.shape(pred), np.shape(gt)))
    d = np.linalg.norm(centres[pred] - centres[np.maximum(gt_b, 0)], axis=-1)
    return np.where(gt_b == NO_PATCH, np.nan, d).astype(np.float32)


def accuracy_at(errors: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Share of matched queries with error <= each threshold.

    Args:
        errors: (..., Q) pixel errors, NaN for queries without a ground-truth match.
        thresholds: (T,) pixels.

    Returns:
        (..., T) float32; NaN where no query has a match.

    Example:
        >>> accuracy_at(np.array([0.0, 16.0, np.nan]), [0, 16])
        array([0.5, 1. ], dtype=float32)
    """
    matched = np.isfinite(errors)
    n = matched.sum(-1)
    with np.errstate(invalid="ignore"):
        under = (errors[..., None] <= np.asarray(thresholds, dtype=np.float32)) & matched[..., None]
        return np.where(n[..., None] > 0, under.sum(-2) / np.maximum(n, 1)[..., None], np.nan).astype(
            np.float32
        )


def mean_errors(errors: np.ndarray) -> np.ndarray:
    """Mean pixel error over the matched queries: (..., Q) → (...) float32, NaN where none is matched.

    The accuracy curve says how often a match is near; this says how far matches are on
    average, so a head whose misses land next door and one whose misses land anywhere differ.
    """
    matched = np.isfinite(errors)
    n = matched.sum(-1)
    total = np.where(matched, errors, 0.0).sum(-1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / n, np.nan).astype(np.float32)


def attention_accuracy(
    attn_argmax: np.ndarray,
    gt: np.ndarray,
    grid: tuple[int, int],
    patch_size: int,
    thresholds: Sequence[float],
) -> np.ndarray:
    """Accuracy curves of attention argmaxes against ground-truth patch matches.

    Args:
        attn_argmax: (..., A, Q) argmax over keys of each head's attention rows; queries
            of one view, keys the other view's patches.
        gt: (..., Q) the query view's `patch_match` (-1 where none).
        grid: (h, w) patch grid.
        patch_size: pixels per patch side.
        thresholds: (T,) pixels.

    Returns:
        (..., A, T) accuracy per head and threshold.
    """
    if attn_argmax.shape[-1] != gt.shape[-1]:
        raise ShapeError(
            f"attn_argmax (..., A, Q={attn_argmax.shape[-1]}) and gt (..., Q={gt.shape[-1]}) differ in Q"
        )
    return accuracy_at(match_errors(attn_argmax, gt[..., None, :], grid, patch_size), thresholds)


def best_heads(acc: np.ndarray, headline: int) -> np.ndarray:
    """Index of the head with the highest mean accuracy at threshold index `headline`.

    Args:
        acc: (P, ..., A, T) per-pair accuracy curves.
        headline: index into T.

    Returns:
        (...) head index, chosen on the mean over pairs (one head per block, as in Fig. 5).
    """
    mean = np.nanmean(acc[..., headline], axis=0)
    return np.nan_to_num(mean, nan=-1.0).argmax(-1)


def correspondence_heads(
    mean_acc: np.ndarray, *, min_accuracy: float, min_ratio_to_best: float
) -> np.ndarray:
    """The rule naming correspondence heads: accurate in absolute terms and near the block's best.

    A head is a correspondence head when its mean headline accuracy is at least
    `min_accuracy` and at least `min_ratio_to_best` times the best head's of its block.

    Args:
        mean_acc: (..., A) mean headline accuracy per head.
        min_accuracy: absolute floor, e.g. 0.3.
        min_ratio_to_best: share of the block's best head, e.g. 0.5.

    Returns:
        (..., A) bool.
    """
    best = np.nanmax(mean_acc, axis=-1, keepdims=True)
    return (mean_acc >= min_accuracy) & (mean_acc >= min_ratio_to_best * best)
