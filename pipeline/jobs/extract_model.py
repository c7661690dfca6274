"""The model side of extract: build or load DUSt3R, name what it is, run a captured forward.

`ModelRunner` turns a batch of rendered pairs (uint8) into the float32 numpy arrays that
`features_for_shard` encodes. It records the weights' identity for the store:
"sha256:<hex>" of a checkpoint file, or "random-init:<config>:<seed>". `rebuild_model`
and `store_model` give back the model that made a features store (for evaluate, intervene,
report and the viewers), refusing one whose weights are not the recorded ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr

from pipeline.errors import ConfigError, SchemaError, ShapeError
from pipeline.jobs.extract_params import ExtractParams
from pipeline.model.checkpoint import HF_WEIGHTS, load_checkpoint
from pipeline.model.dust3r import Dust3r
from pipeline.model.registry import build_model, config_name, get_config
from pipeline.probing.capture import capture
from pipeline.probing.locations import (
    attention_locations,
    residual_locations,
    split_location,
    sublayer_locations,
)
from pipeline.store.features import FeatureLayout
from pipeline.store.writer import open_store


def checkpoint_sha256(path: Path) -> str:
    """sha256 of a checkpoint file (the safetensors file of a Hugging Face folder)."""
    file = path / HF_WEIGHTS if path.is_dir() else path
    digest = hashlib.sha256()
    with file.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 24), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def pick_device(name: str) -> torch.device:
    """ "auto" → cuda when available, else cpu; other names as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def decoder_locations(dec_depth: int, *, with_out: bool) -> list[str]:
    """The decoder stream locations `acts` can hold, in forward order (the store's `location` order).

    dec_in, then per block and sublayer the sublayer's output (with `with_out`) followed by
    the stream after its add: dec_in, b00.self.out, b00.self, b00.cross.out, b00.cross, …
    """
    residual = [name for name in residual_locations(dec_depth) if name != "enc"]
    if not with_out:
        return residual
    blocks = iter(residual[1:])  # same (block, sublayer) order as the sublayer outputs
    return [residual[0]] + [name for out in sublayer_locations(dec_depth) for name in (out, next(blocks))]


def _choose(
    choice: str | tuple[str, ...], options: list[str], kinds: dict[str, list[str]], what: str
) -> list[str]:
    if isinstance(choice, str):
        if choice not in kinds:
            raise ConfigError(
                f"extract.{what}: expected one of {sorted(kinds)} or a list of names, got {choice!r}"
            )
        return kinds[choice]
    unknown = [name for name in choice if name not in options]
    if unknown:
        raise ConfigError(f"extract.{what}: unknown {unknown}; valid: {', '.join(options)}")
    return [name for name in options if name in choice]  # model order


class ModelRunner:
    """A model in eval mode plus the locations to capture, callable on uint8 image pairs.

    Attributes:
        weights_id: "sha256:<hex>" or "random-init:<config>:<seed>".
        config_dict: the config's fields, JSON-safe.
        locations: decoder residual-stream locations stored in `acts`.
        attn_locations: attention maps stored for every pair.
        full_attention_locations: attention maps also stored as full float16.
    """

    def __init__(self, model: Dust3r, weights_id: str, params: ExtractParams) -> None:
        self.model, self.weights_id, self.params = model, weights_id, params
        self.device = pick_device(params.device)
        self.model.to(self.device).eval()
        cfg = model.config
        self.config_dict = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
        all_res = decoder_locations(cfg.dec_depth, with_out=True)
        self.locations = _choose(
            params.locations,
            all_res,
            {"residual": decoder_locations(cfg.dec_depth, with_out=False), "all": all_res},
            "locations",
        )
        all_attn = attention_locations(cfg.dec_depth)
        kinds = {
            "all": all_attn,
            "self": [a for a in all_attn if split_location(a)[1] == "self"],
            "cross": [a for a in all_attn if split_location(a)[1] == "cross"],
            "none": [],
        }
        self.attn_locations = _choose(params.attention, all_attn, kinds, "attention")
        self.full_attention_locations = _choose(params.full_attention, all_attn, kinds, "full_attention")
        missing = [a for a in self.full_attention_locations if a not in self.attn_locations]
        if missing:
            raise ConfigError(f"extract.full_attention: {missing} are not in extract.attention")

    @classmethod
    def from_params(cls, params: ExtractParams) -> ModelRunner:
        """Load `params.checkpoint`, or build `params.model` with random weights seeded by `params.seed`."""
        if params.checkpoint:
            path = Path(params.checkpoint)
            model = load_checkpoint(path)
            name = config_name(model.config)
            if name is not None and name != params.model:
                raise ConfigError(
                    f"{path}: the checkpoint is a '{name}' model but extract.model is '{params.model}'"
                )
            return cls(model, checkpoint_sha256(path), params)
        get_config(params.model)  # unknown names fail here, with suggestions
        model = build_model(params.model, seed=params.seed)  # the same weights on every build
        return cls(model, f"random-init:{params.model}:{params.seed}", params)

    def layout(self, *, n_pairs: int, image_size: tuple[int, int]) -> FeatureLayout:
        """The store layout for renders of `image_size` (multiples of the patch size)."""
        cfg = self.model.config
        p = cfg.patch_size
        if image_size[0] % p or image_size[1] % p:
            raise ShapeError(
                f"renders image size {tuple(image_size)} is not a multiple of the patch size {p}"
            )
        return FeatureLayout(
            n_pairs=n_pairs,
            pairs_per_shard=self.params.pairs_per_shard,
            locations=tuple(self.locations),
            attn_locations=tuple(self.attn_locations),
            image_size=(int(image_size[0]), int(image_size[1])),
            patch_grid=(image_size[0] // p, image_size[1] // p),
            enc_dim=cfg.enc_embed_dim,
            dec_dim=cfg.dec_embed_dim,
            n_heads=cfg.dec_num_heads,
            n_high_norm=self.params.n_high_norm,
            acts_encoding="int8" if self.params.feature_encoding == "int8" else "float16",
        )

    @torch.inference_mode()
    def __call__(self, rgb: np.ndarray) -> dict[str, torch.Tensor]:
        """rgb (B, V, H, W, 3) uint8 → the tensors of `extract_shard.BatchFn`, on the model's device.

        Captured tensors stay where the model computed them, in its dtype, so the encoding
        (float16, uint8 attention, statistics) runs there and only encoded bytes reach the host.
        """
        x = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device)
        x = x.permute(0, 1, 4, 2, 3).float() / 127.5 - 1  # (B, V, 3, H, W) in [-1, 1]
        amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.params.autocast)
        use_amp = amp is not None and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=amp or torch.float32, enabled=use_amp):
            (res1, res2), acts = capture(
                self.model,
                x[:, 0],
                x[:, 1],
                locations=["enc", *self.locations],
                attention=self.attn_locations,
            )
        enc = acts.stream.pop("enc")
        B, _, N, _ = enc.shape
        cfg = self.model.config
        return {
            "enc": enc,
            "acts": _stacked(acts.stream, self.locations, (B, 2, N, cfg.dec_embed_dim), enc),
            "attn": _stacked(acts.attention, self.attn_locations, (B, 2, cfg.dec_num_heads, N, N), enc),
            "pts3d": torch.stack([res1["pts3d"], res2["pts3d_in_other_view"]], 1),
            "conf": torch.stack([res1["conf"], res2["conf"]], 1),
        }


