"""E.1: the scale-shift invariant error is zero exactly where it should be, and a median is numpy's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.errors import ShapeError
from pipeline.metrics.pointmap import median, normalise, ssi_error, ssi_point_errors


def pair_points(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(2, 8, 8, 3, generator=g, dtype=torch.float64) + torch.tensor(
        [0.0, 0.0, 2.0], dtype=torch.float64
    )
    valid = torch.rand(2, 8, 8, generator=g) > 0.2
    return gt, valid


class TestMedian:
    @pytest.mark.parametrize("n", [1, 2, 7, 10])
    def test_matches_numpy(self, n: int) -> None:
        x = torch.randn(3, n, dtype=torch.float64)
        np.testing.assert_allclose(median(x), np.median(x.numpy(), axis=-1), atol=1e-12)

    @pytest.mark.parametrize("n", [40_000, 40_001])
    @pytest.mark.parametrize("kind", ["normal", "ties", "constant", "sorted", "heavy_tail"])
    def test_long_rows_are_exact(self, n: int, kind: str) -> None:
        """Long rows of every shape of data (ties, sorted, heavy tails) give numpy's exact value."""
        rng = np.random.default_rng(n)
        x = {
            "normal": rng.normal(size=(6, n)),
            "ties": rng.integers(0, 4, size=(6, n)).astype(np.float64),
            "constant": np.full((6, n), 2.5),
            "sorted": np.sort(rng.normal(size=(6, n)))[:, ::-1],
            "heavy_tail": rng.standard_cauchy(size=(6, n)),
        }[kind].astype(np.float32)
        np.testing.assert_array_equal(median(torch.from_numpy(x)), np.median(x, axis=-1))

    def test_other_dims_and_dtypes(self) -> None:
        x = torch.randn(3, 50_000, 2, dtype=torch.float64)
        np.testing.assert_array_equal(median(x, dim=1), np.median(x.numpy(), axis=1))
        h = torch.randn(4, 9).half()  # not a numpy-selectable dtype here: torch's kthvalue
        np.testing.assert_array_equal(median(h).numpy(), np.median(h.numpy(), axis=-1))

    def test_empty_is_refused(self) -> None:
        with pytest.raises(ShapeError, match="empty"):
            median(torch.zeros(2, 0))


class TestSsiError:
    @pytest.mark.parametrize("scale,shift", [(1.0, 0.0), (3.5, 0.0), (0.2, -7.0), (10.0, 4.0)])
    def test_zero_for_scale_and_depth_shift(self, scale: float, shift: float) -> None:
        gt, valid = pair_points()
        pred = scale * gt + torch.tensor([0.0, 0.0, shift], dtype=torch.float64)
        err = ssi_error(pred, gt, valid)
        for key in ("ssi_error", "ssi_error_v1", "ssi_error_v2"):
            assert float(err[key]) == pytest.approx(0.0, abs=1e-12), key

    def test_positive_for_other_changes_and_in_gt_units(self) -> None:
        gt, valid = pair_points()
        pred = gt.clone()
        pred[..., 0] += 0.1  # an x shift is not forgiven
        err = ssi_error(pred, gt, valid)["ssi_error"]
        assert 0.0 < float(err) <= 0.1 + 1e-9

    def test_leading_dims_and_per_view_means(self) -> None:
        gt, valid = pair_points()
        pred = torch.stack([gt, gt * 2, gt + 0.05 * torch.randn_like(gt)])  # (L, V, H, W, 3)
        err = ssi_error(pred, gt, valid)
        assert err["ssi_error"].shape == (3,)
        assert err["ssi_error"][:2].abs().max() < 1e-12 and err["ssi_error"][2] > 0
        n1, n2 = valid[0].sum(), valid[1].sum()
        pooled = (err["ssi_error_v1"] * n1 + err["ssi_error_v2"] * n2) / (n1 + n2)
        torch.testing.assert_close(pooled, err["ssi_error"], atol=1e-12, rtol=1e-12)

    def test_by_hand_follows_the_recipe(self) -> None:
        gt, valid = pair_points(3)
        pred = gt + 0.1 * torch.randn_like(gt)
        p, g = pred[valid].numpy(), gt[valid].numpy()

        def norm(x: np.ndarray) -> tuple[np.ndarray, float]:
            x = x.copy()
            x[:, 2] -= np.median(x[:, 2])
            return x, float(np.median(np.linalg.norm(x - np.median(x, axis=0), axis=1)))

        (ps, s_p), (gs, s_g) = norm(p), norm(g)
        expected = np.linalg.norm(ps * s_g / s_p - gs, axis=1).mean()
        assert float(ssi_error(pred, gt, valid)["ssi_error"]) == pytest.approx(expected, rel=1e-12)

    def test_no_valid_pixel_gives_nan(self) -> None:
        gt, valid = pair_points()
        assert torch.isnan(ssi_error(gt, gt, torch.zeros_like(valid))["ssi_error"])

    def test_shape_mismatch(self) -> None:
        with pytest.raises(ShapeError, match=r"pred: expected \(\.\.\., 3, n\)"):
            ssi_point_errors(torch.zeros(3, 5), normalise(torch.rand(3, 4)))
