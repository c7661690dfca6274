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
from pipeline.store.int8 import clip_non_finite, encode_int8, non_finite_error

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
    int8 = layout.acts_encoding == "int8"
    return {
        "enc": np.full((n, V, N, layout.enc_dim), np.nan, np.float16),
        "acts": (
            np.zeros((n, V, L, N, layout.dec_dim), np.int8)
            if int8
            else np.full((n, V, L, N, layout.dec_dim), np.nan, np.float16)
        ),
        "acts_scale": np.full((n, V, L, layout.dec_dim), np.nan, np.float32) if int8 else None,
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


def encode_stream(
    x: torch.Tensor, *, overflow: str, where: str, n_high_norm: int, int8: bool = False
) -> dict[str, np.ndarray | None]:
    """Stored values, overflow counts, token norms and float64 sums of a (B, V, ..., N, D) stream.

    Args:
        x: the captured stream, any float dtype and device; tokens on the second-to-last axis.
        overflow: "error" raises `Float16OverflowError` (or `Int8NonFiniteError` for int8)
            naming `where`; "clip" clips and counts.
        where: what `x` is, for the error message.
        n_high_norm: how many top-norm tokens to list.
        int8: store int8 codes with per-channel scales (`pipeline.store.int8`) instead of
            float16; float16's range does not apply then, but inf and NaN (which no scale
            can code) are refused or clipped in its place.

    Returns:
        "values": x as float16, or int8 codes; "scale": (B, V, ..., D) float32 scales of
        the codes (None for float16); "clipped": (B,) values clipped per pair (beyond float16's
        range, or non-finite for int8);
        "norms": (..., N) float32 token norms; "top": (..., n_high_norm) int32 token indices;
        "sum", "sumsq": float64 sums over pairs and tokens, (V, ..., D).
    """
    x = x.float()
    flat = x.reshape(len(x), -1)
    low, high = torch.aminmax(flat, dim=1)  # a reduction: no full-size temporary unless needed
    clipped = torch.zeros(len(x), dtype=torch.int64)
    if int8 and not bool(torch.isfinite(low).all() and torch.isfinite(high).all()):
        clipped = (~torch.isfinite(flat)).sum(1).cpu()
        if overflow == "error":
            raise non_finite_error(where, int(clipped.sum()))
        x = clip_non_finite(x)
    elif not int8 and bool((torch.maximum(-low, high) > FLOAT16_MAX).any()):
        clipped = (flat.abs() > FLOAT16_MAX).sum(1).cpu()
        if overflow == "error":
            raise overflow_error(where, int(clipped.sum()), float(flat.abs().max()))
        x = x.clamp(-FLOAT16_MAX, FLOAT16_MAX)
    values, scale = encode_int8(x) if int8 else (x.half().cpu().numpy(), None)
    norms = torch.linalg.vector_norm(x, dim=-1)
    token_axis = x.ndim - 2
    # sums per pair in float32 over tokens (a few hundred terms), then float64 across pairs
    return {
        "values": values,
        "scale": scale,
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


class ShardEncoder:
    """One shard's arrays for `write_shard`, encoded batch by batch as the model's outputs arrive.

    Kept apart from the forward pass so extraction can run the model in one thread and the
    encoding (and writing) in another: on a CPU they then use different cores, on a GPU the
    encoding's kernels queue behind the next forward pass.

    Args:
        shard: the shard's images and per-pair flags.
        layout: the store's sizes, location lists and acts encoding.
        overflow: "error" or "clip" for values beyond float16's range.
        mantissa_bits: float16 mantissa bits kept (10 = exact float16).
        full_attn_locations: (La,) bool, which attention locations get full maps.
    """

    def __init__(
        self,
        shard: ShardInput,
        layout: FeatureLayout,
        *,
        overflow: str,
        mantissa_bits: int,
        full_attn_locations: np.ndarray,
    ) -> None:
        self.shard, self.layout = shard, layout
        self.overflow, self.mantissa_bits = overflow, mantissa_bits
        self.full_attn_locations = full_attn_locations
        self.want_full = bool((shard.full_attn & shard.rendered).any() and full_attn_locations.any())
        self.out = _empty(layout, len(shard.rendered), self.want_full)

    def batches(self, batch_size: int) -> list[np.ndarray]:
        """Indices (within the shard) of the rendered pairs, `batch_size` at a time."""
        todo = np.flatnonzero(self.shard.rendered)
        return [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]

    def add(self, idx: np.ndarray, captured: dict[str, torch.Tensor | np.ndarray]) -> None:
        """Encode the captured outputs (see `BatchFn`) of the shard's pairs `idx`."""
        out, layout, shard = self.out, self.layout, self.shard
        batch = {k: torch.as_tensor(v) for k, v in captured.items()}
        _check(batch, layout, len(idx))
        where = f"pairs {shard.start + idx[0]}..{shard.start + idx[-1]}"
        for name in ("enc", "acts"):
            int8 = name == "acts" and layout.acts_encoding == "int8"
            enc = encode_stream(
                batch.pop(name),
                overflow=self.overflow,
                where=f"{where}, '{name}'",
                n_high_norm=layout.n_high_norm,
                int8=int8,
            )
            prefix = "" if name == "acts" else "enc_"
            if int8:
                out[name][idx], out["acts_scale"][idx] = enc["values"], enc["scale"]
            else:
                out[name][idx] = shorten_mantissa(enc["values"], self.mantissa_bits)
            out["clipped"][idx] += enc["clipped"]
            out[f"{prefix}token_norm"][idx] = enc["norms"]
            out[f"{prefix}high_norm_token"][idx] = enc["top"]
            out[f"{name}_sum"] += enc["sum"]
            out[f"{name}_sumsq"] += enc["sumsq"]
        out["token_count"] += len(idx) * layout.n_tokens
        attn = batch.pop("attn")
        out["attn"][idx], out["attn_argmax"][idx] = encode_uint8_argmax(attn)
        if self.want_full:
            keep = np.flatnonzero(self.full_attn_locations)
            for row, pair in enumerate(idx):
                if shard.full_attn[pair]:
                    kept = attn[row].index_select(1, torch.from_numpy(keep).to(attn.device))
                    out["attn_full"][pair][:, keep] = kept.half().cpu().numpy()
                    out["has_full_attn"][pair] = True
        out["pts3d"][idx] = batch["pts3d"].float().cpu().numpy()
        out["conf"][idx] = batch["conf"].float().cpu().numpy()
        out["status"][idx] = STATUS_OK

    def result(self) -> dict[str, np.ndarray]:
        """The arrays of `write_shard`: per-pair arrays, this shard's statistics and status."""
        self.out["scene_id"], self.out["split"] = self.shard.scene_id, self.shard.split
        return self.out


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
    """Run the model over a shard's rendered pairs and encode everything for the store, in one thread.

    Args:
        batch_fn: the captured forward pass (see `BatchFn`).
        shard, layout, overflow, mantissa_bits, full_attn_locations: see `ShardEncoder`.
        batch_size: pairs per forward pass.

    Returns:
        the arrays of `write_shard` (per-pair arrays, this shard's statistics and status).
    """
    encoder = ShardEncoder(
        shard, layout, overflow=overflow, mantissa_bits=mantissa_bits, full_attn_locations=full_attn_locations
    )
    for idx in encoder.batches(batch_size):
        encoder.add(idx, batch_fn(shard.rgb[idx]))
    return encoder.result()
