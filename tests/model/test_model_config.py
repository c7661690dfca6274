"""Config validation, the registry, parameter counts and state_dict keys of the official sizes."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.errors import ConfigError, ShapeError
from pipeline.model.config import Dust3rConfig
from pipeline.model.dust3r import Dust3r
from pipeline.model.registry import MODEL_SIZES, build_model, config_name, get_config


def meta_model(name: str) -> Dust3r:
    with torch.device("meta"):
        return Dust3r(MODEL_SIZES[name])


@pytest.mark.parametrize(
    ("name", "n_keys", "n_values", "n_params"),
    [
        ("dust3r-224-linear", 877, 532_342_784, 532_342_784),
        # the DPT head's scratch.layerN_rn / scratch.layer_rn.{N-1} aliases: keys twice, parameters once
        ("dust3r-512-dpt", 1009, 577_806_728, 571_171_208),
    ],
)
def test_official_sizes_have_the_official_keys(name: str, n_keys: int, n_values: int, n_params: int) -> None:
    model = meta_model(name)
    keys = list(model.state_dict())
    assert len(keys) == n_keys
    assert sum(v.numel() for v in model.state_dict().values()) == n_values
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert keys[0] == "mask_token" and keys[-1].startswith("downstream_head2.")
    assert not any("hook" in k for k in keys)
    assert model.state_dict()["dec_blocks2.11.cross_attn.projq.weight"].shape == (768, 768)


def test_224_key_order_follows_the_official_registration() -> None:
    tops = list(dict.fromkeys(k.split(".")[0] for k in meta_model("dust3r-224-linear").state_dict()))
    assert tops == [
        "mask_token", "patch_embed", "enc_blocks", "enc_norm", "decoder_embed", "dec_blocks",
        "dec_norm", "dec_blocks2", "downstream_head1", "downstream_head2",
    ]  # fmt: skip
    block = [
        k[len("dec_blocks.0.") :] for k in meta_model("tiny").state_dict() if k.startswith("dec_blocks.0.")
    ]
    assert block == [
        "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
        "cross_attn.projq.weight", "cross_attn.projq.bias", "cross_attn.projk.weight", "cross_attn.projk.bias",
        "cross_attn.projv.weight", "cross_attn.projv.bias", "cross_attn.proj.weight", "cross_attn.proj.bias",
        "norm2.weight", "norm2.bias", "norm3.weight", "norm3.bias", "mlp.fc1.weight", "mlp.fc1.bias",
        "mlp.fc2.weight", "mlp.fc2.bias", "norm_y.weight", "norm_y.bias",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"enc_depth": 0}, r"^enc_depth: expected a positive int, got 0$"),
        ({"dec_num_heads": 5}, r"^dec_num_heads: dec_embed_dim \(64\) / dec_num_heads \(5\) must be"),
        (
            {"enc_num_heads": 32},
            r"^enc_num_heads: .*\(64\) / enc_num_heads \(32\) must be an integer multiple of 4",
        ),
        ({"img_size": (64, 60)}, r"^img_size: \(64, 60\) must be positive multiples of patch_size \(16\)"),
        ({"img_size": [64, 64]}, r"^img_size: expected a \(H, W\) tuple of ints, got \[64, 64\]"),
        ({"pos_embed": "cosine"}, r"^pos_embed: expected 'RoPE<base>'"),
        ({"head_type": "conv"}, r"^head_type: expected one of \('linear', 'dpt'\), got 'conv'"),
        ({"head_type": "dpt"}, r"^dec_depth: the dpt head needs dec_depth >= 10 .*got 4"),
        ({"output_mode": "pts3d+desc"}, r"^output_mode: only 'pts3d'"),
        ({"depth_mode": ("exp", 0.0, math.inf)}, r"^depth_mode: bounds must be \(-inf, inf\)"),
        ({"conf_mode": ("tanh", 1.0, 2.0)}, r"^conf_mode: expected \(mode, vmin, vmax\) with mode in"),
        ({"mlp_ratio": 0}, r"^mlp_ratio: expected a positive number, got 0"),
    ],
)
def test_invalid_config_names_field_and_value(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Dust3rConfig(**{**MODEL_SIZES["tiny"].to_kwargs(), **changes})


def test_config_is_frozen_and_round_trips_through_kwargs() -> None:
    config = MODEL_SIZES["dust3r-512-dpt"]
    with pytest.raises(AttributeError):
        config.dec_depth = 3  # type: ignore[misc]
    as_json = {k: list(v) if isinstance(v, tuple) else v for k, v in config.to_kwargs().items()}
    assert Dust3rConfig.from_kwargs({**as_json, "img_size": 512}) == config
    assert config.dpt_levels == (0, 6, 9, 12)
    assert config.rope_base == 100.0


def test_registry_names_and_suggestions() -> None:
    assert set(MODEL_SIZES) >= {"dust3r-224-linear", "dust3r-512-dpt", "tiny", "small"}
    assert config_name(get_config("small")) == "small"
    with pytest.raises(
        ConfigError, match=r"^Unknown model size 'dust3r-224'\. Did you mean 'dust3r-224-linear'\?"
    ):
        get_config("dust3r-224")


def test_build_model_is_seeded_and_copies_decoder_one_into_two() -> None:
    a, b = build_model("tiny", seed=3), build_model("tiny", seed=3)
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    assert torch.equal(a.dec_blocks2[1].mlp.fc1.weight, a.dec_blocks[1].mlp.fc1.weight)
    assert torch.equal(a.enc_norm.weight, torch.ones(64))


def test_any_allowed_size_runs() -> None:
    config = Dust3rConfig(
        img_size=(32, 48), patch_size=8, enc_embed_dim=24, enc_depth=1, enc_num_heads=2, dec_embed_dim=16,
        dec_depth=2, dec_num_heads=1, mlp_ratio=1.5,
    )  # fmt: skip
    with torch.inference_mode():
        res1, res2 = build_model(config, seed=0)(torch.randn(3, 3, 32, 48), torch.randn(3, 3, 32, 48))
    assert res1["pts3d"].shape == res2["pts3d_in_other_view"].shape == (3, 32, 48, 3)
    assert bool((res1["conf"] > 1).all())


def test_input_shape_errors_name_both_shapes() -> None:
    model = build_model("tiny", seed=0)
    with pytest.raises(
        ShapeError,
        match=r"^img1: expected \(B, 3, H, W\) with H and W multiples of 16, got \(1, 3, 30, 32\)$",
    ):
        model(torch.randn(1, 3, 30, 32), torch.randn(1, 3, 30, 32))
    with pytest.raises(
        ShapeError, match=r"^img2: expected batch size B=2 \(from img1\), got \(1, 3, 32, 32\)$"
    ):
        model(torch.randn(2, 3, 32, 32), torch.randn(1, 3, 32, 32))
