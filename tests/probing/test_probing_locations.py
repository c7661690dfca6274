"""Location names: one spelling, every name resolves to a hook point, typos fail helpfully."""

from __future__ import annotations

import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.model.dust3r import Dust3r
from pipeline.model.hook_point import HookPoint
from pipeline.model.registry import MODEL_SIZES
from pipeline.probing.hooks import Site, hook_paths, resolve
from pipeline.probing.locations import (
    ATTENTION_LOCATIONS,
    LOCATIONS,
    RESIDUAL_LOCATIONS,
    attention_locations,
    check_names,
    residual_locations,
    stream_locations,
)


def test_the_paper_locations() -> None:
    assert len(RESIDUAL_LOCATIONS) == 38
    assert RESIDUAL_LOCATIONS[:5] == ["enc", "dec_in", "b00.self", "b00.cross", "b00.mlp"]
    assert RESIDUAL_LOCATIONS[-1] == "b11.mlp"
    assert len(LOCATIONS) == 38 + 36 and LOCATIONS[-1] == "b11.mlp.out"
    assert ATTENTION_LOCATIONS[:3] == ["b00.self", "b00.cross", "b01.self"] and len(ATTENTION_LOCATIONS) == 24
    assert len(set(LOCATIONS)) == len(LOCATIONS)


def test_locations_for_any_depth() -> None:
    assert residual_locations(2) == [
        "enc",
        "dec_in",
        "b00.self",
        "b00.cross",
        "b00.mlp",
        "b01.self",
        "b01.cross",
        "b01.mlp",
    ]
    assert stream_locations(1)[-3:] == ["b00.self.out", "b00.cross.out", "b00.mlp.out"]
    assert attention_locations(1) == ["b00.self", "b00.cross"]


def test_every_site_resolves_to_a_hook_point_of_the_official_model() -> None:
    with torch.device("meta"):
        model = Dust3r(MODEL_SIZES["dust3r-224-linear"])
    table = hook_paths(12)
    assert len(table) == 2 * (74 + 24 + 24)
    assert len(set(table.values())) == len(table)
    for site, path in table.items():
        assert isinstance(model.get_submodule(path), HookPoint), (site, path)
    assert table[Site("stream", "b07.cross", 2)] == "dec_blocks2.7.hook_cross"
    assert table[Site("stream", "enc", 1)] == "hook_enc1"
    assert table[Site("attention", "b03.cross", 1)] == "dec_blocks.3.cross_attn.hook_weights"
    assert table[Site("heads", "b03.self", 2)] == "dec_blocks2.3.attn.hook_heads"
    hooks = [m for m in model.modules() if isinstance(m, HookPoint)]
    assert all(not list(h.parameters(recurse=False)) for h in hooks)


def test_unknown_names_suggest_and_list() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^Unknown location 'b3\.cross'\. Did you mean 'b03\.cross'\? Valid: enc, dec_in, b00\.self, ",
    ):
        check_names(["enc", "b3.cross"], LOCATIONS, "location")
    with pytest.raises(
        ConfigError, match=r"^Unknown attention location 'b03\.mlp'\. Did you mean 'b03\.self'\?"
    ):
        check_names(["b03.mlp"], ATTENTION_LOCATIONS, "attention location")
    with pytest.raises(ConfigError, match=r"… \(62 more\)$"):
        check_names(["nonsense"], LOCATIONS, "location")


def test_resolve_checks_the_model_depth_and_view(model) -> None:
    with pytest.raises(ConfigError, match=r"^Unknown location 'b11\.mlp'\. Did you mean 'b01\.mlp'\?"):
        resolve(model, Site("stream", "b11.mlp", 1))  # tiny has 4 blocks
    with pytest.raises(ConfigError, match=r"^view: expected 1 or 2, got 0 \(for 'b01\.mlp'\)"):
        resolve(model, Site("stream", "b01.mlp", 0))
    with pytest.raises(ConfigError, match=r"^namespace: expected one of"):
        resolve(model, Site("residual", "b01.mlp", 1))
