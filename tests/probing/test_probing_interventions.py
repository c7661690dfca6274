"""Interventions change exactly what they target, compose with capture, and always come off."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from pipeline.errors import ConfigError, ShapeError
from pipeline.model.hook_point import HookPoint
from pipeline.probing.capture import capture
from pipeline.probing.hooks import Site, attached
from pipeline.probing.interventions import Intervention, ablate_heads, intervened, knockout_keys, patch_stream

UPSTREAM = ["dec_in", "b01.mlp"]


def no_hooks_left(model) -> bool:
    return all(not m.fns for m in model.modules() if isinstance(m, HookPoint))


def run(model, pair, interventions=(), heads_of: str | None = None):
    """Capture a few locations, b02.self attention and (optionally) one layer's head outputs."""
    recorded: dict[int, Tensor] = {}

    def recorder(view: int):
        def record(x: Tensor) -> Tensor:
            recorded[view] = x.clone()
            return x

        return record

    sites = [(Site("heads", heads_of, v), recorder(v)) for v in (1, 2)] if heads_of else []
    with torch.inference_mode(), attached(model, sites):
        out, acts = capture(
            model,
            *pair,
            locations=[*UPSTREAM, "b02.self.out", "b02.self", "b03.mlp"],
            attention=["b02.self"],
            interventions=interventions,
        )
    return out, acts, recorded


def test_knocking_out_nothing_changes_nothing(model, pair) -> None:
    base_out, base, _ = run(model, pair)
    for empty in (knockout_keys("b02.self", [0, 1], keys=[]), knockout_keys("b02.self", [], top_k=3)):
        out, acts, _ = run(model, pair, [empty])
        assert all(torch.equal(acts.stream[k], base.stream[k]) for k in base.stream)
        assert torch.equal(acts.attention["b02.self"], base.attention["b02.self"])
        for mine, theirs in zip(out, base_out, strict=True):
            assert all(torch.equal(mine[k], theirs[k]) for k in theirs)


def test_knocking_out_a_key_changes_that_head_and_nothing_upstream(model, pair) -> None:
    _, base, base_heads = run(model, pair, heads_of="b02.self")
    ko = knockout_keys("b02.self", [2], keys=[5], views=(2,))
    _, acts, heads = run(model, pair, [ko], heads_of="b02.self")
    for name in UPSTREAM:  # before the attention of block 2: untouched, both views
        assert torch.equal(acts[name], base[name]), name
    assert torch.equal(heads[1], base_heads[1])  # view 1 is not targeted
    assert torch.equal(heads[2][:, [0, 1, 3]], base_heads[2][:, [0, 1, 3]])  # other heads of view 2
    assert not torch.allclose(heads[2][:, 2], base_heads[2][:, 2])
    weights = acts.attention["b02.self"][:, 1]  # captured after the knockout
    assert bool((weights[:, 2, :, 5] == 0).all())
    assert torch.equal(weights[:, [0, 1, 3]], base.attention["b02.self"][:, 1, [0, 1, 3]])
    for name in ("b02.self.out", "b02.self"):  # downstream: changed in view 2 only
        assert torch.equal(acts[name][:, 0], base[name][:, 0])
        assert not torch.allclose(acts[name][:, 1], base[name][:, 1])
    assert not torch.allclose(acts["b03.mlp"][:, 1], base["b03.mlp"][:, 1])


def test_top_k_knockout_removes_the_most_attended_keys(model, pair) -> None:
    _, base, _ = run(model, pair)
    _, acts, _ = run(model, pair, [knockout_keys("b02.self", [0, 3], top_k=2, views=(1,))])
    before, after = base.attention["b02.self"][:, 0], acts.attention["b02.self"][:, 0]
    for head in (0, 3):
        dropped = (after[:, head] == 0).all(dim=1)  # (B, K): keys zero for every query
        assert dropped.sum(dim=1).tolist() == [2, 2]
        top = before[:, head].sum(dim=1).topk(2, dim=-1).indices
        assert bool(dropped.gather(1, top).all())
    assert torch.equal(after[:, [1, 2]], before[:, [1, 2]])


def test_renormalized_knockout_keeps_rows_stochastic(model, pair) -> None:
    _, acts, _ = run(model, pair, [knockout_keys("b02.self", [1], keys=[0, 1], renormalize=True)])
    rows = acts.attention["b02.self"][:, :, 1].sum(-1)
    torch.testing.assert_close(rows, torch.ones_like(rows))


