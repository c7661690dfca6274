"""Means over pairs with bootstrap confidence intervals, and the same binned by a pair property.

Pairs are the unit of resampling: every metric is first reduced to one value per pair,
then the pairs are drawn with replacement. All metrics share the same draws, computed as
one matrix product of resample counts with the per-pair values, so thousands of metrics
cost one product rather than a loop. NaN values (e.g. a pair without correspondences) are
left out of both the mean and the count.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from pipeline.errors import ConfigError, ShapeError


def bootstrap_mean(
    values: np.ndarray, *, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict[str, np.ndarray]:
    """Mean over pairs and its percentile bootstrap interval, for many metrics at once.

    Args:
        values: (P, M) one value per pair and metric; NaN where a pair has none.
        n_boot: resamples of the P pairs.
        confidence: central coverage of the interval.
        seed: seeds the resampling (the same draws for every metric).

    Returns:
        "mean", "low", "high": (M,) float64; "n": (M,) pairs with a value. NaN where n = 0;
        with n_boot = 0 the interval is NaN.

    Example:
        >>> bootstrap_mean(np.ones((10, 2)))["mean"]
        array([1., 1.])
    """
    if values.ndim != 2:
        raise ShapeError(f"values: expected (P, M), got {values.shape}")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    finite = np.isfinite(values)
    x = np.where(finite, values, 0.0).astype(np.float64)
    n = finite.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = x.sum(0) / n
        low, high = np.full(values.shape[1], np.nan), np.full(values.shape[1], np.nan)
        cols = n > 0
        if n_boot > 0 and cols.any():
            P = values.shape[0]
            rng = np.random.default_rng(seed)
            draws = [np.bincount(rng.integers(0, P, P), minlength=P) for _ in range(n_boot)]
            counts = np.stack(draws).astype(np.float64)  # (n_boot, P)
            boot = (counts @ x[:, cols]) / (counts @ finite[:, cols].astype(np.float64))  # (n_boot, M')
            tail = (1 - confidence) / 2 * 100
            low[cols], high[cols] = np.nanpercentile(boot, [tail, 100 - tail], axis=0)
    return {"mean": mean, "low": low, "high": high, "n": n}


def binned_means(
    values: np.ndarray, key: np.ndarray, edges: Sequence[float], **bootstrap: float
) -> list[dict[str, np.ndarray | float]]:
    """`bootstrap_mean` within each bin of a per-pair property (overlap, rotation angle).

    Bins are [edges[i], edges[i+1]), the last one closed, so a pair at the top edge counts.

    Args:
        values: (P, M) per-pair metric values.
        key: (P,) the property binned on, e.g. overlap in [0, 1] or rotation in degrees.
        edges: increasing bin edges.
        **bootstrap: n_boot, confidence, seed for `bootstrap_mean`.

    Returns:
        One dict per bin: "low_edge", "high_edge", and `bootstrap_mean`'s arrays.
    """
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
        raise ConfigError(f"bin edges must be at least 2 increasing numbers, got {edges.tolist()}")
    out = []
    for i, (lo, hi) in enumerate(itertools.pairwise(edges)):
        last = i == len(edges) - 2
        inside = (key >= lo) & ((key <= hi) if last else (key < hi))
        out.append(
            {"low_edge": float(lo), "high_edge": float(hi), **bootstrap_mean(values[inside], **bootstrap)}
        )
    return out
