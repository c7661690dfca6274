"""Turn one shard's model outputs into the arrays `write_shard` stores.

Kept apart from the model so the encoding, statistics and the skipping of failed renders
can be tested on synthetic activations: `features_for_shard` only needs a callable that
maps a batch of image pairs to captured arrays (see `BatchFn`).

The encoding runs in torch on the device the captured tensors are on: on a GPU only the
float16 features, uint8 attention codes and small statistics cross to the host, and on a
CPU torch's kernels use every core where numpy would use one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.errors import ShapeError
from pipeline.store.attention_codec import encode_uint8_argmax
from pipeline.store.features import STATUS_OK, STATUS_SKIPPED, FeatureLayout
from pipeline.store.float16 import FLOAT16_MAX, overflow_error, shorten_mantissa

# rgb (B, V, H, W, 3) uint8 → {"enc": (B, V, N, De), "acts": (B, V, L, N, D),
#  "attn": (B, V, La, A, Q, K) probabilities, "pts3d": (B, V, H, W, 3), "conf": (B, V, H, W)},
#  float tensors on any device (or numpy arrays); view 2's pointmap in view 1's camera frame.
BatchFn = Callable[[np.ndarray], dict[str, torch.Tensor | np.ndarray]]


@dataclass(frozen=True)
class ShardInput:
    """What a shard needs from the renders store.

    Attributes:
        shard_index: index of the shard in the features store.
        start: first pair.
        rgb: (P, V, H, W, 3) uint8 images of the shard's P pairs.
        rendered: (P,) true where the render succeeded (others are skipped).
        scene_id: (P,) scene of each pair.
        split: (P,) split of each pair.
        full_attn: (P,) true for pairs that also get full float16 attention maps.
    """

    shard_index: int
    start: int
    rgb: np.ndarray
    rendered: np.ndarray
    scene_id: np.ndarray
    split: np.ndarray
    full_attn: np.ndarray


def _empty(layout: FeatureLayout, n: int, full: bool) -> dict[str, np.ndarray]:
    V, N, H, W = 2, layout.n_tokens, *layout.image_size
    L, La, A, k = len(layout.locations), len(layout.attn_locations), layout.n_heads, layout.n_high_norm
    return {
        "enc": np.full((n, V, N, layout.enc_dim), np.nan, np.float16),
        "acts": np.full((n, V, L, N, layout.dec_dim), np.nan, np.float16),
        "attn": np.zeros((n, V, La, A, N, N), np.uint8),
        "attn_argmax": np.zeros((n, V, La, A, N), np.uint16),
        "attn_full": np.full((n, V, La, A, N, N), np.nan, np.float16) if full else None,
        "has_full_attn": np.zeros(n, bool),
        "pts3d": np.full((n, V, H, W, 3), np.nan, np.float32),
        "conf": np.full((n, V, H, W), np.nan, np.float32),
        "token_norm": np.full((n, V, L, N), np.nan, np.float32),
        "enc_token_norm": np.full((n, V, N), np.nan, np.float32),
        "high_norm_token": np.full((n, V, L, k), -1, np.int32),
        "enc_high_norm_token": np.full((n, V, k), -1, np.int32),
        "clipped": np.zeros(n, np.int64),
        "status": np.full(n, STATUS_SKIPPED, np.uint8),
        "acts_sum": np.zeros((V, L, layout.dec_dim)),
        "acts_sumsq": np.zeros((V, L, layout.dec_dim)),
        "enc_sum": np.zeros((V, layout.enc_dim)),
        "enc_sumsq": np.zeros((V, layout.enc_dim)),
        "token_count": np.zeros((), np.int64),
    }


def _top_tokens(norms: torch.Tensor, k: int) -> np.ndarray:
    """(..., N) norms → (..., k) token indices, largest norm first (the lower index on ties)."""
    order = torch.sort(norms, dim=-1, descending=True, stable=True).indices[..., :k]
    return order.to(torch.int32).cpu().numpy()


def encode_stream(x: torch.Tensor, *, overflow: str, where: str, n_high_norm: int) -> dict[str, np.ndarray]:
    """Float16 values, overflow counts, token norms and float64 sums of a (B, V, ..., N, D) stream.

    Args:
        x: the captured stream, any float dtype and device; tokens on the second-to-last axis.
        overflow: "error" raises `Float16OverflowError` naming `where`; "clip" clips and counts.
        where: what `x` is, for the error message.
        n_high_norm: how many top-norm tokens to list.

    Returns:
        "fp16": x as float16; "clipped": (B,) values beyond float16's range per pair;
        "norms": (..., N) float32 token norms; "top": (..., n_high_norm) int32 token indices;
        "sum", "sumsq": float64 sums over pairs and tokens, (V, ..., D).
    """
    x = x.float()
    flat = x.reshape(len(x), -1)
    low, high = torch.aminmax(flat, dim=1)  # a reduction: no full-size temporary unless needed
    clipped = torch.zeros(len(x), dtype=torch.int64)
    if bool((torch.maximum(-low, high) > FLOAT16_MAX).any()):
        clipped = (flat.abs() > FLOAT16_MAX).sum(1).cpu()
        if overflow == "error":
            raise overflow_error(where, int(clipped.sum()), float(flat.abs().max()))
        x = x.clamp(-FLOAT16_MAX, FLOAT16_MAX)
    norms = torch.linalg.vector_norm(x, dim=-1)
    token_axis = x.ndim - 2
    # per pair in float32 over tokens (a few hundred terms), then float64 across pairs and shards
    return {
        "fp16": x.half().cpu().numpy(),
        "clipped": clipped.numpy(),
        "norms": norms.cpu().numpy(),
        "top": _top_tokens(norms, n_high_norm),
        "sum": x.sum(token_axis).double().sum(0).cpu().numpy(),
        "sumsq": x.square().sum(token_axis).double().sum(0).cpu().numpy(),
    }


def _check(batch: dict[str, torch.Tensor | np.ndarray], layout: FeatureLayout, b: int) -> None:
    V, N, H, W = 2, layout.n_tokens, *layout.image_size
    expected = {
        "enc": (b, V, N, layout.enc_dim),
        "acts": (b, V, len(layout.locations), N, layout.dec_dim),
        "attn": (b, V, len(layout.attn_locations), layout.n_heads, N, N),
        "pts3d": (b, V, H, W, 3),
        "conf": (b, V, H, W),
    }
    for name, shape in expected.items():
        if tuple(batch[name].shape) != shape:
            raise ShapeError(
                f"captured '{name}': expected {shape} (B, V, ...), got {tuple(batch[name].shape)}"
            )


def features_for_shard(
    batch_fn: BatchFn,
    shard: ShardInput,
    layout: FeatureLayout,
    *,
    batch_size: int,
    overflow: str,
    mantissa_bits: int,
    full_attn_locations: np.ndarray,
) -> dict[str, np.ndarray]:
    """Run the model over a shard's rendered pairs and encode everything for the store.

    Args:
        batch_fn: the captured forward pass (see `BatchFn`).
        shard: the shard's images and per-pair flags.
        layout: the store's sizes and location lists.
        batch_size: pairs per forward pass.
        overflow: "error" or "clip" for values beyond float16's range.
        mantissa_bits: float16 mantissa bits kept (10 = exact float16).
        full_attn_locations: (La,) bool, which attention locations get full maps.

    Returns:
        the arrays of `write_shard` (per-pair arrays, this shard's statistics and status).
    """
    n = len(shard.rendered)
    want_full = bool((shard.full_attn & shard.rendered).any() and full_attn_locations.any())
    out = _empty(layout, n, want_full)
    todo = np.flatnonzero(shard.rendered)
    for i in range(0, len(todo), batch_size):
        idx = todo[i : i + batch_size]
        batch = {k: torch.as_tensor(v) for k, v in batch_fn(shard.rgb[idx]).items()}
        _check(batch, layout, len(idx))
        where = f"pairs {shard.start + idx[0]}..{shard.start + idx[-1]}"
        for name in ("enc", "acts"):
            enc = encode_stream(
                batch.pop(name), overflow=overflow, where=f"{where}, '{name}'", n_high_norm=layout.n_high_norm
            )
            prefix = "" if name == "acts" else "enc_"
            out[name][idx] = shorten_mantissa(enc["fp16"], mantissa_bits)
            out["clipped"][idx] += enc["clipped"]
            out[f"{prefix}token_norm"][idx] = enc["norms"]
            out[f"{prefix}high_norm_token"][idx] = enc["top"]
            out[f"{name}_sum"] += enc["sum"]
            out[f"{name}_sumsq"] += enc["sumsq"]
        out["token_count"] += len(idx) * layout.n_tokens
        attn = batch.pop("attn")
        out["attn"][idx], out["attn_argmax"][idx] = encode_uint8_argmax(attn)
        if want_full:
            for row, pair in enumerate(idx):
                if shard.full_attn[pair]:
                    keep = torch.from_numpy(np.flatnonzero(full_attn_locations)).to(attn.device)
                    out["attn_full"][pair][:, keep.cpu().numpy()] = (
                        attn[row].index_select(1, keep).half().cpu().numpy()
                    )
                    out["has_full_attn"][pair] = True
        out["pts3d"][idx] = batch["pts3d"].float().cpu().numpy()
        out["conf"][idx] = batch["conf"].float().cpu().numpy()
        out["status"][idx] = STATUS_OK
    out["scene_id"], out["split"] = shard.scene_id, shard.split
    return out
