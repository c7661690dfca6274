"""Feed the trainer from a features store plus the renders store's ground truth.

Every requested location of a batch comes from slice reads of `acts` (pair, view, location,
token, channel), one per run of consecutive pairs and of consecutive locations, served as
whole inner chunks out of the shard files; so training all locations costs one pass over
the store, not one per location. (zarr's orthogonal selection with index arrays is about
100x slower than slices here, hence the runs.) A background thread reads the next batches
while the current one trains.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import zarr

from pipeline.errors import SchemaError, unknown_name_message
from pipeline.probes.batches import Batch, batch_indices
from pipeline.store.features import read_acts
from pipeline.store.writer import open_store

STATUS_OK = 1


class StoreSource:
    """Batches of extracted pairs of some splits, with all requested locations.

    Args:
        features: a features store (`probe3r extract`).
        renders: the renders store it was extracted from (targets: pts3d_view1, depth, valid).
        locations: "enc" and/or names of the store's `location` coordinate.
        splits: which pairs to use, by the renders' scene split (e.g. ("train",)).
        batch_size, seed: see `pipeline.probes.batches.batch_indices`.
        prefetch: batches read ahead in a background thread (0: read inline).
    """

    def __init__(
        self,
        features: Path,
        renders: Path,
        locations: Sequence[str],
        *,
        splits: Sequence[str],
        batch_size: int,
        seed: int = 0,
        prefetch: int = 2,
    ) -> None:
        self.features, self.renders = features, renders
        self.group = open_store(features, "features")
        self.rgroup = open_store(renders, "renders")
        stored = (self.group.attrs.get("renders") or {}).get("params")
        if stored != self.rgroup.attrs.get("params"):
            raise SchemaError(
                f"{features}: extracted from other renders than {renders} (render params differ)"
            )
        names = [str(x) for x in self.group["location"][:]]
        for loc in locations:
            if loc != "enc" and loc not in names:
                raise SchemaError(f"{features}: {unknown_name_message('location', loc, ['enc', *names])}")
        self.locations = tuple(locations)
        self.dec_index = np.array([names.index(loc) for loc in locations if loc != "enc"], dtype=np.int64)
        ok = self.group["status"][:] == STATUS_OK
        self.pairs = np.flatnonzero(ok & np.isin(self.group["split"][:], list(splits)))
        self.batch_size, self.seed, self.prefetch = batch_size, seed, prefetch

    @property
    def widths(self) -> dict[str, int]:
        """Token width of every requested location."""
        enc, dec = self.group["enc"].shape[-1], self.group["acts"].shape[-1]
        return {loc: int(enc if loc == "enc" else dec) for loc in self.locations}

    @property
    def grid(self) -> tuple[int, int]:
        h, w = self.group.attrs["patch_grid"]
        return int(h), int(w)

    @property
    def image_size(self) -> tuple[int, int]:
        H, W = self.group.attrs["image_size"]
        return int(H), int(W)

    def identity(self) -> dict:
        """Where the features came from: the store, its model and its renders."""
        keys = ("model_name", "model_weights", "params", "renders", "n_pairs")
        return {"source": "store", "path": str(self.features), **{k: self.group.attrs.get(k) for k in keys}}

    def read(self, idx: np.ndarray) -> Batch:
        """The batch of pairs `idx` (sorted), features cast to float32 by the probes."""
        acts: dict[str, torch.Tensor] = {}
        if len(self.dec_index):
            loc_runs = _runs(self.dec_index)
            block = np.concatenate(
                [
                    np.concatenate(
                        [read_acts(self.group, (slice(a, b), slice(None), slice(c, d))) for c, d in loc_runs],
                        axis=2,
                    )
                    for a, b in _runs(idx)
                ]
            )
            block = torch.from_numpy(block)  # (B, V, L, N, D) float16 (float32 from an int8 store)
            dec = [loc for loc in self.locations if loc != "enc"]
            acts.update({loc: block[:, :, j] for j, loc in enumerate(dec)})
        if "enc" in self.locations:
            acts["enc"] = torch.from_numpy(_read_pairs(self.group["enc"], idx))
        r = self.rgroup
        return Batch(
            acts=acts,
            pts3d=torch.from_numpy(_read_pairs(r["pts3d_view1"], idx)),
            depth=torch.from_numpy(_read_pairs(r["depth"], idx))[..., None],
            valid=torch.from_numpy(_read_pairs(r["valid"], idx)),
        )

    def batches(self, start: int = 0, *, loop: bool = True) -> Iterator[Batch]:
        order = batch_indices(self.pairs, self.batch_size, seed=self.seed, start=start, loop=loop)
        reads = (self.read(idx) for idx in order)
        return prefetched(reads, self.prefetch) if self.prefetch else reads


def _runs(sorted_idx: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) ranges of consecutive values: zarr reads slices far faster than index arrays."""
    breaks = np.flatnonzero(np.diff(sorted_idx) != 1) + 1
    return [(int(r[0]), int(r[-1]) + 1) for r in np.split(sorted_idx, breaks) if len(r)]


def _read_pairs(array: zarr.Array, idx: np.ndarray) -> np.ndarray:
    return np.concatenate([array[a:b] for a, b in _runs(idx)])


def prefetched(items: Iterator[Batch], depth: int) -> Iterator[Batch]:
    """Run `items` in a daemon thread, `depth` ahead of the consumer; errors re-raise here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False  # the consumer has gone: drop the item and end the thread

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(done)
        except BaseException as err:  # handed to the consumer, which re-raises it
            put(err)

    threading.Thread(target=work, daemon=True).start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
