"""Turn one shard's model outputs into the arrays `write_shard` stores.

Kept apart from the model so the encoding, statistics and the skipping of failed renders
can be tested on synthetic activations: `features_for_shard` only needs a callable that
maps a batch of image pairs to captured arrays (see `BatchFn`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.errors import ShapeError
from pipeline.store.attention_codec import encode_rowmax_uint8
from pipeline.store.features import STATUS_OK, STATUS_SKIPPED, FeatureLayout
from pipeline.store.float16 import shorten_mantissa, to_float16

# rgb (B, V, H, W, 3) uint8 → {"enc": (B, V, N, De), "acts": (B, V, L, N, D),
#  "attn": (B, V, La, A, Q, K) probabilities, "pts3d": (B, V, H, W, 3), "conf": (B, V, H, W)},
#  all float32 numpy arrays; view 2's pointmap in view 1's camera frame.
BatchFn = Callable[[np.ndarray], dict[str, np.ndarray]]


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
        "attn_scale": np.full((n, V, La, A, N), np.nan, np.float16),
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


def _top_tokens(norms: np.ndarray, k: int) -> np.ndarray:
    """(..., N) norms → (..., k) token indices, largest norm first (stable on ties)."""
    return np.argsort(-norms, axis=-1, kind="stable")[..., :k].astype(np.int32)


def _check(batch: dict[str, np.ndarray], layout: FeatureLayout, b: int) -> None:
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
        batch = batch_fn(shard.rgb[idx])
        _check(batch, layout, len(idx))
        where = f"pairs {shard.start + idx[0]}..{shard.start + idx[-1]}"
        for name in ("enc", "acts"):
            x = batch[name].astype(np.float32)
            x16, _ = to_float16(x, overflow=overflow, where=f"{where}, '{name}'")
            out[name][idx] = shorten_mantissa(x16, mantissa_bits)
            out["clipped"][idx] += _clipped_per_pair(x)
            norms = np.linalg.norm(x, axis=-1)
            prefix = "" if name == "acts" else "enc_"
            out[f"{prefix}token_norm"][idx] = norms
            out[f"{prefix}high_norm_token"][idx] = _top_tokens(norms, layout.n_high_norm)
            token_axes = (0, 3) if name == "acts" else (0, 2)
            out[f"{name}_sum"] += x.sum(axis=token_axes, dtype=np.float64)
            out[f"{name}_sumsq"] += np.square(x, dtype=np.float64).sum(axis=token_axes)
        out["token_count"] += len(idx) * layout.n_tokens
        codes, scale = encode_rowmax_uint8(batch["attn"])
        out["attn"][idx], out["attn_scale"][idx] = codes, scale
        if want_full:
            for row, pair in enumerate(idx):
                if shard.full_attn[pair]:
                    keep = full_attn_locations
                    out["attn_full"][pair][:, keep] = batch["attn"][row][:, keep].astype(np.float16)
                    out["has_full_attn"][pair] = True
        out["pts3d"][idx], out["conf"][idx] = batch["pts3d"], batch["conf"]
        out["status"][idx] = STATUS_OK
    out["scene_id"], out["split"] = shard.scene_id, shard.split
    return out


def _clipped_per_pair(x: np.ndarray) -> np.ndarray:
    """(B, ...) → (B,) count of values beyond float16's range in each pair."""
    return (np.abs(x) > np.finfo(np.float16).max).reshape(len(x), -1).sum(axis=1)
