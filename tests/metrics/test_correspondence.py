"""Correspondence accuracy: perfect maps score 100%, shifted ones what the threshold says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.errors import ShapeError
from pipeline.jobs.eval_attention import AttentionLayout, correspondence_accuracy
from pipeline.jobs.extract_shard import ShardEncoder, ShardInput
from pipeline.metrics.correspondence import (
    accuracy_at,
    attention_accuracy,
    best_heads,
    correspondence_heads,
    match_errors,
    mean_errors,
    probability_argmax,
    similarity_matches,
)
from pipeline.store.features import FeatureLayout

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


ATTN_LOCATIONS = ("b00.self", "b00.cross", "b01.self", "b01.cross")
HEADS, PAIRS = 4, 4
FULL_PAIRS = np.array([True, False, True, False])  # pairs that also get full float16 maps


def stored_by_extract(attn: torch.Tensor) -> dict[str, np.ndarray]:
    """The arrays the extract stage writes for captured float32 maps (B, V, La, A, N, N).

    Runs the extractor's own `ShardEncoder` (the uint8 codes and `attn_argmax` of
    `encode_uint8_argmax`, the float16 `attn_full` of the cross maps of FULL_PAIRS, NaN elsewhere).
    """
    b, (h, w) = len(attn), (GRID[0] * P, GRID[1] * P)
    layout = FeatureLayout(
        n_pairs=b,
        pairs_per_shard=b,
        locations=("dec_in",),
        attn_locations=ATTN_LOCATIONS,
        image_size=(h, w),
        patch_grid=GRID,
        enc_dim=8,
        dec_dim=8,
        n_heads=HEADS,
    )
    shard = ShardInput(
        shard_index=0,
        start=0,
        rgb=np.zeros((b, 2, h, w, 3), np.uint8),
        rendered=np.ones(b, bool),
        scene_id=np.zeros(b, np.int32),
        split=np.array(["test"] * b),
        full_attn=FULL_PAIRS,
    )
    cross = np.array([name.endswith(".cross") for name in ATTN_LOCATIONS])
    encoder = ShardEncoder(shard, layout, overflow="error", mantissa_bits=10, full_attn_locations=cross)
    captured = {
        "enc": torch.randn(b, 2, N, 8),
        "acts": torch.randn(b, 2, 1, N, 8),
        "attn": attn,
        "pts3d": torch.zeros(b, 2, h, w, 3),
        "conf": torch.ones(b, 2, h, w),
    }
    encoder.add(np.arange(b), captured)
    return encoder.result()


def scored(stored: dict[str, np.ndarray], gt: np.ndarray) -> dict[str, np.ndarray]:
    """`correspondence_accuracy` on the stored arrays, the cross maps of `attn_full` read as evaluate does."""
    layout = AttentionLayout(ATTN_LOCATIONS, ("dec_in",), GRID, P)
    full = stored["attn_full"][:, :, layout.cross]
    return correspondence_accuracy(stored["attn_argmax"], full, gt, layout, THRESHOLDS)


def accuracy_np(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Plain numpy: patch centres (row, col) * P + P / 2, their distances; the share of matched
    queries within each threshold (..., T) and the mean distance over them (...)."""
    rp, cp = np.divmod(pred, GRID[1])
    rg, cg = np.divmod(np.maximum(gt, 0), GRID[1])
    dist = np.hypot((rp - rg) * P, (cp - cg) * P)  # the P / 2 of both centres cancels
    matched = gt >= 0
    n = matched.sum(-1)
    under = np.stack([((dist <= t) & matched).sum(-1) for t in THRESHOLDS], -1)
    with np.errstate(invalid="ignore"):  # 0 / 0: NaN without a matched query
        return under / n[..., None], np.where(matched, dist, 0).sum(-1) / n


def pair_gt(rng: np.random.Generator) -> np.ndarray:
    """(PAIRS, V, Q) patch matches; pair 1's view 2 has none (NaN accuracy from either form)."""
    gt = np.stack([[gt_matches(rng) for _ in range(2)] for _ in range(PAIRS)])
    gt[1, 1] = -1
    return gt


def softmax_maps(rng: np.random.Generator) -> torch.Tensor:
    """(PAIRS, V, La, A, N, N) float32 maps as the model computes them (softmax of logits).

    Logits on a 0.25 grid: distinct entries of a row are then >= 28% apart, so float16
    rounding (2^-11 relative) merges only equal ones.
    """
    logits = np.round(rng.normal(0, 1.5, (PAIRS, 2, len(ATTN_LOCATIONS), HEADS, N, N)) * 4) / 4
    return torch.from_numpy(logits.astype(np.float32)).softmax(-1)


