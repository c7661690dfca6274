"""Training batches and their order, shared by every source (memory, store, live).

Batch k of a run is a pure function of (seed, k): epoch e = k // batches_per_epoch takes
pairs in the order of a permutation seeded by (seed, e). So a resumed run continues with
exactly the batches an uninterrupted run would have seen, whatever feeds the trainer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from torch import Tensor

from pipeline.errors import ConfigError
from pipeline.probes.batched import probe_seed


@dataclass
class Batch:
    """What one training step sees.

    Attributes:
        acts: location → (B, V, N, D) tokens, view 1 first.
        pts3d: (B, V, H, W, 3) GT pointmaps in view 1's camera frame; NaN where not valid.
        depth: (B, V, H, W, 1) GT z-depth in each view's own frame.
        valid: (B, V, H, W) bool.
    """

    acts: Mapping[str, Tensor]
    pts3d: Tensor
    depth: Tensor
    valid: Tensor

    def target(self, head: str) -> Tensor:
        """The ground truth a head of this name regresses."""
        return self.pts3d if head == "pointmap" else self.depth


class BatchSource(Protocol):
    """Anything that yields batches: `batches(start)` loops over epochs from batch `start`
    on; `batches(loop=False)` is one pass in pair order (validation)."""

    def batches(self, start: int = 0, *, loop: bool = True) -> Iterator[Batch]: ...


class ProbeSource(BatchSource, Protocol):
    """A source of real pairs, which also says what the probes must look like and where data came from."""

    pairs: np.ndarray  # the pairs it draws from

    @property
    def widths(self) -> dict[str, int]: ...

    @property
    def grid(self) -> tuple[int, int]: ...

    @property
    def image_size(self) -> tuple[int, int]: ...

    def identity(self) -> dict: ...


def batch_indices(
    pairs: np.ndarray, batch_size: int, *, seed: int, start: int = 0, loop: bool = True
) -> Iterator[np.ndarray]:
    """Pair indices of batches start, start+1, … (sorted within a batch for read locality).

    Args:
        pairs: the pairs to draw from (e.g. the train split).
        batch_size: pairs per batch; the last partial batch of an epoch is dropped when looping.
        seed: decides every epoch's order.
        start: first batch to yield.
        loop: endless shuffled epochs; False gives one ordered pass (last batch may be short).
    """
    pairs = np.asarray(pairs)
    if not loop:
        for i in range(0, len(pairs), batch_size):
            yield pairs[i : i + batch_size]
        return
    per_epoch = len(pairs) // batch_size
    if per_epoch == 0:
        raise ConfigError(f"batch_size {batch_size} is larger than the {len(pairs)} training pairs")
    k = start
    while True:
        epoch, j = divmod(k, per_epoch)
        order = np.random.default_rng(probe_seed(seed, "epoch", epoch)).permutation(pairs)
        yield np.sort(order[j * batch_size : (j + 1) * batch_size])
        k += 1


class TensorSource:
    """Batches from tensors held in memory (tests, benchmarks, small stores).

    Args:
        acts: location → (P, V, N, D) for all P pairs.
        pts3d: (P, V, H, W, 3); depth: (P, V, H, W, 1); valid: (P, V, H, W).
        pairs: which of the P pairs to use.
        batch_size, seed: see `batch_indices`.
    """

    def __init__(
        self,
        acts: Mapping[str, Tensor],
        pts3d: Tensor,
        depth: Tensor,
        valid: Tensor,
        *,
        pairs: np.ndarray,
        batch_size: int,
        seed: int = 0,
    ) -> None:
        self.acts, self.pts3d, self.depth, self.valid = acts, pts3d, depth, valid
        self.pairs, self.batch_size, self.seed = np.asarray(pairs), batch_size, seed

    def batches(self, start: int = 0, *, loop: bool = True) -> Iterator[Batch]:
        for idx in batch_indices(self.pairs, self.batch_size, seed=self.seed, start=start, loop=loop):
            yield Batch(
                {k: v[idx] for k, v in self.acts.items()}, self.pts3d[idx], self.depth[idx], self.valid[idx]
            )