def _stacked(
    captured: dict[str, torch.Tensor], names: list[str], shape: tuple[int, ...], like: torch.Tensor
) -> torch.Tensor:
    """Captured tensors of `names`, each of `shape` (B, V, ...), → (B, V, L, ...), L = len(names).

    Each tensor is dropped from `captured` as it is consumed, so peak memory holds one copy
    of the batch plus the result; `like` gives the device and dtype (also when L = 0).
    """
    out = like.new_empty((*shape[:2], len(names), *shape[2:]))
    for i, name in enumerate(names):
        out[:, :, i] = captured.pop(name)
    return out


def rebuild_model(
    params: Mapping[str, Any],
    weights: str | None,
    *,
    where: str,
    device: str = "cpu",
    checkpoint: Path | None = None,
    hint: str = "",
) -> tuple[Dust3r, str]:
    """The model that extract `params` describe, in eval mode, and its weights identity.

    Building from the recorded parameters gives back the same model (a checkpoint's sha256,
    or the seeded random initialisation); a mismatch is refused rather than silently used.

    Args:
        params: the extract parameters recorded by a features store (or a probe set's copy).
        weights: the weights identity recorded beside them (None: not checked).
        where: the file the parameters come from, for messages.
        device: "auto", "cpu" or "cuda[:i]".
        checkpoint: use this checkpoint instead of the recorded one (e.g. a moved file).
        hint: what to do about a mismatch, appended to the message.

    Raises:
        SchemaError: the rebuilt weights are not the recorded ones.

    Example:
        >>> model, weights = rebuild_model({"model": "tiny"}, "random-init:tiny:0", where="f.zarr")
        >>> weights
        'random-init:tiny:0'
    """
    raw = {**params, "device": device, **({"checkpoint": str(checkpoint)} if checkpoint else {})}
    runner = ModelRunner.from_params(ExtractParams.from_dict(raw))
    if weights is not None and runner.weights_id != weights:
        raise SchemaError(
            f"{where}: recorded model_weights {weights!r} but the parameters rebuild {runner.weights_id!r}"
            + (f"; {hint}" if hint else "")
        )
    return runner.model.eval(), runner.weights_id


def store_model(features: zarr.Group, *, device: str, where: str) -> Dust3r:
    """The model that made a features store, in eval mode on `device`.

    Args:
        features: an open features store.
        device: "auto", "cpu" or "cuda[:i]".
        where: the store's path, for messages.

    Raises:
        SchemaError: the store lacks its extract parameters, or the rebuilt weights differ.

    Example:
        >>> store_model(group, device="cpu", where="data/features.zarr").config.dec_depth
        12
    """
    params = features.attrs.get("params")
    if not isinstance(params, dict):
        raise SchemaError(f"{where}: no extract `params` attribute; cannot rebuild its model")
    weights = features.attrs.get("model_weights")
    if not isinstance(weights, str):
        raise SchemaError(f"{where}: no `model_weights` attribute; cannot check the rebuilt model")
    return rebuild_model(params, weights, where=where, device=device)[0]


def store_identity(features: Path) -> dict[str, str]:
    """The model name and weights id of a features store, for every report written from it.

    Reports carry it so a number is never read without knowing it came from random weights.
    """
    attrs = open_store(features, "features").attrs
    return {
        "model_name": str(attrs.get("model_name", "")),
        "model_weights": str(attrs.get("model_weights", "")),
    }
