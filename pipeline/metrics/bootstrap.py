"""Means over pairs with bootstrap confidence intervals, and the same binned by a pair property.

Pairs are the unit of resampling: every metric is first reduced to one value per pair,
then the pairs are drawn with replacement. All metrics share the same draws, computed as
one matrix product of resample counts with the per-pair values, so thousands of metrics
cost one product rather than a loop. NaN values (e.g. a pair without correspondences) are
left out of both the mean and the count.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from pipeline.errors import ConfigError, ShapeError


def resample_counts(n_pairs: int, n_boot: int, seed: int) -> np.ndarray:
    """How often each pair is drawn in each resample: (n_boot, n_pairs) float64.

    One place draws the resamples, so every statistic computed with the same seed (means,
    sublayer contributions) sees the same resampled pairs.
    """
    rng = np.random.default_rng(seed)
    draws = [np.bincount(rng.integers(0, n_pairs, n_pairs), minlength=n_pairs) for _ in range(n_boot)]
    return np.stack(draws).astype(np.float64) if draws else np.zeros((0, n_pairs))


def pair_means(values: np.ndarray) -> np.ndarray:
    """NaN-skipping means over pairs of (P, M) per-pair values: (M,) float64, NaN where none is finite."""
    finite = np.isfinite(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(finite, values, 0.0).astype(np.float64).sum(0) / finite.sum(0)


def resampled_means(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """`pair_means` under each resample of `counts` (n_boot, P), as one matrix product.

    Returns:
        (n_boot, M); NaN where a resample holds no finite value of a metric.
    """
    finite = np.isfinite(values)
    x = np.where(finite, values, 0.0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (counts @ x) / (counts @ finite.astype(np.float64))


def percentile_interval(boot: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Central `confidence` percentile interval of (n_boot, ...) resampled statistics, NaNs skipped."""
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    tail = (1 - confidence) / 2 * 100
    shape = boot.shape[1:]
    if len(boot) == 0:
        return np.full(shape, np.nan), np.full(shape, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN bounds
        low, high = np.nanpercentile(boot, [tail, 100 - tail], axis=0)
    return low, high


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
    mean = pair_means(values)
    boot = resampled_means(values, resample_counts(len(values), n_boot, seed))
    low, high = percentile_interval(boot, confidence)
    return {"mean": mean, "low": low, "high": high, "n": np.isfinite(values).sum(0)}


def bootstrap_of_means(
    values: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray],
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """A statistic of the per-metric means over pairs, with its percentile bootstrap interval.

    For quantities that are not themselves means over pairs but functions of several means
    (a sublayer contribution is a difference of two mean errors over a third): each
    resample recomputes the means, then the statistic, so the interval carries the
    correlation between the means. With `statistic` the identity this is `bootstrap_mean`.

    Args:
        values: (P, M) one value per pair and metric; NaN where a pair has none.
        statistic: maps means (..., M) to statistics (..., K), vectorised over leading dims.
        n_boot, confidence, seed: as in `bootstrap_mean` (the same seed gives the same draws).

    Returns:
        "value": (K,) the statistic of the means over all pairs; "low", "high": (K,) its interval.
    """
    if values.ndim != 2:
        raise ShapeError(f"values: expected (P, M), got {values.shape}")
    value = statistic(pair_means(values)[None])[0]
    boot = statistic(resampled_means(values, resample_counts(len(values), n_boot, seed)))
    low, high = percentile_interval(boot, confidence)
    return {"value": value, "low": low, "high": high}


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
