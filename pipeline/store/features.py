"""Create, open, fill and finalise a features store (store_schema.yaml `features`).

A shard is written whole by one writer and its `status` last, so a shard whose status is
still 0 is simply recomputed by a resumed run. Statistics are kept per shard (sums and
sums of squares in float64, indexed by `shard_index`) so disjoint writers never touch the
same chunk; `finalise_statistics` turns them into mean and std once every shard is done.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from pipeline.cores import usable_cores
from pipeline.errors import SchemaError, ShapeError
from pipeline.store import shard_writer
from pipeline.store.int8 import decode_int8
from pipeline.store.location import StoreLocation
from pipeline.store.validate import validate_store
from pipeline.store.writer import create_store, open_store, schema_array

STATUS_PENDING, STATUS_OK, STATUS_SKIPPED = 0, 1, 2
PERCENTILES = (1.0, 5.0, 25.0, 50.0, 75.0, 95.0, 99.0, 99.9)
PERCENTILE_SAMPLE_PAIRS = 2000


@dataclass(frozen=True)
class FeatureLayout:
    """Every size of a features store, from the model, the renders and the parameters.

    Attributes:
        n_pairs: pairs (= the renders store's pairs).
        pairs_per_shard: pairs per shard file, the unit of work of one writer.
        locations: decoder residual-stream locations stored in `acts`, in order.
        attn_locations: attention maps stored in `attn` (e.g. "b03.cross"); empty when
            extract.attention is "none": the attention arrays then have attn_location = 0.
        image_size: (H, W) of the model input.
        patch_grid: (h, w); N = h * w tokens, row-major.
        enc_dim: encoder width (1024 for DUSt3R 224).
        dec_dim: decoder width (768).
        n_heads: decoder attention heads A.
        n_high_norm: how many top-norm token indices to keep per pair, view and location.
        acts_encoding: "float16", or "int8" (codes in `acts`, per-channel `acts_scale`).
    """

    n_pairs: int
    pairs_per_shard: int
    locations: tuple[str, ...]
    attn_locations: tuple[str, ...]
    image_size: tuple[int, int]
    patch_grid: tuple[int, int]
    enc_dim: int
    dec_dim: int
    n_heads: int
    n_high_norm: int = 4
    acts_encoding: str = "float16"

    @property
    def n_tokens(self) -> int:
        return self.patch_grid[0] * self.patch_grid[1]

    @property
    def n_shards(self) -> int:
        return -(-self.n_pairs // self.pairs_per_shard)

    def sizes(self) -> dict[str, int]:
        """The size of every dim the schema does not fix."""
        n = self.n_tokens
        return {
            "pair": self.n_pairs,
            "location": len(self.locations),
            "attn_location": len(self.attn_locations),
            "token": n,
            "query": n,
            "key": n,
            "channel": self.dec_dim,
            "enc_channel": self.enc_dim,
            "head": self.n_heads,
            "y": self.image_size[0],
            "x": self.image_size[1],
            "rank": self.n_high_norm,
            "shard_index": self.n_shards,
            "percentile": len(PERCENTILES),
        }


def create_features_store(
    path: StoreLocation, layout: FeatureLayout, *, attrs: Mapping[str, Any], overwrite: bool = False
) -> zarr.Group:
    """Create an empty features store with every schema array, coordinates and attributes."""
    return create_store(
        path,
        "features",
        sizes=layout.sizes(),
        pairs_per_shard=layout.pairs_per_shard,
        attrs={
            **attrs,
            "n_pairs": layout.n_pairs,
            "pairs_per_shard": layout.pairs_per_shard,
            "image_size": list(layout.image_size),
            "patch_grid": list(layout.patch_grid),
            "token_order": "row-major",
            "complete": False,
        },
        coords={
            "view": np.array([1, 2]),
            "location": np.array(layout.locations, dtype=np.dtypes.StringDType()),
            "attn_location": np.array(layout.attn_locations, dtype=np.dtypes.StringDType()),
            "percentile": np.array(PERCENTILES, dtype=np.float32),
        },
        overwrite=overwrite,
        encodings={"acts": "int8"} if layout.acts_encoding == "int8" else None,
    )


def open_features(path: StoreLocation, *, mode: str = "r") -> zarr.Group:
    """Open a features store, refusing one that does not match store_schema.yaml.

    Raises:
        StoreNotFoundError: nothing there.
        SchemaError: not a features store, or it differs from the schema (every difference listed).
    """
    group = open_store(path, "features", mode=mode)
    problems = validate_store(path)
    if problems:
        raise SchemaError(f"{path} does not match the schema:\n  " + "\n  ".join(problems))
    return group


# Per-pair arrays a shard writes, in write order; `status` comes last on purpose.
SHARD_ARRAYS = (
    "enc",
    "acts",
    "acts_scale",
    "attn",
    "attn_argmax",
    "attn_full",
    "has_full_attn",
    "pts3d",
    "conf",
    "token_norm",
    "enc_token_norm",
    "high_norm_token",
    "enc_high_norm_token",
    "clipped",
    "scene_id",
    "split",
)
STAT_ARRAYS = ("acts_sum", "acts_sumsq", "enc_sum", "enc_sumsq", "token_count")


def write_shard(
    group: zarr.Group,
    shard_index: int,
    start: int,
    data: Mapping[str, np.ndarray | None],
    pool: Executor | None = None,
) -> None:
    """Write one whole shard: its per-pair arrays, its statistics row, then its status.

    Per-pair arrays are written by `shard_writer` (inner chunks compressed in parallel on
    `pool`, or a pool of one thread per core), the rest through zarr.

    Args:
        group: the features store, open for writing.
        shard_index: which shard (pairs start .. start + pairs_per_shard - 1).
        start: first pair of the shard.
        data: every name in SHARD_ARRAYS with leading dim = pairs of the shard, every
            name in STAT_ARRAYS without the shard_index dim, and "status". `attn_full`
            may be None (or left out) when no pair of the shard gets full maps, and
            `acts_scale` when acts are float16: nothing is stored for them.

    Raises:
        ShapeError: an array's shape is not the store's for that pair range.
    """
    n = len(data["status"])
    names = [name for name in (*SHARD_ARRAYS, *STAT_ARRAYS) if data.get(name) is not None]
    for name in names:
        array = group[name]
        expected = (n, *array.shape[1:]) if name in SHARD_ARRAYS else array.shape[1:]
        if tuple(np.shape(data[name])) != tuple(expected):
            raise ShapeError(
                f"features.{name}: shard {shard_index} gives shape {np.shape(data[name])}, store expects {expected}"
            )
    if start != shard_index * int(group.attrs["pairs_per_shard"]):
        raise ShapeError(
            f"features: shard {shard_index} starts at pair {shard_index * group.attrs['pairs_per_shard']}, not {start}"
        )
    sl = slice(start, start + n)
    with ThreadPoolExecutor(usable_cores()) if pool is None else nullcontext(pool) as workers:
        for name in names:
            array = schema_array(group, "features", name)
            if name in STAT_ARRAYS:
                array[shard_index] = data[name]
            elif shard_writer.supports(array) and array.shards[0] == group.attrs["pairs_per_shard"]:
                coords = (shard_index, *(0 for _ in array.shape[1:]))
                shard_writer.write_shard(array, coords, np.asarray(data[name]), workers)
            else:
                array[sl] = data[name]
    group["status"][sl] = data["status"]  # last: marks the shard complete


def read_acts(group: zarr.Group, index: tuple[int | slice, ...]) -> np.ndarray:
    """`acts[index]` as values: float16 as stored, or int8 codes decoded to float32.

    Args:
        group: an open features store.
        index: a basic selection over the leading (pair, view, location) dims only, so the
            same selection picks the matching per-channel scales of an int8 store.
    """
    if len(index) > 3:
        raise ShapeError(f"read_acts selects over (pair, view, location) only, got {len(index)} entries")
    values = group["acts"][index]
    if values.dtype != np.int8:
        return values
    return decode_int8(values, group["acts_scale"][index])


def finalise_statistics(group: zarr.Group) -> None:
    """Mean and std per (view, location, channel) and token-norm percentiles, from every shard.

    Percentiles use at most PERCENTILE_SAMPLE_PAIRS evenly spaced extracted pairs, so
    finalising a 100k-pair store reads a few hundred MB rather than every norm.
    """
    count = float(group["token_count"][:].sum())
    if count == 0:
        return
    for prefix, (mean_name, std_name) in (("acts", ("mean", "std")), ("enc", ("enc_mean", "enc_std"))):
        total = group[f"{prefix}_sum"][:].sum(axis=0)
        total_sq = group[f"{prefix}_sumsq"][:].sum(axis=0)
        mean = total / count
        group[mean_name][...] = mean.astype(np.float32)
        group[std_name][...] = np.sqrt(np.maximum(total_sq / count - mean**2, 0)).astype(np.float32)
    done = np.flatnonzero(group["status"][:] == STATUS_OK)
    pick = done[np.linspace(0, len(done) - 1, min(len(done), PERCENTILE_SAMPLE_PAIRS)).astype(int)]
    norms = group["token_norm"].get_orthogonal_selection((pick,))  # (P, V, L, N)
    group["norm_percentile"][...] = np.moveaxis(np.percentile(norms, PERCENTILES, axis=(0, 3)), 0, -1).astype(
        np.float32
    )
    enc_norms = group["enc_token_norm"].get_orthogonal_selection((pick,))  # (P, V, N)
    group["enc_norm_percentile"][...] = np.moveaxis(
        np.percentile(enc_norms, PERCENTILES, axis=(0, 2)), 0, -1
    ).astype(np.float32)
