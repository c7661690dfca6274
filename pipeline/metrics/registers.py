"""Register heads and register tokens from attention maps and token norms (paper, Appendix F.1, G).

A register head attends to the same few keys whatever the query: its rows are nearly
equal (query independence) and most of their mass sits on a handful of keys (top-k mass).
Those keys are register tokens, attention sinks: tokens that receive far more attention
than the uniform 1/K, and often the high-norm tokens of "Vision Transformers Need
Registers". Scores are per pair; stability across pairs is what the aggregates report.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.errors import ShapeError
from pipeline.metrics.bootstrap import bootstrap_of_means


def head_scores(attn: np.ndarray, top_k: int) -> dict[str, np.ndarray]:
    """Query independence and top-k mass of every head.

    independence = 1 - mean over queries of the total-variation distance between the row
    and the mean row (1: every query attends identically); top-k mass = the share of the
    mean row on its k largest keys.

    Args:
        attn: (..., A, Q, K) attention probabilities; rows sum to 1.
        top_k: keys counted in the mass.

    Returns:
        "independence": (..., A); "topk_mass": (..., A); "received": (..., A, K) the mean
        row (attention each key receives, averaged over queries).

    Example:
        >>> head_scores(np.full((2, 3, 4), 0.25), top_k=1)["independence"]
        array([1., 1.])
    """
    if attn.ndim < 3:
        raise ShapeError(f"attn: expected (..., A, Q, K), got {attn.shape}")
    # in torch for its threads and in-place steps: a pair's maps are ~10M values, and
    # numpy's three passes over them (one with a temporary as large) ran on one core
    t = torch.from_numpy(np.ascontiguousarray(attn))
    received = t.mean(-2)
    tv = (t - received.unsqueeze(-2)).abs_().sum(-1).mean(-1).mul_(0.5)
    topk = received.topk(min(top_k, attn.shape[-1]), dim=-1).values.sum(-1)
    return {"independence": (1.0 - tv).numpy(), "topk_mass": topk.numpy(), "received": received.numpy()}


def register_heads(
    independence: np.ndarray, topk_mass: np.ndarray, *, min_independence: float, min_topk_mass: float
) -> np.ndarray:
    """(...) bool: heads whose rows agree and concentrate on few keys (both thresholds met)."""
    return (independence >= min_independence) & (topk_mass >= min_topk_mass)


def sink_tokens(received: np.ndarray, factor: float) -> np.ndarray:
    """Keys receiving at least `factor` times the uniform share 1/K, averaged over heads.

    Args:
        received: (..., A, K) attention received per key and head (mean over queries).
        factor: multiple of 1/K that makes a sink, e.g. 5.

    Returns:
        (..., K) bool.
    """
    k = received.shape[-1]
    return received.mean(-2) >= factor / k


def high_norm_tokens(norms: np.ndarray, factor: float) -> np.ndarray:
    """(..., N) bool: tokens whose norm is at least `factor` times the median norm of their map."""
    return norms >= factor * np.median(norms, axis=-1, keepdims=True)


def sink_stability(sinks: np.ndarray) -> dict[str, np.ndarray]:
    """How consistent sink tokens are across pairs.

    Args:
        sinks: (P, ..., K) bool sink flags of P pairs.

    Returns:
        "pairs_with_sinks": (...) share of pairs with at least one sink; "sinks_per_pair":
        (...) mean count; "top_token": (...) the key index most often a sink (-1: never);
        "top_token_share": (...) share of pairs in which it is one.
    """
    freq = sinks.mean(0)
    top = freq.argmax(-1)
    share = np.take_along_axis(freq, top[..., None], -1)[..., 0]
    return {
        "pairs_with_sinks": sinks.any(-1).mean(0),
        "sinks_per_pair": sinks.sum(-1).mean(0),
        "top_token": np.where(share > 0, top, -1),
        "top_token_share": share,
    }


def sink_norm_overlap(
    sinks: np.ndarray, high_norm: np.ndarray, *, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict[str, np.ndarray]:
    """Share of sink tokens that are also high-norm tokens, pooled over pairs, with a bootstrap interval.

    The share is a ratio of two means over pairs (high-norm sinks per pair over sinks per
    pair), so each resample recomputes both: the interval is the ratio's, not a mean of
    per-pair ratios (a pair without sinks has no ratio, but still counts).

    Args:
        sinks: (P, ..., K) bool.
        high_norm: (P, ..., K) bool, the norms of the same tokens (the keys' stream).
        n_boot, confidence, seed: see `bootstrap_mean`.

    Returns:
        "mean", "low", "high": (...); NaN where no pair has a sink.
    """
    if sinks.shape != high_norm.shape or sinks.ndim < 2:
        raise ShapeError(f"sinks {sinks.shape} and high_norm {high_norm.shape}: expected equal (P, ..., K)")
    both = (sinks & high_norm).sum(-1).reshape(len(sinks), -1).astype(np.float64)  # (P, M)
    count = sinks.sum(-1).reshape(len(sinks), -1).astype(np.float64)
    m = both.shape[1]

    def ratio(means: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(means[..., m:] > 0, means[..., :m] / means[..., m:], np.nan)

    boot = bootstrap_of_means(
        np.concatenate([both, count], 1), ratio, n_boot=n_boot, confidence=confidence, seed=seed
    )
    shape = sinks.shape[1:-1]
    return {
        "mean": boot["value"].reshape(shape),
        "low": boot["low"].reshape(shape),
        "high": boot["high"].reshape(shape),
    }
