"""Register detection finds planted sinks and register heads in synthetic attention."""

from __future__ import annotations

import numpy as np

from pipeline.metrics.registers import (
    head_scores,
    high_norm_tokens,
    register_heads,
    sink_norm_overlap,
    sink_stability,
    sink_tokens,
)

A, N = 4, 36


def synthetic_attention(rng: np.random.Generator, sinks: list[int]) -> np.ndarray:
    """(A, Q, K): heads 0 and 2 put 80% of every row on `sinks`; heads 1 and 3 attend locally."""
    attn = rng.random((A, N, N)) * 0.05
    for q in range(N):
        attn[[1, 3], q, q] += 1.0
    attn[[0, 2]] /= attn[[0, 2]].sum(-1, keepdims=True) / 0.2
    for s in sinks:
        attn[[0, 2], :, s] += 0.8 / len(sinks)
    return attn / attn.sum(-1, keepdims=True)


def test_planted_sinks_and_register_heads_are_found() -> None:
    rng = np.random.default_rng(0)
    planted = [[5, 17], [5, 30], [5, 17]]
    attn = np.stack([synthetic_attention(rng, s) for s in planted])  # (P, A, Q, K)
    scores = head_scores(attn, top_k=2)
    heads = register_heads(
        scores["independence"], scores["topk_mass"], min_independence=0.7, min_topk_mass=0.5
    )
    np.testing.assert_array_equal(heads, np.tile([True, False, True, False], (3, 1)))
    sinks = sink_tokens(scores["received"], factor=5.0)
    for p, s in enumerate(planted):
        assert sorted(np.flatnonzero(sinks[p])) == s
    stab = sink_stability(sinks)
    assert stab["top_token"] == 5 and stab["top_token_share"] == 1.0
    assert stab["pairs_with_sinks"] == 1.0 and stab["sinks_per_pair"] == 2.0


def test_sinks_match_high_norm_tokens() -> None:
    norms = np.ones((2, N))
    norms[:, 5] = 20.0
    high = high_norm_tokens(norms, factor=4.0)
    sinks = np.zeros((2, N), bool)
    sinks[:, [5, 9]] = True
    assert sink_norm_overlap(sinks, high)["mean"] == 0.5
    assert np.isnan(sink_norm_overlap(np.zeros((2, N), bool), high)["mean"])


def test_sink_overlap_interval_is_the_pooled_ratio_over_resampled_pairs() -> None:
    """The interval resamples pairs and pools both counts, unlike a mean of per-pair ratios."""
    rng = np.random.default_rng(3)
    sinks, high = rng.random((30, 2, N)) < 0.2, rng.random((30, 2, N)) < 0.5
    sinks[:5] = False  # pairs without sinks count in the denominator's mean, with nothing
    out = sink_norm_overlap(sinks, high, n_boot=200, confidence=0.9, seed=4)
    both, count = (sinks & high).sum(-1), sinks.sum(-1)  # (P, 2)
    np.testing.assert_allclose(out["mean"], both.sum(0) / count.sum(0))
    draws = np.random.default_rng(4)  # the same draws as resample_counts(30, 200, seed=4)
    ratios = []
    for _ in range(200):
        idx = draws.integers(0, 30, 30)
        ratios.append(both[idx].sum(0) / count[idx].sum(0))
    low, high_end = np.percentile(ratios, [5, 95], axis=0)
    np.testing.assert_allclose(out["low"], low)
    np.testing.assert_allclose(out["high"], high_end)


def test_uniform_attention_has_no_register() -> None:
    scores = head_scores(np.full((A, N, N), 1 / N), top_k=5)
    np.testing.assert_allclose(scores["independence"], 1.0)
    np.testing.assert_allclose(scores["topk_mass"], 5 / N)
    assert not sink_tokens(scores["received"], factor=5.0).any()
