"""Checkpoints in the official layouts load and reproduce outputs; bad ones fail by name."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import safetensors.torch
import torch
from dust3r_reference import constructor_string, ours_from

from pipeline.errors import CheckpointError
from pipeline.model.checkpoint import load_checkpoint, parse_constructor
from pipeline.model.config import Dust3rConfig
from pipeline.model.dust3r import Dust3r
from pipeline.model.registry import MODEL_SIZES

OFFICIAL_224 = (
    "AsymmetricCroCo3DStereo(pos_embed='RoPE100', img_size=(224, 224), head_type='linear', "
    "output_mode='pts3d', depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), enc_embed_dim=1024, "
    "enc_depth=24, enc_num_heads=16, dec_embed_dim=768, dec_depth=12, dec_num_heads=12)"
)
OFFICIAL_512 = (
    "AsymmetricCroCo3DStereo(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed', img_size=(512, 512), "
    "head_type='dpt', output_mode='pts3d', depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), "
    "enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, dec_embed_dim=768, dec_depth=12, dec_num_heads=12, "
    "landscape_only=True)"
)


def write_pth(path: Path, state: dict, args_model: str) -> Path:
    torch.save({"model": state, "args": argparse.Namespace(model=args_model)}, path)
    return path


def write_hf(folder: Path, ref: torch.nn.Module, config: Dust3rConfig) -> Path:
    """As PyTorchModelHubMixin does: save_model (drops aliased keys) and the init kwargs."""
    folder.mkdir()
    safetensors.torch.save_model(ref, str(folder / "model.safetensors"))
    kwargs = {
        **config.to_kwargs(),
        "freeze": "none",
        "landscape_only": False,
        "patch_embed_cls": "PatchEmbedDust3R",
    }
    (folder / "config.json").write_text(json.dumps(kwargs))  # writes bare Infinity, as HF does
    return folder


@pytest.mark.parametrize(
    ("name", "layout"),
    [
        ("tiny", "pth"),
        ("tiny", "hf-folder"),
        ("tiny", "hf-file"),
        ("tiny-dpt", "pth"),
        ("tiny-dpt", "hf-folder"),
    ],
)
def test_official_layouts_round_trip(tmp_path, reference, name: str, layout: str) -> None:
    config = MODEL_SIZES[name]
    ref = reference(config, seed=7)
    if layout == "pth":
        path = write_pth(tmp_path / "ckpt.pth", ref.state_dict(), constructor_string(config))
    else:
        folder = write_hf(tmp_path / "hf", ref, config)
        assert "Infinity" in (folder / "config.json").read_text()
        path = folder if layout == "hf-folder" else folder / "model.safetensors"
    model = load_checkpoint(path)
    assert model.config == config
    assert not model.training
    loaded_state = model.state_dict()
    for key, value in ref.state_dict().items():
        assert torch.equal(loaded_state[key], value), key
    img1, img2 = torch.randn(2, 1, 3, 16, 16)  # one patch: enough to see the weights at work
    with torch.inference_mode():  # same weights as the reference, which the parity tests check
        loaded, direct = model(img1, img2), ours_from(ref, config)(img1, img2)
    for o, t in zip(loaded, direct, strict=True):
        for key in t:  # not bit-exact: oneDNN convolutions may depend on buffer alignment
            torch.testing.assert_close(o[key], t[key], atol=1e-6, rtol=1e-6)


def test_dtype_argument(tmp_path) -> None:
    config = MODEL_SIZES["tiny"]
    state = {k: torch.randn(v.shape) for k, v in _official_state(config).items()}
    model = load_checkpoint(
        write_pth(tmp_path / "c.pth", state, constructor_string(config)), dtype=torch.float64
    )
    assert {p.dtype for p in model.parameters()} == {torch.float64}


@pytest.mark.parametrize(
    ("text", "expected"),
    [(OFFICIAL_224, "dust3r-224-linear"), (OFFICIAL_512, "dust3r-512-dpt")],
)
def test_official_constructor_strings_parse(text: str, expected: str) -> None:
    kwargs = parse_constructor(text, source="x.pth")
    assert kwargs["depth_mode"] == ("exp", -math.inf, math.inf)
    assert Dust3rConfig.from_kwargs(kwargs) == MODEL_SIZES[expected]


def test_malicious_pickle_is_refused_without_running(tmp_path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "args": Payload()}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pth: refused to unpickle.*\(io\.open\)"):
        load_checkpoint(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is real: a plain unpickle runs it
    assert marker.exists()


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("__import__('pathlib').Path({m!r}).touch()", r"not a constructor call"),
        ("AsymmetricCroCo3DStereo(enc_depth=__import__('pathlib').Path({m!r}).touch())", r"is not a literal"),
    ],
)
def test_code_in_constructor_string_is_not_run(tmp_path, template: str, message: str) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(CheckpointError, match=r"bad\.pth: .*" + message):
        load_checkpoint(write_pth(tmp_path / "bad.pth", {}, template.format(m=str(marker))))
    assert not marker.exists()


def _official_state(config: Dust3rConfig) -> dict[str, torch.Tensor]:
    """The expected keys and shapes (meta tensors)."""
    with torch.device("meta"):
        return Dust3r(config).state_dict()


@pytest.fixture
def tiny_state() -> dict[str, torch.Tensor]:
    config = MODEL_SIZES["tiny"]
    return {k: torch.zeros(v.shape) for k, v in _official_state(config).items()}


def test_missing_key(tmp_path, tiny_state) -> None:
    del tiny_state["dec_blocks2.3.norm_y.weight"]
    path = write_pth(tmp_path / "dust3r.pth", tiny_state, constructor_string(MODEL_SIZES["tiny"]))
    with pytest.raises(CheckpointError, match=r"^dust3r\.pth: weights do not match tiny: 1 missing key: "):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"'dec_blocks2\.3\.norm_y\.weight'$"):
        load_checkpoint(path)


def test_many_missing_keys_are_elided(tmp_path, tiny_state) -> None:
    state = {k: v for k, v in tiny_state.items() if not k.startswith("dec_blocks2.")}
    path = write_pth(tmp_path / "croco.pth", state, constructor_string(MODEL_SIZES["tiny"]))
    with pytest.raises(
        CheckpointError, match=r"96 missing keys: 'dec_blocks2\.0\.norm1\.weight', .* \(\+93 more\)$"
    ):
        load_checkpoint(path)


def test_unexpected_key(tmp_path, tiny_state) -> None:
    tiny_state["prediction_head.weight"] = torch.zeros(3)
    path = write_pth(tmp_path / "c.pth", tiny_state, constructor_string(MODEL_SIZES["tiny"]))
    with pytest.raises(
        CheckpointError, match=r"c\.pth: weights do not match tiny: 1 unexpected key: 'prediction_head"
    ):
        load_checkpoint(path)


def test_wrong_shape(tmp_path, tiny_state) -> None:
    tiny_state["enc_norm.weight"] = torch.zeros(5)
    path = write_pth(tmp_path / "c.pth", tiny_state, constructor_string(MODEL_SIZES["tiny"]))
    with pytest.raises(
        CheckpointError, match=r"1 wrong shape: 'enc_norm\.weight' expected \(64,\) found \(5,\)"
    ):
        load_checkpoint(path)


def test_weights_of_another_size(tmp_path, tiny_state) -> None:
    """A config claiming another size: the message names the architecture it expected."""
    text = constructor_string(MODEL_SIZES["tiny"], enc_embed_dim=128, enc_num_heads=4)
    with pytest.raises(CheckpointError, match=r"do not match DUSt3R enc 128x2 \(4 heads\).*wrong shapes"):
        load_checkpoint(write_pth(tmp_path / "c.pth", tiny_state, text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("CroCoNet(enc_depth=2)", r"unknown architecture 'CroCoNet'; expected AsymmetricCroCo3DStereo"),
        (
            "AsymmetricCroCo3DStereo(norm_layer=partial(nn.LayerNorm, eps=1e-6))",
            r"norm_layer=partial.* not a literal",
        ),
        ("AsymmetricCroCo3DStereo('linear')", r"keyword arguments only"),
        ("AsymmetricCroCo3DStereo(", r"not a constructor call"),
        ("AsymmetricCroCo3DStereo(enc_dim=3)", r"unknown constructor argument enc_dim=3"),
        (
            "AsymmetricCroCo3DStereo(head_type='conv')",
            r"head_type: expected one of \('linear', 'dpt'\), got 'conv'",
        ),
        ("AsymmetricCroCo3DStereo(freeze='all')", r"freeze='all' is not one of"),
    ],
)
def test_bad_constructor_strings(tmp_path, text: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=r"^m\.pth: .*" + message):
        load_checkpoint(write_pth(tmp_path / "m.pth", {}, text))


def test_not_the_official_layout(tmp_path) -> None:
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(
        CheckpointError, match=r"other\.pth: expected a dict with 'model' and 'args', found \['state_dict'\]"
    ):
        load_checkpoint(tmp_path / "other.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pth: not a readable torch checkpoint"):
        load_checkpoint(tmp_path / "junk.pth")


def test_missing_files(tmp_path) -> None:
    with pytest.raises(CheckpointError, match=r"nothing\.pth: no such checkpoint"):
        load_checkpoint(tmp_path / "nothing.pth")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"model\.safetensors: missing; a Hugging Face checkpoint has"):
        load_checkpoint(tmp_path / "hf")
