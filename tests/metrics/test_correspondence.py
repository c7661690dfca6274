"""Correspondence accuracy: perfect maps score 100%, shifted ones what the threshold says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.metrics.correspondence import (
    accuracy_at,
    attention_accuracy,
    best_heads,
    correspondence_heads,
    match_errors,
    similarity_matches,
)
from pipeline.store.attention_codec import encode_uint8_argmax

GRID, P = (4, 5), 16
N = GRID[0] * GRID[1]
THRESHOLDS = [0, 8, 16, 23, 32]


def gt_matches(rng: np.random.Generator) -> np.ndarray:
    gt = rng.permutation(N)
    gt[rng.random(N) < 0.25] = -1
    return gt


def attention_to(targets: np.ndarray, rng: np.random.Generator, peak: float = 0.6) -> np.ndarray:
    """(A, Q, K) rows putting `peak` on targets[a, q] and the rest spread at random."""
    rest = rng.random((*targets.shape, N))
    rest = rest / rest.sum(-1, keepdims=True) * (1 - peak) * 0.9
    np.put_along_axis(rest, targets[..., None], peak, -1)
    return rest / rest.sum(-1, keepdims=True)


def test_attention_at_the_gt_patch_scores_100() -> None:
    rng = np.random.default_rng(0)
    gt = gt_matches(rng)
    attn = attention_to(np.tile(np.maximum(gt, 0), (3, 1)), rng)
    acc = attention_accuracy(attn.argmax(-1), gt, GRID, P, THRESHOLDS)
    np.testing.assert_array_equal(acc, np.ones((3, len(THRESHOLDS)), np.float32))


def test_shifted_attention_scores_what_the_threshold_says() -> None:
    """One column right: 16 px off (within 16 px, not within 8); one row and column: 22.6 px."""
    gt = np.arange(N).reshape(GRID)[:, :-1].ravel()  # queries whose right neighbour exists
    gt = np.concatenate([gt, -np.ones(N - len(gt), int)])
    right = np.where(gt >= 0, gt + 1, 0)
    r, c = np.divmod(np.maximum(gt, 0), GRID[1])
    diag = np.where((gt >= 0) & (r + 1 < GRID[0]), (r + 1) * GRID[1] + c + 1, 0)
    diag_gt = np.where(r + 1 < GRID[0], gt, -1)
    acc_right = attention_accuracy(right[None], gt, GRID, P, THRESHOLDS)[0]
    np.testing.assert_array_equal(acc_right, [0, 0, 1, 1, 1])
    acc_diag = attention_accuracy(diag[None], diag_gt, GRID, P, THRESHOLDS)[0]
    np.testing.assert_array_equal(acc_diag, [0, 0, 0, 1, 1])


def test_half_right_is_half() -> None:
    gt = np.arange(N)
    pred = np.where(np.arange(N) % 2 == 0, gt, (gt + 2 * GRID[1]) % N)  # two rows off or wrapped
    assert accuracy_at(match_errors(pred, gt, GRID, P), [16])[0] == pytest.approx(0.5)


@pytest.mark.parametrize("peak", [0.3, 0.002])  # 0.002: nearly flat rows, where rounding ties
def test_compact_and_full_maps_agree(peak: float) -> None:
    rng = np.random.default_rng(1)
    gt = np.stack([gt_matches(rng) for _ in range(4)])  # (P, Q)
    full = np.stack(
        [attention_to(rng.integers(0, N, (6, N)), rng, peak=peak) for _ in range(4)]
    )  # (P, A, Q, K)
    full = full.astype(np.float16).astype(np.float32)
    _, argmax = encode_uint8_argmax(full)
    from_full = attention_accuracy(full.argmax(-1), gt, GRID, P, THRESHOLDS)
    from_compact = attention_accuracy(argmax.astype(np.int64), gt, GRID, P, THRESHOLDS)
    np.testing.assert_array_equal(from_full, from_compact)


def test_no_matched_query_is_nan() -> None:
    assert np.isnan(accuracy_at(np.full(5, np.nan), [16])).all()


def test_similarity_matches_finds_copies() -> None:
    keys = torch.randn(2, N, 8)
    perm = torch.randperm(N)
    queries = 3 * keys[:, perm]  # cosine similarity ignores the scale
    torch.testing.assert_close(similarity_matches(queries, keys), perm.expand(2, -1))


def test_best_and_correspondence_heads() -> None:
    acc = np.zeros((3, 2, 4, 1))  # (P, blocks, A, T)
    acc[:, 0, :, 0] = [0.1, 0.8, 0.5, 0.35]
    acc[:, 1, :, 0] = [0.2, 0.1, 0.0, 0.25]
    np.testing.assert_array_equal(best_heads(acc, 0), [1, 3])
    rule = correspondence_heads(acc.mean(0)[..., 0], min_accuracy=0.3, min_ratio_to_best=0.5)
    np.testing.assert_array_equal(rule, [[False, True, True, False], [False, False, False, False]])
