"""Score a batch's attention maps: correspondence accuracy per head, token similarity, registers.

The compact form stores every row's exact argmax (`attn_argmax`, taken on the float32 maps)
beside the uint8 maps, so correspondence accuracy from it is exact. The full float16 maps,
where the store has them, give the same numbers except in rows whose two largest weights
round to the same float16: there their argmax takes the first (about 0.1% of rows of a
random tiny model; tests pin both behaviours). Register scores need the probabilities,
decoded from the uint8 maps (within 1/510).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from pipeline.jobs.eval_params import EvaluateParams
from pipeline.metrics.correspondence import (
    accuracy_at,
    match_errors,
    mean_errors,
    probability_argmax,
    similarity_matches,
)
from pipeline.metrics.procrustes import previous_location
from pipeline.metrics.registers import head_scores, high_norm_tokens, sink_tokens
from pipeline.probing.locations import split_location
from pipeline.store.attention_codec import decode_uint8

REGISTER_BLOCK_MAPS = 4  # attention maps (A, Q, K) decoded and scored together: 3.7 MB at 6 heads x 196^2


@dataclass(frozen=True)
class AttentionLayout:
    """Where things are in a features store's attention and norm arrays.

    Attributes:
        attn_locations: the store's `attn_location` coordinate.
        locations: the store's `location` coordinate (the streams of `acts` and `token_norm`).
        grid: (h, w) patch grid.
        patch_size: pixels per patch side.
    """

    attn_locations: tuple[str, ...]
    locations: tuple[str, ...]
    grid: tuple[int, int]
    patch_size: int

    @property
    def cross(self) -> list[int]:
        """Indices of the cross-attention maps, in block order."""
        return [i for i, name in enumerate(self.attn_locations) if name.endswith(".cross")]

    def key_stream(self, attn_location: str, view: int) -> tuple[int, int] | None:
        """(location index, view index) of the stream the keys of a map come from, or None if not stored.

        Self-attention of block b reads its own view's stream entering the block; cross-attention
        reads the other view's stream entering block b (dec_in for block 0).
        """
        block, sublayer, _ = split_location(attn_location)
        name = previous_location(block, "self")
        if name not in self.locations:
            return None
        other = view if sublayer == "self" else 1 - view
        return self.locations.index(name), other


def correspondence_accuracy(
    argmax: np.ndarray,
    full: np.ndarray | None,
    gt: np.ndarray,
    layout: AttentionLayout,
    thresholds: Sequence[float],
) -> dict[str, np.ndarray]:
    """Accuracy curves of every cross-attention head, both view directions.

    Args:
        argmax: (B, V, La, A, Q) exact argmax of every attention row (`attn_argmax`).
        full: (B, V, C, A, Q, K) full float16 maps of the C cross-attention maps (in
            `layout.cross` order), NaN for pairs without them; None: none at all.
        gt: (B, V, Q) patch_match of each view's patches into the other view (-1: none).
        layout: the store's layout.
        thresholds: (T,) pixels.

    Returns:
        "attention_compact": (B, V, C, A, T) over the C cross maps; "attention": the same
        from the full maps (NaN for pairs without them). View v holds queries of view v.
        "<source>_error_px": (B, V, C, A) each source's mean pixel error over matched queries.
    """
    cross = layout.cross
    p = layout.patch_size
    gt_b = gt[:, :, None, None, :]  # (B, V, 1, 1, Q)
    errors = match_errors(argmax[:, :, cross].astype(np.int64), gt_b, layout.grid, p)
    compact = accuracy_at(errors, thresholds)
    out = {
        "attention_compact": compact,
        "attention_compact_error_px": mean_errors(errors),
        "attention": np.full_like(compact, np.nan),
        "attention_error_px": np.full(compact.shape[:-1], np.nan, np.float32),
    }
    if full is not None:
        # (B, 1, C, 1): maps not stored read as NaN
        stored = np.isfinite(full[:, 0, :, 0, 0, 0])[:, None, :, None]
        # the rows of maps not stored (NaN) are masked below
        errors = match_errors(probability_argmax(full), gt_b, layout.grid, p)
        out["attention"] = np.where(stored[..., None], accuracy_at(errors, thresholds), np.nan).astype(
            np.float32
        )
        out["attention_error_px"] = np.where(stored, mean_errors(errors), np.nan).astype(np.float32)
    return out


def similarity_accuracy(
    acts: Mapping[str, Tensor],
    gt: np.ndarray,
    grid: tuple[int, int],
    patch_size: int,
    thresholds: Sequence[float],
) -> dict[str, np.ndarray]:
    """Accuracy of the cosine-similarity baseline at each location, both view directions.

    Args:
        acts: location -> (B, V, N, D) tokens.
        gt: (B, V, Q) patch_match.
        grid: (h, w) patch grid.
        patch_size: pixels per patch side.
        thresholds: (T,) pixels.

    Returns:
        "similarity": (B, V, L, T) accuracy, "similarity_error_px": (B, V, L) mean pixel
        error over matched queries, locations in the order of `acts`.
    """
    accuracy, error = [], []
    for x in acts.values():
        views = similarity_matches(x[:, 0], x[:, 1])  # (B, Q) each, queries of view 1, then of view 2
        errors = match_errors(np.stack(views, 1), gt, grid, patch_size)  # (B, V, Q)
        accuracy.append(accuracy_at(errors, thresholds))
        error.append(mean_errors(errors))
    return {"similarity": np.stack(accuracy, 2), "similarity_error_px": np.stack(error, 2)}


def _head_scores_in_blocks(codes: np.ndarray, top_k: int) -> dict[str, np.ndarray]:
    """`head_scores` of the decoded (..., A, Q, K) codes, REGISTER_BLOCK_MAPS maps at a time.

    A batch's maps decode to ~180 MB of float32 and `head_scores` makes two temporaries as
    large; blocks of a few maps stay in cache and in memory malloc already holds: the same
    values in half the time (0.04 vs 0.08 s for a batch of 4 on one core, and up to 0.3 s
    where the whole batch's buffers had to be faulted in).
    """
    lead, maps = codes.shape[:-3], codes.reshape(-1, *codes.shape[-3:])
    blocks = [
        head_scores(decode_uint8(maps[i : i + REGISTER_BLOCK_MAPS]), top_k)
        for i in range(0, len(maps), REGISTER_BLOCK_MAPS)
    ]
    return {
        key: np.concatenate([b[key] for b in blocks]).reshape(*lead, *blocks[0][key].shape[1:])
        for key in blocks[0]
    }


def register_scores(
    codes: np.ndarray,
    token_norm: np.ndarray,
    layout: AttentionLayout,
    params: EvaluateParams,
) -> dict[str, np.ndarray]:
    """Register-head scores and sink / high-norm tokens of every attention map of a batch.

    Args:
        codes: (B, V, La, A, Q, K) compact attention (uint8, p * 255).
        token_norm: (B, V, L, N) norms of the stored stream tokens.
        layout: the store's layout.
        params: thresholds (register_top_k, sink_factor, high_norm_factor).

    Returns:
        "independence", "topk_mass": (B, V, La, A); "sinks", "high_norm": (B, V, La, K) bool,
        the latter for the tokens the keys are read from (False where that stream is not stored).
    """
    scores = _head_scores_in_blocks(codes, params.register_top_k)
    sinks = sink_tokens(scores["received"], params.sink_factor)
    high = np.zeros_like(sinks)
    for v in range(2):
        for j, name in enumerate(layout.attn_locations):
            src = layout.key_stream(name, v)
            if src is not None:
                high[:, v, j] = high_norm_tokens(token_norm[:, src[1], src[0]], params.high_norm_factor)
    return {
        "independence": scores["independence"],
        "topk_mass": scores["topk_mass"],
        "sinks": sinks,
        "high_norm": high,
    }
