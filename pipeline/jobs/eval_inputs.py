"""What evaluation reads: the pairs to score, a batch's every input, the store's layout.

Reading is kept apart from scoring so a thread can run it a batch ahead (`BatchReader`)
and so `intervene`, which scores pairs of its own choosing, reads them the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import zarr

from pipeline.errors import ConfigError, unknown_name_message
from pipeline.jobs.eval_attention import AttentionLayout
from pipeline.jobs.eval_params import EvaluateParams
from pipeline.probes.batches import Batch
from pipeline.probes.store_source import StoreSource

STATUS_OK = 1


def read_rows(array: zarr.Array, idx: np.ndarray, locations: Sequence[int] | None = None) -> np.ndarray:
    """array[idx] for sorted idx, as slice reads of consecutive runs (index arrays are far slower).

    `locations` picks entries of the third axis (e.g. the cross-attention maps) so that only
    their chunks are read and decompressed.
    """
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    runs = [slice(int(r[0]), int(r[-1]) + 1) for r in np.split(idx, breaks) if len(r)]
    if locations is None:
        return np.concatenate([array[r] for r in runs])
    # one slice per location: zarr's orthogonal selection on sharded arrays is ~100x slower
    return np.concatenate([np.concatenate([array[r, :, k : k + 1] for k in locations], axis=2) for r in runs])


def select_pairs(group: zarr.Group, cgroup: zarr.Group, params: EvaluateParams) -> np.ndarray:
    """Extracted pairs of the chosen splits that have correspondences, the first max_pairs of them."""
    ok = (group["status"][:] == STATUS_OK) & (cgroup["status"][:] == STATUS_OK)
    pairs = np.flatnonzero(ok & np.isin(group["split"][:], list(params.splits)))
    return pairs if params.max_pairs is None else pairs[: params.max_pairs]


def probe_set_names(probes: Path, choice: str | tuple[str, ...]) -> list[str]:
    """The probe sets to score: every folder holding a config.json, or the named ones."""
    found = (
        sorted(p.name for p in probes.iterdir() if (p / "config.json").is_file()) if probes.is_dir() else []
    )
    if choice == "all":
        return found
    for name in choice:
        if name not in found:
            raise ConfigError(f"{probes}: {unknown_name_message('probe set', name, found)}")
    return list(choice)


@dataclass
class EvalBatch:
    """Everything evaluate reads for one batch of pairs (see `BatchReader.read`).

    Attributes:
        batch: features of every needed location and the renders' ground truth.
        own: {"": {"pred", "conf"}} the model's stored output.
        gt_match: (B, V, Q) ground-truth patch matches.
        codes, argmax, norms: compact attention maps, their row argmaxes and token norms
            (None without attention maps).
        full: the full float16 maps of the cross-attention locations, or None.
    """

    batch: Batch
    own: dict[str, dict[str, torch.Tensor]]
    gt_match: np.ndarray
    codes: np.ndarray | None = None
    argmax: np.ndarray | None = None
    norms: np.ndarray | None = None
    full: np.ndarray | None = None


class BatchReader:
    """Reads a batch's every input from the three stores, so a thread can run it ahead of scoring."""

    def __init__(
        self, source: StoreSource, group: zarr.Group, cgroup: zarr.Group, layout: AttentionLayout | None
    ) -> None:
        self.source, self.group, self.cgroup, self.layout = source, group, cgroup, layout

    def read(self, idx: np.ndarray) -> EvalBatch:
        """The inputs of the pairs `idx` (sorted)."""
        group = self.group
        out = EvalBatch(
            batch=self.source.read(idx),
            own={
                "": {
                    "pred": torch.from_numpy(read_rows(group["pts3d"], idx)),
                    "conf": torch.from_numpy(read_rows(group["conf"], idx)),
                }
            },
            gt_match=read_rows(self.cgroup["patch_match"], idx),
        )
        if self.layout is not None:
            out.codes = read_rows(group["attn"], idx)
            out.argmax = read_rows(group["attn_argmax"], idx)
            out.norms = read_rows(group["token_norm"], idx)
            if group["has_full_attn"].get_orthogonal_selection((idx,)).any():
                # the cross-attention maps only: correspondence reads no others
                out.full = read_rows(group["attn_full"], idx, self.layout.cross)
        return out


class StoreLayout(NamedTuple):
    """What evaluation needs to know of a features store's layout."""

    grid: tuple[int, int]
    image_size: tuple[int, int]
    patch_size: int
    locations: list[str]  # every stored location
    residual: list[str]  # the residual-stream ones (no `.out`), the lens's and similarity's
    attention: AttentionLayout | None  # None: the store holds no attention maps

    @property
    def similarity(self) -> list[str]:
        """The locations the token-similarity baseline reads: the encoder's and the residual stream's."""
        return ["enc", *self.residual]


def store_layout(group: zarr.Group) -> StoreLayout:
    """The patch grid, image size, locations and attention layout of an open features store."""
    grid = tuple(int(x) for x in group.attrs["patch_grid"])
    image_size = tuple(int(x) for x in group.attrs["image_size"])
    locations = [str(x) for x in group["location"][:]]
    attn_locs = tuple(str(x) for x in group["attn_location"][:])
    patch_size = image_size[0] // grid[0]
    has_attention = attn_locs not in ((), ("none",))  # stores before size-0 dims said "none"
    return StoreLayout(
        grid=grid,
        image_size=image_size,
        patch_size=patch_size,
        locations=locations,
        residual=[loc for loc in locations if not loc.endswith(".out")],
        attention=AttentionLayout(attn_locs, tuple(locations), grid, patch_size) if has_attention else None,
    )
