"""register_scores scores the compact maps a few at a time: the same values as all at once."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.jobs import eval_attention
from pipeline.jobs.eval_attention import AttentionLayout, register_scores
from pipeline.jobs.eval_params import EvaluateParams
from pipeline.metrics.registers import head_scores, sink_tokens
from pipeline.probing.locations import attention_locations
from pipeline.store.attention_codec import decode_uint8, encode_uint8_argmax

DEPTH, A, GRID = 2, 3, (3, 4)
N = GRID[0] * GRID[1]
LOCATIONS = ("dec_in", "b00.self", "b00.cross", "b00.mlp", "b01.self", "b01.cross", "b01.mlp")


@pytest.mark.parametrize("block_maps", [1, 3, 100])  # one map, blocks that do not divide 2 x 2 x 4, all
def test_blocks_equal_the_whole_batch(monkeypatch: pytest.MonkeyPatch, block_maps: int) -> None:
    rng = np.random.default_rng(0)
    layout = AttentionLayout(tuple(attention_locations(DEPTH)), LOCATIONS, GRID, 16)
    logits = rng.normal(size=(2, 2, len(layout.attn_locations), A, N, N)) * 3
    logits[..., 7] += 4  # key 7 a sink of every map
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    codes, _ = encode_uint8_argmax(probs.astype(np.float32))
    norms = rng.random((2, 2, len(LOCATIONS), N)).astype(np.float32)
    monkeypatch.setattr(eval_attention, "REGISTER_BLOCK_MAPS", block_maps)

    got = register_scores(codes, norms, layout, EvaluateParams(register_top_k=2, sink_factor=3.0))

    whole = head_scores(decode_uint8(codes), 2)
    np.testing.assert_array_equal(got["independence"], whole["independence"])
    np.testing.assert_array_equal(got["topk_mass"], whole["topk_mass"])
    np.testing.assert_array_equal(got["sinks"], sink_tokens(whole["received"], 3.0))
    assert got["sinks"][..., 7].all() and got["sinks"].sum() == got["sinks"][..., 7].size