def test_compact_and_full_stored_maps_score_the_same_as_numpy() -> None:
    """Accuracy from the stored `attn_argmax` and from the stored float16 maps equals a numpy
    reference on the captured maps, exact ties (first index wins) included, and the pairs
    without full maps read NaN from them but not from the compact form.

    Holds where float16 rounding keeps each row's maximum apart from the rest (asserted on
    the data below); near-ties are the next test.
    """
    rng = np.random.default_rng(3)
    gt = pair_gt(rng)
    attn = softmax_maps(rng).numpy()
    # a fifth of the rows: their maximum put at the GT patch and at a random other patch, equal
    cross = attn[:, :, 1::2]  # a view: edits land in attn
    rows = np.nonzero(rng.random(cross.shape[:-1]) < 0.2)  # (B, V, C, A, Q) indices
    b, v, _, _, q = rows
    at_gt, other = np.maximum(gt[b, v, q], 0), rng.integers(0, N, len(b))
    other = np.where(other == at_gt, (other + 1) % N, other)
    top = cross[rows].max(-1) + 0.1
    cross[(*rows, at_gt)], cross[(*rows, other)] = top, top
    attn /= attn.sum(-1, keepdims=True)  # the two equal entries stay equal
    assert (attn[:, :, 1::2][(*rows, at_gt)] == attn[:, :, 1::2][(*rows, other)]).all()
    p16 = attn.astype(np.float16)
    assert (p16.argmax(-1) == attn.argmax(-1)).all()  # float16 moves no row's maximum here
    first = attn[:, :, 1::2].argmax(-1)  # numpy: the first index on ties
    last = N - 1 - attn[:, :, 1::2, ..., ::-1].argmax(-1)
    ref, ref_px = accuracy_np(first, gt[:, :, None, None])
    assert not np.allclose(ref, accuracy_np(last, gt[:, :, None, None])[0], equal_nan=True)  # ties matter

    got = scored(stored_by_extract(torch.from_numpy(attn)), gt)
    assert got["attention_compact"].shape == (PAIRS, 2, 2, HEADS, len(THRESHOLDS))
    np.testing.assert_allclose(got["attention_compact"], ref, rtol=1e-6)
    np.testing.assert_allclose(got["attention"][FULL_PAIRS], ref[FULL_PAIRS], rtol=1e-6)
    np.testing.assert_array_equal(got["attention"][FULL_PAIRS], got["attention_compact"][FULL_PAIRS])
    np.testing.assert_allclose(got["attention_compact_error_px"], ref_px, rtol=1e-6)
    np.testing.assert_allclose(got["attention_error_px"][FULL_PAIRS], ref_px[FULL_PAIRS], rtol=1e-6)
    assert np.isnan(got["attention"][~FULL_PAIRS]).all()
    assert np.isnan(got["attention_error_px"][~FULL_PAIRS]).all()
    assert np.isnan(got["attention_compact"][1, 1]).all()  # no matched query in pair 1, view 2
    assert np.isfinite(got["attention_compact"][[0, 2, 3]]).all()


def test_float16_near_ties_move_the_full_maps_argmax_but_not_the_compact_one() -> None:
    """Where a row's top two entries differ by less than float16 rounding, the full maps'
    accuracy is that of the float16 argmax (the first of the merged pair) while the compact
    form keeps the captured float32 argmax: the two can differ, and the compact one is exact.
    """
    rng = np.random.default_rng(4)
    gt = pair_gt(rng)
    gt[0, 0] = np.arange(N)  # pair 0, view 1: every query matched, GT patch q
    attn = softmax_maps(rng).numpy()
    row = attn[0, 0, 1, 0]  # b00.cross, head 0: each query's maximum at its GT patch q ...
    q = np.arange(N)
    far = (q + 12) % N  # ... and just below it at a patch >= 45 px away (1 row 3 columns, or 2 and 2)
    row[:] = 2e-5 / (N - 2)
    row[q, q], row[q, far] = 0.5, np.float32(0.5 - 2e-5)  # 0.5 and 0.49998 are one float16
    assert (row[q, q].astype(np.float16) == row[q, far].astype(np.float16)).all()
    ref32, _ = accuracy_np(attn[:, :, 1::2].argmax(-1), gt[:, :, None, None])
    ref16, _ = accuracy_np(attn[:, :, 1::2].astype(np.float16).argmax(-1), gt[:, :, None, None])

    got = scored(stored_by_extract(torch.from_numpy(attn)), gt)
    np.testing.assert_allclose(got["attention_compact"], ref32, rtol=1e-6)
    np.testing.assert_allclose(got["attention"][FULL_PAIRS], ref16[FULL_PAIRS], rtol=1e-6)
    # compact: every query at its GT patch; float16: the first of the pair, `far` for q >= 8
    np.testing.assert_array_equal(got["attention_compact"][0, 0, 0, 0], np.ones(len(THRESHOLDS)))
    np.testing.assert_allclose(got["attention"][0, 0, 0, 0], np.full(len(THRESHOLDS), 8 / N), rtol=1e-6)


