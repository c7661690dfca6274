"""Bootstrap intervals cover the mean, shrink with more pairs, and bins split pairs by a property."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.metrics.bootstrap import binned_means, bootstrap_mean, bootstrap_of_means


def test_mean_interval_and_nan() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(1.0, 1.0, size=(400, 2))
    values[:100, 1] = np.nan
    out = bootstrap_mean(values, n_boot=500, seed=1)
    np.testing.assert_allclose(out["mean"], np.nanmean(values, 0))
    assert (out["low"] < out["mean"]).all() and (out["mean"] < out["high"]).all()
    np.testing.assert_array_equal(out["n"], [400, 300])
    se = values[:, 0].std() / 20
    assert out["high"][0] - out["low"][0] == pytest.approx(2 * 1.96 * se, rel=0.2)


def test_deterministic_and_empty() -> None:
    v = np.random.default_rng(0).random((20, 3))
    a, b = bootstrap_mean(v, seed=3), bootstrap_mean(v, seed=3)
    np.testing.assert_array_equal(a["low"], b["low"])
    empty = bootstrap_mean(np.full((5, 1), np.nan))
    assert np.isnan(empty["mean"]).all() and empty["n"][0] == 0


def test_bins() -> None:
    key = np.array([0.0, 0.2, 0.5, 0.7, 1.0])
    values = np.arange(5.0)[:, None]
    bins = binned_means(values, key, [0, 0.5, 1.0], n_boot=10)
    assert [b["n"][0] for b in bins] == [2, 3]  # the top edge is in the last bin
    assert bins[0]["mean"][0] == pytest.approx(0.5) and bins[1]["mean"][0] == pytest.approx(3.0)
    with pytest.raises(ConfigError, match="increasing"):
        binned_means(values, key, [1.0, 0.5])


def test_statistic_of_means_shares_the_draws_of_the_mean() -> None:
    values = np.random.default_rng(2).normal(size=(25, 3))
    values[3, 1] = np.nan
    plain = bootstrap_mean(values, n_boot=200, seed=4)
    same = bootstrap_of_means(values, lambda m: m, n_boot=200, seed=4)
    np.testing.assert_array_equal(same["value"], plain["mean"])
    np.testing.assert_allclose(same["low"], plain["low"], rtol=1e-12)
    np.testing.assert_allclose(same["high"], plain["high"], rtol=1e-12)
    ratio = bootstrap_of_means(values, lambda m: m[..., :1] / m[..., 2:], n_boot=200, seed=4)
    assert ratio["value"] == pytest.approx(plain["mean"][0] / plain["mean"][2])
    assert ratio["low"][0] < ratio["value"][0] < ratio["high"][0]
