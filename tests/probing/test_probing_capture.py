"""Captured activations are the model's own values, consistent with each other, and only those asked for."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from pipeline.errors import ConfigError, ShapeError
from pipeline.model.dust3r import Dust3r
from pipeline.model.hook_point import HookPoint
from pipeline.probing.capture import capture
from pipeline.probing.locations import attention_locations, block_name, residual_locations, stream_locations

DEPTH = 4  # tiny


def no_hooks_left(model: Dust3r) -> bool:
    return all(not m.fns for m in model.modules() if isinstance(m, HookPoint))


def test_shapes_views_and_only_what_was_asked(model, pair) -> None:
    with torch.inference_mode():
        _, acts = capture(
            model, *pair, locations=["enc", "b03.cross", "b01.self.out"], attention=["b02.cross"]
        )
    assert set(acts.stream) == {"enc", "b03.cross", "b01.self.out"}
    assert set(acts.attention) == {"b02.cross"}
    assert acts["enc"].shape == (2, 2, 12, 64)  # (B, V, N, D_enc)
    assert acts["b03.cross"].shape == (2, 2, 12, 64)
    assert acts.attention["b02.cross"].shape == (2, 2, 4, 12, 12)  # (B, V, A, Q, K)
    torch.testing.assert_close(acts.attention["b02.cross"].sum(-1), torch.ones(2, 2, 4, 12))
    assert no_hooks_left(model)


def test_stream_is_bit_exact_with_the_decoder_levels(model, pair) -> None:
    """Capturing the stream changes nothing: the same values as an unhooked decode."""
    with torch.inference_mode():
        plain = model(*pair)
        out, acts = capture(model, *pair, locations=stream_locations(DEPTH))
        e1, e2, p1, p2 = model.encode(*pair)
        levels = model.decode(e1, p1, e2, p2)
        for view in (0, 1):
            assert torch.equal(acts["enc"][:, view], levels[view][0])
            for b in range(DEPTH - 1):  # bXX.mlp is decoder level XX + 1
                assert torch.equal(acts[f"{block_name(b)}.mlp"][:, view], levels[view][b + 1])
            assert torch.equal(model.dec_norm(acts["b03.mlp"][:, view]), levels[view][-1])
            assert torch.equal(acts["dec_in"][:, view], model.decoder_embed(levels[view][0]))
    for mine, theirs in zip(out, plain, strict=True):
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs)


def test_residual_adds(model, pair) -> None:
    """bXX.self = previous + self.out, bXX.cross = bXX.self + cross.out, bXX.mlp = bXX.cross + mlp.out."""
    with torch.inference_mode():
        _, acts = capture(model, *pair, locations=stream_locations(DEPTH))
    previous = acts["dec_in"]
    for b in range(DEPTH):
        name = block_name(b)
        assert torch.equal(acts[f"{name}.self"], previous + acts[f"{name}.self.out"])
        assert torch.equal(acts[f"{name}.cross"], acts[f"{name}.self"] + acts[f"{name}.cross.out"])
        assert torch.equal(acts[f"{name}.mlp"], acts[f"{name}.cross"] + acts[f"{name}.mlp.out"])
        previous = acts[f"{name}.mlp"]


def heads(x: Tensor, num_heads: int) -> Tensor:
    """(B, N, D) -> (B, A, N, E)."""
    b, n, d = x.shape
    return x.view(b, n, num_heads, d // num_heads).transpose(1, 2)


def merge(x: Tensor) -> Tensor:
    b, a, n, e = x.shape
    return x.transpose(1, 2).reshape(b, n, a * e)


@pytest.mark.parametrize("block", [0, 2])
def test_attention_weights_reproduce_the_sublayer_outputs(model, pair, block: int) -> None:
    """weights @ values, merged and projected, is the captured `.out` of that sublayer."""
    name = block_name(block)
    before = "dec_in" if block == 0 else f"{block_name(block - 1)}.mlp"
    with torch.inference_mode():
        _, acts = capture(
            model,
            *pair,
            locations=[before, f"{name}.self", f"{name}.self.out", f"{name}.cross.out"],
            attention=[f"{name}.self", f"{name}.cross"],
        )
        for view, decoder in ((1, model.dec_blocks), (2, model.dec_blocks2)):
            blk, v = decoder[block], view - 1
            x = blk.norm1(acts[before][:, v])
            values = heads(blk.attn.qkv(x).chunk(3, dim=-1)[2], 4)
            self_out = blk.attn.proj(merge(acts.attention[f"{name}.self"][:, v] @ values))
            torch.testing.assert_close(self_out, acts[f"{name}.self.out"][:, v], atol=1e-6, rtol=1e-5)
            other = blk.norm_y(acts[before][:, 1 - v])  # keys/values: the other view's previous level
            values = heads(blk.cross_attn.projv(other), 4)
            cross_out = blk.cross_attn.proj(merge(acts.attention[f"{name}.cross"][:, v] @ values))
            torch.testing.assert_close(cross_out, acts[f"{name}.cross.out"][:, v], atol=1e-6, rtol=1e-5)


def test_capturing_everything_matches_the_plain_forward(model, pair) -> None:
    """Explicit softmax where weights are captured, SDPA elsewhere: equal up to float rounding."""
    with torch.inference_mode():
        plain = model(*pair)
        out, acts = capture(
            model, *pair, locations=residual_locations(DEPTH), attention=attention_locations(DEPTH)
        )
    assert len(acts.attention) == 2 * DEPTH
    for mine, theirs in zip(out, plain, strict=True):
        for key in theirs:
            torch.testing.assert_close(mine[key], theirs[key], atol=1e-5, rtol=1e-5)


def test_device_and_dtype(model, pair) -> None:
    with torch.inference_mode():
        _, acts = capture(
            model, *pair, locations=["b01.mlp"], attention=["b01.self"], dtype=torch.float16, device="cpu"
        )
    assert acts["b01.mlp"].dtype == acts.attention["b01.self"].dtype == torch.float16


def test_capture_with_gradients_returns_detached_values(model, pair) -> None:
    out, acts = capture(model, *pair, locations=["b01.mlp"])
    assert out[0]["pts3d"].requires_grad and not acts["b01.mlp"].requires_grad


def test_errors_name_what_is_wrong(model, pair) -> None:
    with pytest.raises(ConfigError, match=r"^Unknown location 'b1\.mlp'\. Did you mean 'b01\.mlp'\?"):
        capture(model, *pair, locations=["b1.mlp"])
    with pytest.raises(ConfigError, match=r"^Unknown attention location 'b01\.mlp'"):
        capture(model, *pair, attention=["b01.mlp"])
    with pytest.raises(
        ShapeError, match=r"^img2: expected \(2, 3, 48, 64\) \(from img1\): capture stacks the views"
    ):
        capture(model, pair[0], pair[1][:, :, :32], locations=["enc"])
    with torch.inference_mode():
        _, acts = capture(model, *pair, locations=["b01.mlp"])
    with pytest.raises(
        ConfigError, match=r"^Unknown captured location 'b01\.self'\. Did you mean 'b01\.mlp'\?"
    ):
        acts["b01.self"]
    assert no_hooks_left(model)