def test_no_matched_query_is_nan() -> None:
    assert np.isnan(accuracy_at(np.full(5, np.nan), [16])).all()


def test_similarity_matches_finds_copies_both_ways() -> None:
    keys = torch.randn(2, N, 8)
    perm = torch.randperm(N)
    queries = 3 * keys[:, perm]  # cosine similarity ignores the scale
    forward, backward = similarity_matches(queries, keys)
    np.testing.assert_array_equal(forward, perm.expand(2, -1).numpy())
    np.testing.assert_array_equal(backward, perm.argsort().expand(2, -1).numpy())


def test_similarity_matches_equal_a_float64_reference() -> None:
    """Both directions against numpy float64 cosine similarities, views of different lengths."""
    rng = np.random.default_rng(6)
    v1, v2 = rng.normal(size=(3, 7, 16)), rng.normal(size=(3, 11, 16))
    unit1 = v1 / np.linalg.norm(v1, axis=-1, keepdims=True)
    unit2 = v2 / np.linalg.norm(v2, axis=-1, keepdims=True)
    sims = unit1 @ unit2.transpose(0, 2, 1)
    forward, backward = similarity_matches(torch.from_numpy(v1), torch.from_numpy(v2))
    np.testing.assert_array_equal(forward, sims.argmax(-1))
    np.testing.assert_array_equal(backward, sims.argmax(-2))
    with pytest.raises(ShapeError, match="equal leading dims"):
        similarity_matches(torch.from_numpy(v1), torch.from_numpy(v2[:2]))


def test_similarity_matches_takes_the_first_of_equal_tokens() -> None:
    keys = torch.randn(1, N, 8)
    keys[0, 5] = keys[0, 2]  # key 2 and key 5 are the same token
    forward, backward = similarity_matches(keys[:, [5, 2]], keys)
    np.testing.assert_array_equal(forward, [[2, 2]])
    assert backward[0, 2] == backward[0, 5] == 0  # both queries equal: the first


def test_best_and_correspondence_heads() -> None:
    acc = np.zeros((3, 2, 4, 1))  # (P, blocks, A, T)
    acc[:, 0, :, 0] = [0.1, 0.8, 0.5, 0.35]
    acc[:, 1, :, 0] = [0.2, 0.1, 0.0, 0.25]
    np.testing.assert_array_equal(best_heads(acc, 0), [1, 3])
    rule = correspondence_heads(acc.mean(0)[..., 0], min_accuracy=0.3, min_ratio_to_best=0.5)
    np.testing.assert_array_equal(rule, [[False, True, True, False], [False, False, False, False]])


def test_mean_errors_average_the_matched_queries_only() -> None:
    """Queries without a GT match (NaN) are left out of the mean; a row with none gives NaN."""
    errors = np.array([[0.0, 16.0, np.nan, 32.0], [np.nan, np.nan, np.nan, np.nan]], dtype=np.float32)
    out = mean_errors(errors)
    assert out[0] == pytest.approx(16.0) and np.isnan(out[1])
    pred, gt = np.array([5, 0, 3]), np.array([0, -1, 3])  # 3x3 grid: patch 5 is (1, 2), patch 0 is (0, 0)
    errs = match_errors(pred, gt, (3, 3), 16)
    assert mean_errors(errs) == pytest.approx((np.hypot(16, 32) + 0.0) / 2)


def test_probability_argmax_equals_numpys_float16_argmax() -> None:
    """The int16-view argmax is numpy's float16 argmax on every non-negative row: ties (first
    wins), zeros, subnormals, values near 1; a NaN row (a map not stored) does not raise."""
    rng = np.random.default_rng(5)
    x = rng.random((64, N)).astype(np.float16)
    x[:8] = rng.integers(0, 3, (8, N)).astype(np.float16)  # many exact ties
    x[8:16] *= np.float16(1e-5)  # subnormal float16
    x[16:24, : N // 2] = 0.0
    x[24:32] = np.float16(1.0) - x[24:32] * np.float16(1e-3)
    np.testing.assert_array_equal(probability_argmax(x), x.argmax(-1))
    assert probability_argmax(np.full((2, N), np.nan, np.float16)).shape == (2,)
    with pytest.raises(TypeError, match="float16"):
        probability_argmax(x.astype(np.float32))
