"""The head lens: at the last block it is the model's own output, and read at chosen pixels it
equals the image it would otherwise build."""

from __future__ import annotations

import pytest
import torch

from pipeline.errors import ConfigError, ShapeError
from pipeline.metrics.lens import head_lens, head_lens_at_pixels
from pipeline.model.registry import build_model
from pipeline.probes.heads import token_order_pixels
from pipeline.probing.capture import capture

SIZE = (48, 64)  # 3 x 4 patches of the `tiny` model: not square, so rows and columns cannot swap


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    model = build_model("tiny", seed=0).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():  # distinct views' heads and a non-trivial dec_norm
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


@pytest.fixture(scope="module")
def captured(model: torch.nn.Module) -> tuple[tuple[dict, dict], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(4)
    imgs = [torch.randn(2, 3, *SIZE, generator=g) for _ in range(2)]
    with torch.no_grad():
        out, acts = capture(model, *imgs, locations=["b00.cross", "b03.mlp"])
    return out, dict(acts.stream)


def test_last_block_reproduces_the_model_output(model, captured) -> None:
    out, acts = captured
    lens = head_lens(model, {"b03.mlp": acts["b03.mlp"]}, SIZE)["b03.mlp"]
    for v, key in enumerate(("pts3d", "pts3d_in_other_view")):
        torch.testing.assert_close(lens["pred"][:, v], out[v][key], rtol=0, atol=0)
        torch.testing.assert_close(lens["conf"][:, v], out[v]["conf"], rtol=0, atol=0)


def test_at_pixels_equals_the_images_at_those_pixels(model, captured) -> None:
    _, acts = captured
    images = head_lens(model, acts, SIZE)
    valid = torch.rand(2, 2, *SIZE, generator=torch.Generator().manual_seed(5)) > 0.3
    valid[1] = True  # a fully valid pair in token order: read by a strided copy, not a gather
    pixels = [valid[0].flatten().nonzero()[:, 0], token_order_pixels(valid[1], model.config.patch_size)]
    rows = head_lens_at_pixels(model, acts, pixels, SIZE)
    assert len(rows) == 2
    for b, (pred, conf) in enumerate(rows):
        n, n2 = int(valid[b].sum()), int(valid[b, 1].sum())
        assert pred.shape == (2, 3, n) and conf.shape == (2, n2)
        for j, loc in enumerate(acts):
            expected = images[loc]["pred"][b].flatten(0, 2)[pixels[b]].T
            torch.testing.assert_close(pred[j], expected, rtol=1e-5, atol=1e-6)
            view2_conf = images[loc]["conf"][b].flatten()[pixels[b][n - n2 :]]  # no view-1 confidence
            torch.testing.assert_close(conf[j], view2_conf, rtol=1e-6, atol=0)


def test_refusals(model, captured) -> None:
    _, acts = captured
    pixels = [torch.arange(5), torch.arange(5)]
    with pytest.raises(ShapeError, match="3 pairs"):
        head_lens_at_pixels(model, {"b00.cross": torch.cat([acts["b00.cross"]] * 2)[:3]}, pixels, SIZE)
    with pytest.raises(ShapeError, match=r"acts\['b00.cross'\]"):
        head_lens_at_pixels(model, {"b00.cross": acts["b00.cross"][..., :8]}, pixels, SIZE)
    with pytest.raises(ConfigError, match="linear head"):
        head_lens_at_pixels(build_model("tiny-dpt"), acts, pixels, SIZE)
