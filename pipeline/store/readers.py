"""Read a features store: a lazy xarray view, and a streaming torch dataset for probe training.

Probe training reads one location for many pairs. The store's inner chunk is one pair x
both views x one location, grouped `pairs_per_shard` pairs to a shard file, so the dataset
reads one shard's block of a location at a time (whole chunks, one file) and shuffles
within a buffer instead of seeking pair by pair. Zarr handles are opened inside
`__iter__`, never in `__init__`, so DataLoader workers never share a forked handle.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
import zarr
from torch.utils.data import IterableDataset, get_worker_info

from pipeline.errors import SchemaError, unknown_name_message
from pipeline.store.features import STATUS_OK, read_acts
from pipeline.store.writer import open_store


def open_features_xarray(path: Path, *, upcast: bool = True) -> xr.Dataset:
    """The whole store as a lazy, dask-backed xarray Dataset.

    Args:
        path: a features store.
        upcast: turn float16 variables into float32 lazily. Keep it on for reductions:
            dask sums float16 in float16 and overflows past 65504.

    Example:
        >>> ds = open_features_xarray(Path("data/features.zarr"))
        >>> ds.acts.sel(location="b03.cross", view=2).dims
        ('pair', 'token', 'channel')
    """
    ds = xr.open_zarr(str(path), consolidated=False, chunks={})
    if upcast:
        for name, var in ds.data_vars.items():
            if var.dtype == np.float16:
                ds[name] = var.astype(np.float32)
    if ds["acts"].dtype == np.int8:  # the opt-in int8 encoding: codes times per-channel scales
        ds["acts"] = (ds["acts"].astype(np.float32) * ds["acts_scale"]).transpose(*ds["acts"].dims)
    return ds


def attention_probabilities(ds: xr.Dataset) -> xr.DataArray:
    """Decode `attn` (uint8) into probabilities, lazily.

    Returns:
        (pair, view, attn_location, head, query, key) float32, each entry within 1/510 of
        the model's map. For matches use `attn_argmax`, the exact argmax of each row: the
        rounded rows often tie.
    """
    return ds["attn"].astype(np.float32) / 255


class FeatureDataset(IterableDataset):
    """Stream the tokens of one location, pair by pair, in shard-sized reads.

    Each item is {"pair": int, "tokens": (V, N, D) float32, and the renders arrays asked
    for, e.g. "pts3d_view1": (V, H, W, 3), "valid": (V, H, W)}. Only extracted pairs
    (status 1) of the chosen splits are yielded. Across DataLoader workers the shards are
    dealt out round-robin, so every pair is yielded exactly once per epoch.

    Args:
        path: the features store.
        location: "enc" or a decoder location of the store's `location` coordinate.
        splits: keep only pairs of these splits (None: all).
        renders: the renders store to read targets from (None: no targets).
        render_arrays: renders arrays added to each item.
        shuffle: shuffle shard order and pairs within a buffer, per epoch.
        buffer_size: pairs held for shuffling (larger mixes more shards).
        seed: base seed; the epoch (`set_epoch`) and worker id are mixed in.
    """

    def __init__(
        self,
        path: Path,
        location: str,
        *,
        splits: Sequence[str] | None = None,
        renders: Path | None = None,
        render_arrays: Sequence[str] = ("pts3d_view1", "valid"),
        shuffle: bool = True,
        buffer_size: int = 256,
        seed: int = 0,
    ) -> None:
        super().__init__()
        group = open_store(path, "features")  # checked here, then dropped: no handle is kept
        locations = ["enc", *(str(x) for x in group["location"][:])]
        if location not in locations:
            raise SchemaError(f"{path}: {unknown_name_message('location', location, locations)}")
        self.path, self.location, self.renders = path, location, renders
        self.location_index = locations.index(location) - 1
        self.splits = None if splits is None else tuple(splits)
        self.render_arrays = tuple(render_arrays) if renders is not None else ()
        self.shuffle, self.buffer_size, self.seed, self.epoch = shuffle, buffer_size, seed, 0
        self.n_pairs, self.pairs_per_shard = int(group.attrs["n_pairs"]), int(group.attrs["pairs_per_shard"])

    def set_epoch(self, epoch: int) -> None:
        """Change the shuffle order for the next pass (call before each epoch)."""
        self.epoch = epoch

    def _blocks(self, worker: int, n_workers: int, rng: np.random.Generator) -> list[slice]:
        starts = list(range(0, self.n_pairs, self.pairs_per_shard))
        if self.shuffle:
            rng.shuffle(starts)
        mine = starts[worker::n_workers]
        return [slice(s, min(s + self.pairs_per_shard, self.n_pairs)) for s in mine]

    def _read(self, group: zarr.Group, rgroup: zarr.Group | None, sl: slice) -> Iterator[dict[str, Any]]:
        keep = group["status"][sl] == STATUS_OK
        if self.splits is not None:
            keep &= np.isin(group["split"][sl], self.splits)
        if not keep.any():
            return
        if self.location == "enc":
            tokens = group["enc"][sl]  # (P, V, N, De)
        else:
            tokens = read_acts(group, (sl, slice(None), self.location_index))  # (P, V, N, D)
        extra = {name: rgroup[name][sl] for name in self.render_arrays} if rgroup is not None else {}
        for k in np.flatnonzero(keep):
            item = {"pair": sl.start + int(k), "tokens": torch.from_numpy(tokens[k].astype(np.float32))}
            item.update({name: torch.from_numpy(np.asarray(v[k])) for name, v in extra.items()})
            yield item

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rng = np.random.default_rng([self.seed, self.epoch, worker])
        group = zarr.open_group(str(self.path), mode="r")  # opened per worker, after the fork
        rgroup = zarr.open_group(str(self.renders), mode="r") if self.renders is not None else None
        shard_rng = np.random.default_rng([self.seed, self.epoch])  # same shard order in every worker
        buffer: list[dict[str, Any]] = []
        for sl in self._blocks(worker, n_workers, shard_rng):
            for item in self._read(group, rgroup, sl):
                if not self.shuffle:
                    yield item
                    continue
                buffer.append(item)
                if len(buffer) >= self.buffer_size:
                    yield buffer.pop(int(rng.integers(len(buffer))))
        if self.shuffle:
            rng.shuffle(buffer)  # type: ignore[arg-type]
            yield from buffer
