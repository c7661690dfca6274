"""DUSt3R's confidence-aware scale-invariant loss: zero at the truth, scale-free, mask-aware."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.errors import ShapeError
from pipeline.probes.loss import conf_regression_loss


def _scene(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    gt = torch.randn(3, 2, 8, 8, 3, generator=g) + torch.tensor([0.0, 0.0, 4.0])
    valid = torch.rand(3, 2, 8, 8, generator=g) > 0.3
    gt[~valid] = float("nan")  # the renders store has NaN where not valid
    return gt, valid


class TestConfRegressionLoss:
    def test_zero_when_prediction_is_gt_up_to_a_global_scale_and_conf_is_one(self) -> None:
        gt, valid = _scene()
        pred = torch.where(valid[..., None], gt, 123.0) * torch.tensor([1.0, 7.0, 0.01]).view(3, 1, 1, 1, 1)
        loss = conf_regression_loss(pred[None], torch.ones(1, 3, 2, 8, 8), gt, valid)
        torch.testing.assert_close(loss, torch.zeros(1), atol=1e-6, rtol=0)

    @pytest.mark.parametrize("c", [1.5, 4.0])
    def test_constant_confidence_adds_minus_alpha_log_c_per_view(self, c: float) -> None:
        gt, valid = _scene()
        pred = torch.where(valid[..., None], gt, 0.0)[None]
        loss = conf_regression_loss(pred, torch.full((1, 3, 2, 8, 8), c), gt, valid, alpha=0.3)
        torch.testing.assert_close(loss, torch.tensor([-2 * 0.3 * math.log(c)]), atol=1e-6, rtol=0)

    def test_invariant_to_scaling_each_pair_of_the_prediction(self) -> None:
        gt, valid = _scene()
        g = torch.Generator().manual_seed(1)
        pred = torch.randn(4, 3, 2, 8, 8, 3, generator=g)
        conf = 1 + torch.rand(4, 3, 2, 8, 8, generator=g)
        scale = torch.tensor([0.1, 3.0, 50.0]).view(1, 3, 1, 1, 1, 1)
        torch.testing.assert_close(
            conf_regression_loss(pred * scale, conf, gt, valid), conf_regression_loss(pred, conf, gt, valid)
        )

    def test_matches_a_per_view_pooled_mean_written_out(self) -> None:
        gt, valid = _scene(2)
        g = torch.Generator().manual_seed(3)
        pred = torch.randn(3, 2, 8, 8, 3, generator=g)
        conf = 1 + torch.rand(3, 2, 8, 8, generator=g)
        total = 0.0
        gt0 = torch.nan_to_num(gt)
        for v in range(2):
            terms = []
            for b in range(3):
                m = valid[b]
                sp = pred[b][m].norm(dim=-1).sum() / m.sum()
                sg = gt0[b][m].norm(dim=-1).sum() / m.sum()
                d = (pred[b, v] / sp - gt0[b, v] / sg).norm(dim=-1)
                terms.append((conf[b, v] * d - 0.2 * conf[b, v].log())[valid[b, v]])
            total += torch.cat(terms).mean()
        torch.testing.assert_close(conf_regression_loss(pred, conf, gt, valid), total)

    def test_invalid_pixels_do_not_matter_and_gradients_stay_finite(self) -> None:
        gt, valid = _scene()
        pred = torch.randn(2, 3, 2, 8, 8, 3, requires_grad=True)
        conf = torch.ones(2, 3, 2, 8, 8)
        loss = conf_regression_loss(pred, conf, gt, valid)
        loss.sum().backward()
        assert torch.isfinite(loss).all() and torch.isfinite(pred.grad).all()
        assert (pred.grad[:, ~valid] == 0).all()
        changed = pred.detach().clone()
        changed[:, ~valid] = 1e6
        torch.testing.assert_close(conf_regression_loss(changed, conf, gt, valid), loss.detach())

    def test_shape_mismatch_names_every_shape(self) -> None:
        gt, valid = _scene()
        with pytest.raises(
            ShapeError, match=r"got pred \(3, 2, 8, 8, 3\), conf \(3, 2, 8, 8\), gt \(3, 2, 8, 7, 3\)"
        ):
            conf_regression_loss(gt, torch.ones(3, 2, 8, 8), gt[..., :7, :], valid)
