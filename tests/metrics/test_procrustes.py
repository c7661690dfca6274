"""E.2: weighted Procrustes against scipy, invariance to a rigid move, sublayer contributions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.transform import Rotation

from pipeline.errors import ConfigError, ShapeError
from pipeline.metrics.pointmap import normalise, ssi_point_errors
from pipeline.metrics.procrustes import (
    bootstrap_contributions,
    contribution_locations,
    procrustes_point_errors,
    procrustes_view2_error,
    sublayer_contributions,
    weighted_procrustes,
)


def scipy_weighted_fit(p: np.ndarray, g: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R, t minimising sum w ||R p + t - g||^2 via scipy's orthogonal_procrustes on sqrt(w)-scaled rows."""
    w = w / w.sum()
    mu_p, mu_g = w @ p, w @ g
    sw = np.sqrt(w)[:, None]
    r_t, _ = orthogonal_procrustes(sw * (p - mu_p), sw * (g - mu_g))  # (p - mu_p) @ r_t ~ g - mu_g
    rot = r_t.T
    return rot, mu_g - rot @ mu_p


class TestWeightedProcrustes:
    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_matches_scipy_with_weights(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        p = rng.normal(size=(200, 3))
        true_r = Rotation.random(random_state=seed).as_matrix()
        g = p @ true_r.T + rng.normal(size=3) + 0.3 * rng.normal(size=(200, 3))
        w = rng.uniform(1, 5, size=200)
        pt, gt = torch.from_numpy(p.T.copy()), torch.from_numpy(g.T.copy())  # channels first
        rot, t = weighted_procrustes(pt, gt, torch.from_numpy(w))
        ref_r, ref_t = scipy_weighted_fit(p, g, w)
        assert np.linalg.det(ref_r) > 0  # noise small enough that scipy's fit is a rotation
        np.testing.assert_allclose(rot.numpy(), ref_r, atol=1e-10)
        np.testing.assert_allclose(t.numpy(), ref_t, atol=1e-10)
        aligned = p @ ref_r.T + ref_t
        ref_err = ssi_point_errors(torch.from_numpy(aligned.T.copy()), normalise(gt)).numpy()
        err = procrustes_point_errors(pt, torch.from_numpy(w), gt, normalise(gt)).numpy()
        np.testing.assert_allclose(err, ref_err, atol=1e-10)

    def test_similarity_matches_umeyama_on_exact_data(self) -> None:
        rng = np.random.default_rng(5)
        p = rng.normal(size=(60, 3))
        true_r = Rotation.random(random_state=5).as_matrix()
        g = 2.5 * p @ true_r.T + np.array([1.0, 2.0, 3.0])
        m, t = weighted_procrustes(
            torch.from_numpy(p.T.copy()),
            torch.from_numpy(g.T.copy()),
            torch.from_numpy(rng.uniform(1, 2, 60)),
            with_scale=True,
        )
        np.testing.assert_allclose(m.numpy(), 2.5 * true_r, atol=1e-10)
        np.testing.assert_allclose(t.numpy(), [1.0, 2.0, 3.0], atol=1e-10)

    def test_weights_matter(self) -> None:
        rng = np.random.default_rng(4)
        p = torch.from_numpy(rng.normal(size=(3, 100)))
        g = p + torch.from_numpy(rng.normal(size=(3, 100)))
        w = torch.from_numpy(rng.uniform(0.1, 10, size=100))
        r1, _ = weighted_procrustes(p, g, w)
        r2, _ = weighted_procrustes(p, g, torch.ones(100, dtype=torch.float64))
        assert (r1 - r2).abs().max() > 1e-3

    def test_reflection_is_never_returned(self) -> None:
        p = torch.randn(3, 50, dtype=torch.float64)
        g = p * torch.tensor([[-1.0], [1.0], [1.0]], dtype=torch.float64)  # a mirror image
        rot, _ = weighted_procrustes(p, g, torch.ones(50, dtype=torch.float64))
        assert torch.linalg.det(rot) == pytest.approx(1.0)

    def test_batched_leading_dims(self) -> None:
        p = torch.randn(4, 2, 3, 30)
        rot, t = weighted_procrustes(p, torch.randn(3, 30), torch.rand(4, 2, 30))
        assert rot.shape == (4, 2, 3, 3) and t.shape == (4, 2, 3)


class TestView2Error:
    def test_zero_for_a_rigidly_moved_and_scaled_view2(self) -> None:
        g = torch.Generator().manual_seed(0)
        gt = torch.rand(2, 8, 8, 3, generator=g, dtype=torch.float64) + torch.tensor(
            [0, 0, 2.0], dtype=torch.float64
        )
        valid = torch.rand(2, 8, 8, generator=g) > 0.1
        rot = torch.from_numpy(Rotation.from_euler("xyz", [20, -35, 60], degrees=True).as_matrix())
        pred = gt @ rot.T + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
        pred[0] = 99.0  # view 1 is discarded
        conf = torch.rand(2, 8, 8, generator=g, dtype=torch.float64) + 1
        assert float(procrustes_view2_error(pred, conf, gt, valid)) == pytest.approx(0.0, abs=1e-10)
        # the paper's rigid fit leaves an x/y offset for points of another scale; a similarity fit does not
        assert float(procrustes_view2_error(3 * pred, conf, gt, valid)) > 1e-3
        scaled = procrustes_view2_error(3 * pred, conf, gt, valid, with_scale=True)
        assert float(scaled) == pytest.approx(0.0, abs=1e-10)

    def test_too_few_points_give_nan(self) -> None:
        gt = torch.rand(2, 4, 4, 3)
        valid = torch.zeros(2, 4, 4, dtype=torch.bool)
        assert torch.isnan(procrustes_view2_error(gt, torch.ones(2, 4, 4), gt, valid))


class TestContributions:
    def test_by_hand(self) -> None:
        errors = {"dec_in": 1.0, "b00.self": 0.5, "b00.cross": 0.6, "b00.mlp": 0.6, "b01.self": 0.2}
        errors |= {"b01.cross": 0.3, "b01.mlp": 0.4}
        out = sublayer_contributions(errors, 2)
        assert out["per_block"]["b00.self"] == pytest.approx(-0.5)
        assert out["per_block"]["b01.self"] == pytest.approx(-0.4)
        assert out["total"] == pytest.approx({"self": -0.9, "cross": 0.2, "mlp": 0.1})
        assert sum(out["total"].values()) == pytest.approx((errors["b01.mlp"] - 1.0) / 1.0)

    def test_missing_location(self) -> None:
        with pytest.raises(ConfigError, match="missing"):
            sublayer_contributions({"dec_in": 1.0}, 1)


def contributions_by_hand(means: np.ndarray, dec_depth: int) -> np.ndarray:
    """Per-block contributions then per-type totals from means at dec_in, b00.self, ... (a plain loop)."""
    per_block = [(means[1 + i] - means[i]) / means[0] for i in range(3 * dec_depth)]
    totals = [sum(per_block[s::3]) for s in range(3)]
    return np.array(per_block + totals)


def synthetic_errors(n_pairs: int, dec_depth: int, seed: int) -> np.ndarray:
    """(P, 1 + 3 * depth) positive per-pair errors that fall through the blocks, with pair noise."""
    rng = np.random.default_rng(seed)
    trend = np.linspace(1.0, 0.3, 1 + 3 * dec_depth)
    return trend * rng.lognormal(0.0, 0.3, size=(n_pairs, 1)) + rng.normal(0, 0.05, (n_pairs, len(trend)))


class TestBootstrapContributions:
    def test_equals_an_independent_numpy_bootstrap(self) -> None:
        errors = synthetic_errors(30, 3, seed=0)
        errors[4, 2] = np.nan  # a pair without a value at one location is left out of every mean
        n_boot, seed, confidence = 300, 7, 0.9
        out = bootstrap_contributions(errors, 3, n_boot=n_boot, confidence=confidence, seed=seed)
        errors[4] = np.nan  # the reference: that pair's whole row dropped, the draws unchanged
        rng = np.random.default_rng(seed)
        boot = np.stack(
            [contributions_by_hand(np.nanmean(errors[rng.integers(0, 30, 30)], 0), 3) for _ in range(n_boot)]
        )
        low, high = np.percentile(boot, [5, 95], axis=0)
        value = contributions_by_hand(np.nanmean(errors, 0), 3)
        names = list(out["per_block"])
        assert names == contribution_locations(3)[1:]
        for suffix, expected in (("", value), ("_lo", low), ("_hi", high)):
            got = [out[f"per_block{suffix}"][k] for k in names] + [
                out[f"total{suffix}"][s] for s in ("self", "cross", "mlp")
            ]
            np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12, err_msg=suffix)

    def test_point_value_is_the_contribution_of_the_means(self) -> None:
        errors = synthetic_errors(20, 2, seed=1)
        out = bootstrap_contributions(errors, 2, n_boot=50, confidence=0.95, seed=0)
        means = dict(zip(contribution_locations(2), errors.mean(0), strict=True))
        expected = sublayer_contributions(means, 2)
        assert out["per_block"] == pytest.approx(expected["per_block"], rel=1e-12)
        assert out["total"] == pytest.approx(expected["total"], rel=1e-12)

    def test_interval_holds_the_value_and_shrinks_with_more_pairs(self) -> None:
        widths = []
        for n_pairs in (10, 100, 1000):
            out = bootstrap_contributions(
                synthetic_errors(n_pairs, 2, seed=2), 2, n_boot=400, confidence=0.95, seed=0
            )
            for part in ("per_block", "total"):
                for key, value in out[part].items():
                    assert out[f"{part}_lo"][key] <= value <= out[f"{part}_hi"][key], (n_pairs, key)
            widths.append(out["total_hi"]["self"] - out["total_lo"]["self"])
        assert widths[0] > 2 * widths[1] > 4 * widths[2] > 0

    def test_identical_pairs_give_zero_width(self) -> None:
        errors = np.tile(synthetic_errors(1, 2, seed=3), (12, 1))
        out = bootstrap_contributions(errors, 2, n_boot=100, confidence=0.95, seed=0)
        for part in ("per_block", "total"):
            for key, value in out[part].items():
                assert out[f"{part}_lo"][key] == pytest.approx(value, abs=1e-12)
                assert out[f"{part}_hi"][key] == pytest.approx(value, abs=1e-12)

    def test_wrong_width_is_refused(self) -> None:
        with pytest.raises(ShapeError, match=r"expected \(P, 7\)"):
            bootstrap_contributions(np.ones((5, 6)), 2, n_boot=10, confidence=0.95, seed=0)


def test_an_overflowed_confidence_weighs_most_instead_of_spoiling_the_fit() -> None:
    g = torch.randn(3, 40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    p = g + 0.1 * torch.randn(3, 40, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    w = torch.ones(40, dtype=torch.float32)
    w[7] = torch.inf  # 1 + exp(r) for r > 88 in float32
    big = w.clone()
    big[7] = torch.finfo(torch.float32).max
    R, t = weighted_procrustes(p, g, w)
    assert torch.isfinite(R).all() and torch.isfinite(t).all()
    R_big, t_big = weighted_procrustes(p, g, big)
    torch.testing.assert_close((R, t), (R_big, t_big), rtol=0, atol=0)
