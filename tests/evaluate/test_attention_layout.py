"""AttentionLayout.key_stream: which stored stream each attention map's keys are read from,
checked by name and against what the tiny model's attention layers actually receive."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from pipeline.jobs.eval_attention import AttentionLayout
from pipeline.jobs.extract_model import decoder_locations
from pipeline.model.registry import build_model
from pipeline.probing.capture import capture
from pipeline.probing.locations import attention_locations

DEPTH = 4  # the tiny model's decoder blocks
RESIDUAL = (
    "dec_in",
    *("b00.self", "b00.cross", "b00.mlp"),
    *("b01.self", "b01.cross", "b01.mlp"),
    *("b02.self", "b02.cross", "b02.mlp"),
    *("b03.self", "b03.cross", "b03.mlp"),
)


def layout(locations: tuple[str, ...]) -> AttentionLayout:
    return AttentionLayout(tuple(attention_locations(DEPTH)), locations, (4, 4), 16)


@pytest.mark.parametrize(
    "attn,view,expected",
    [
        ("b00.self", 0, (0, 0)),  # dec_in of its own view
        ("b00.self", 1, (0, 1)),
        ("b00.cross", 0, (0, 1)),  # dec_in of the other view
        ("b00.cross", 1, (0, 0)),
        ("b02.self", 0, (6, 0)),  # b01.mlp, the stream entering block 2, own view
        ("b02.self", 1, (6, 1)),
        ("b02.cross", 0, (6, 1)),  # b01.mlp of the other view
        ("b02.cross", 1, (6, 0)),
        ("b03.cross", 1, (9, 0)),  # b02.mlp
    ],
)
def test_key_stream_by_hand_on_the_residual_layout(attn: str, view: int, expected: tuple[int, int]) -> None:
    """On dec_in, bXX.self, bXX.cross, bXX.mlp: block b's keys are the stream entering it."""
    assert layout(RESIDUAL).key_stream(attn, view) == expected


def test_key_stream_on_the_store_order_with_sublayer_outputs() -> None:
    """The store's `location` order with the `.out` entries interleaved: same streams, their indices."""
    locations = tuple(decoder_locations(DEPTH, with_out=True))
    assert locations[:3] == ("dec_in", "b00.self.out", "b00.self")  # the order spelled out below
    lay = layout(locations)
    assert lay.key_stream("b00.cross", 0) == (0, 1)
    assert lay.key_stream("b01.self", 1) == (6, 1)  # dec_in, then 2 entries per sublayer: b00.mlp is 6th
    assert lay.key_stream("b02.cross", 0) == (12, 1)  # b01.mlp


def test_key_stream_is_none_where_the_stream_is_not_stored() -> None:
    """Without dec_in, block 0 has no key stream; without b01.mlp, block 2 has none."""
    lay = layout(("b00.self", "b00.cross", "b01.self", "b01.cross", "b02.mlp"))
    for attn in ("b00.self", "b00.cross", "b02.self", "b02.cross"):
        for view in (0, 1):
            assert lay.key_stream(attn, view) is None, (attn, view)
    assert lay.key_stream("b03.cross", 1) == (4, 0)  # b02.mlp is there


def heads(t: Tensor, n_heads: int) -> Tensor:
    """(B, N, D) -> (B, A, N, D / A), head-major channels."""
    return t.unflatten(-1, (n_heads, -1)).transpose(1, 2)


def self_map(attn: nn.Module, x: Tensor, rot: Callable[[Tensor], Tensor]) -> Tensor:
    """softmax(q k^T / sqrt(E)) of a SelfAttention on normalised tokens x, keys from x."""
    q, k, _ = (rot(heads(t, attn.num_heads)) for t in attn.qkv(x).chunk(3, dim=-1))
    return (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(-1)


def cross_map(
    attn: nn.Module, x: Tensor, y: Tensor, xrot: Callable[[Tensor], Tensor], yrot: Callable[[Tensor], Tensor]
) -> Tensor:
    """softmax(q k^T / sqrt(E)) of a CrossAttention: queries from x, keys from y."""
    q, k = xrot(heads(attn.projq(x), attn.num_heads)), yrot(heads(attn.projk(y), attn.num_heads))
    return (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(-1)


def decoder(model: nn.Module, view: int) -> nn.ModuleList:
    """View 0's blocks are `dec_blocks`, view 1's `dec_blocks2`."""
    return model.dec_blocks if view == 0 else model.dec_blocks2


def test_key_stream_names_the_keys_the_model_attends_over() -> None:
    """In the tiny random model, for blocks 0 and 2, both views: the key input of self- and
    cross-attention (read by a pre-hook on the attention module) is norm1 / norm_y of the stream
    key_stream names, and the captured map is recomputed from that stream with the block's
    weights; the other view's stream (or the own one, for cross) gives a different map."""
    model = build_model("tiny", seed=0).eval()
    img = torch.rand(2, 2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    names = ("b00.self", "b00.cross", "b02.self", "b02.cross")
    inputs: dict[tuple[str, int], tuple] = {}
    handles = [
        getattr(
            decoder(model, v)[int(name[1:3])], "attn" if name.endswith("self") else "cross_attn"
        ).register_forward_pre_hook(lambda _m, args, key=(name, v): inputs.__setitem__(key, args))
        for name in names
        for v in (0, 1)
    ]
    try:
        with torch.no_grad():
            _, acts = capture(model, img[:, 0], img[:, 1], locations=RESIDUAL, attention=names)
    finally:
        for h in handles:
            h.remove()
    lay = layout(RESIDUAL)
    for name in names:
        block = int(name[1:3])
        for v in (0, 1):
            loc, kv = lay.key_stream(name, v)
            blk = decoder(model, v)[block]
            keys = acts[RESIDUAL[loc]][:, kv]
            with torch.no_grad():
                if name.endswith("self"):
                    x, rot = inputs[(name, v)]
                    torch.testing.assert_close(x, blk.norm1(keys), rtol=0, atol=0)
                    mapped = self_map(blk.attn, blk.norm1(keys), rot)
                    wrong = self_map(blk.attn, blk.norm1(acts[RESIDUAL[loc]][:, 1 - kv]), rot)
                else:
                    x, y, xrot, yrot = inputs[(name, v)]
                    torch.testing.assert_close(y, blk.norm_y(keys), rtol=0, atol=0)
                    mapped = cross_map(blk.cross_attn, x, blk.norm_y(keys), xrot, yrot)
                    own = blk.norm_y(acts[RESIDUAL[loc]][:, 1 - kv])
                    wrong = cross_map(blk.cross_attn, x, own, xrot, yrot)
            captured = acts.attention[name][:, v]
            torch.testing.assert_close(mapped, captured, rtol=1e-5, atol=1e-6)
            assert (wrong - captured).abs().max() > 1e-3, (name, v)
