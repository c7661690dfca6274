"""Depth metrics after least-squares scale and shift, on hand-made arrays."""

from __future__ import annotations

import pytest
import torch

from pipeline.metrics.depth import align_scale_shift, depth_errors, depth_metrics


def test_alignment_recovers_scale_and_shift() -> None:
    gt = torch.tensor([1.0, 2.0, 3.0, 5.0], dtype=torch.float64)
    torch.testing.assert_close(align_scale_shift(0.5 * gt - 3, gt), gt)


def test_alignment_is_least_squares() -> None:
    pred = torch.tensor([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    gt = torch.tensor([1.0, 1.0, 4.0], dtype=torch.float64)
    aligned = align_scale_shift(pred, gt)
    torch.testing.assert_close(aligned[0], torch.tensor([0.5, 2.0, 3.5], dtype=torch.float64))  # line fit
    torch.testing.assert_close(aligned[1], torch.full((3,), 2.0, dtype=torch.float64))  # constant: mean


def test_absrel_and_delta1_by_hand() -> None:
    gt = torch.tensor([1.0, 2.0, 4.0, 5.0])
    pred = torch.tensor([1.1, 2.0, 2.0, 6.5])  # ratios 1.1, 1, 2, 1.3
    err = depth_errors(pred, gt)
    assert float(err["depth_abs_rel"]) == pytest.approx((0.1 + 0 + 0.5 + 0.3) / 4)
    assert float(err["depth_delta1"]) == pytest.approx(0.5)


def test_non_positive_aligned_depth_counts_as_wrong() -> None:
    err = depth_errors(torch.tensor([-1.0, 1.0]), torch.tensor([1.0, 1.0]))
    assert float(err["depth_delta1"]) == pytest.approx(0.5)
    assert float(err["depth_abs_rel"]) == pytest.approx((2.0 + 0.0) / 2)  # |-1 - 1| / 1, not clamped to 0


def test_alignment_that_goes_negative_costs_its_full_distance_in_absrel() -> None:
    """A least-squares fit that puts one pixel below zero: absrel counts |d - g| of the raw
    aligned depth, delta1 counts the pixel as wrong (clamping it to ~0 would give absrel 0.7;
    letting its negative ratio pass would give delta1 0.6)."""
    pred = torch.tensor([[0.0, 0.0, 1.0, 2.0, 3.0, 9.0]], dtype=torch.float64)
    gt = torch.tensor([[8.0, 8.0, 2.0, 1.0, 1.0, 3.0]], dtype=torch.float64)
    valid = torch.tensor([[True, True, True, True, True, False]])  # the last pixel is left out
    # by hand on the 5 valid pixels: mean pred 6/5, mean gt 4; centred pred (-1.2, -1.2, -0.2,
    # 0.8, 1.8), centred gt (4, 4, -2, -3, -3); s = (-4.8 - 4.8 + 0.4 - 2.4 - 5.4) / 6.8 = -2.5,
    # t = 4 + 2.5 * 1.2 = 7: aligned depths 7, 7, 4.5, 2, -0.5
    torch.testing.assert_close(
        align_scale_shift(pred[valid], gt[valid]),
        torch.tensor([7.0, 7.0, 4.5, 2.0, -0.5], dtype=torch.float64),
    )
    out = depth_metrics(pred, gt, valid)
    # absrel: (1/8 + 1/8 + 2.5/2 + 1/1 + 1.5/1) / 5; delta1: 8/7 < 1.25 twice, 2.25, 2 and the negative fail
    assert float(out["depth_abs_rel"]) == pytest.approx(4.0 / 5)
    assert float(out["depth_delta1"]) == pytest.approx(2 / 5)


def test_depth_metrics_mask_and_leading_dims() -> None:
    gt = torch.tensor([[1.0, 2.0], [0.0, 4.0]])
    valid = torch.tensor([[True, True], [True, False]])  # gt = 0 is dropped too: 2 pixels remain
    pred = torch.stack([2 * gt + 1, gt.flip(-1)])
    out = depth_metrics(pred, gt, valid)
    assert out["depth_abs_rel"].shape == (2,)
    assert float(out["depth_abs_rel"][0]) == pytest.approx(0.0, abs=1e-6)
    assert float(out["depth_delta1"][0]) == 1.0
    assert torch.isnan(depth_metrics(gt, gt, torch.zeros_like(valid))["depth_delta1"])