def test_ablating_one_head_removes_exactly_its_contribution(model, pair) -> None:
    """out(ablated) = out - head_1 @ W_proj[:, E:2E]^T, with head_1 the recorded output of head 1."""
    _, base, heads = run(model, pair, heads_of="b02.self")  # recorder runs before the ablation
    _, acts, _ = run(model, pair, [ablate_heads("b02.self", [1], views=(2,))], heads_of="b02.self")
    with torch.inference_mode():
        w = model.dec_blocks2[2].attn.proj.weight[:, 16:32]  # E = 64 / 4
        expected = base["b02.self.out"][:, 1] - heads[2][:, 1] @ w.T
    torch.testing.assert_close(acts["b02.self.out"][:, 1], expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(acts["b02.self.out"][:, 0], base["b02.self.out"][:, 0])


def test_ablating_every_head_leaves_only_the_projection_bias(model, pair) -> None:
    """With every head zeroed before `proj`, the sublayer adds just proj's bias."""
    _, base, _ = run(model, pair)
    _, acts, _ = run(model, pair, [ablate_heads("b02.self", [0, 1, 2, 3], views=(2,))])
    assert torch.equal(acts["b02.self.out"][:, 0], base["b02.self.out"][:, 0])
    bias = model.dec_blocks2[2].attn.proj.bias
    assert torch.equal(acts["b02.self.out"][:, 1], bias.expand_as(acts["b02.self.out"][:, 1]))


def test_patching_a_whole_level_reproduces_the_donor_run(model, pair) -> None:
    """Everything after b01.mlp depends only on b01.mlp (and positions): patching it in
    both views turns the run on `pair` into the run on the donor pair."""
    donor = tuple(torch.randn_like(x) for x in pair)
    with torch.inference_mode():
        donor_out, donor_acts = capture(model, *donor, locations=["b01.mlp", "b03.mlp"])
        out, acts = capture(
            model,
            *pair,
            locations=["b03.mlp"],
            interventions=[patch_stream("b01.mlp", donor_acts["b01.mlp"])],
        )
    assert torch.equal(acts["b03.mlp"], donor_acts["b03.mlp"])
    for mine, theirs in zip(out, donor_out, strict=True):
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs)


def test_custom_function_contract(model, pair) -> None:
    seen: list[str] = []

    def observe(x: Tensor, *, loc: Site) -> None:
        seen.append(str(loc))

    _, base, _ = run(model, pair)
    _, acts, _ = run(model, pair, [Intervention("stream", "b01.mlp", observe)])
    assert seen == ["'b01.mlp' (stream, view 1)", "'b01.mlp' (stream, view 2)"]
    assert torch.equal(acts["b03.mlp"], base["b03.mlp"])


def test_wrong_shape_names_site_and_shapes_and_hooks_come_off(model, pair) -> None:
    def bad(x: Tensor, *, loc: Site) -> Tensor:
        return x[:, :3]

    with pytest.raises(
        ShapeError,
        match=r"^intervention at 'b01\.self' \(stream, view 1\): returned \(2, 3, 64\), expected \(2, 12, 64\)$",
    ):
        run(model, pair, [Intervention("stream", "b01.self", bad)])
    assert no_hooks_left(model)
    with pytest.raises(ShapeError, match=r"returned list, expected"):
        run(model, pair, [Intervention("stream", "b01.self", lambda x, *, loc: [x])])
    assert no_hooks_left(model)


def test_errors_are_raised_before_the_forward_pass_where_possible(model, pair) -> None:
    with pytest.raises(ConfigError, match=r"give exactly one of keys= and top_k="):
        knockout_keys("b02.self", [0])
    with pytest.raises(
        ConfigError, match=r"^Unknown attention location 'b2\.self'\. Did you mean 'b02\.self'\?"
    ):
        with intervened(model, [knockout_keys("b2.self", [0], keys=[1])]):
            pass
    with pytest.raises(
        ConfigError,
        match=r"^intervention at 'b02\.self' \(attention, view 2\): head 4 out of range; there are 4",
    ):
        run(model, pair, [knockout_keys("b02.self", [4], keys=[0], views=(2,))])
    with pytest.raises(ConfigError, match=r"key 12 out of range; there are 12 \(keys 0\.\.11\)"):
        run(model, pair, [knockout_keys("b02.self", [0], keys=[12])])
    assert no_hooks_left(model)
