"""Feed the trainer from the model's forward pass instead of a features store.

As tuned-lens trains its lenses: each batch of rendered pairs goes through DUSt3R with the
requested locations captured, and the probes train on those activations directly. Nothing
is written to disk, so the number of pairs is not bounded by store size; the price is one
forward pass per step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.probes.batches import Batch, batch_indices
from pipeline.probing.capture import capture
from pipeline.store.writer import open_store

RENDER_OK = 1


class LiveSource:
    """Batches of rendered pairs with activations captured from `model` on the fly.

    Args:
        model: a `pipeline.model.Dust3r` (in eval mode, on the device to run it on).
        renders: the renders store (images and targets).
        locations: stream locations to capture (pipeline.probing.locations spelling).
        splits: which pairs to use, by scene split.
        batch_size, seed: see `pipeline.probes.batches.batch_indices`.
    """

    def __init__(
        self,
        model: nn.Module,
        renders: Path,
        locations: Sequence[str],
        *,
        splits: Sequence[str],
        batch_size: int,
        seed: int = 0,
    ) -> None:
        self.model, self.locations, self.renders = model, tuple(locations), renders
        self.rgroup = open_store(renders, "renders")
        ok = self.rgroup["status"][:] == RENDER_OK
        self.pairs = np.flatnonzero(ok & np.isin(self.rgroup["split"][:], list(splits)))
        self.batch_size, self.seed = batch_size, seed

    @property
    def widths(self) -> dict[str, int]:
        cfg = self.model.config
        return {loc: cfg.enc_embed_dim if loc == "enc" else cfg.dec_embed_dim for loc in self.locations}

    @property
    def image_size(self) -> tuple[int, int]:
        H, W = self.rgroup.attrs["image_size"]
        return int(H), int(W)

    @property
    def grid(self) -> tuple[int, int]:
        p = self.model.config.patch_size
        return self.image_size[0] // p, self.image_size[1] // p

    def identity(self) -> dict:
        """Where the activations came from: the live model and the renders."""
        cfg = self.model.config
        config = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(cfg).items()}
        return {"source": "live", "renders": str(self.renders), "model_config": config}

    def read(self, idx: np.ndarray) -> Batch:
        """Capture the batch of pairs `idx`; activations stay on the model's device."""
        r = self.rgroup
        rgb = torch.from_numpy(r["rgb"].get_orthogonal_selection((idx,)))  # (B, V, H, W, 3) uint8
        device = next(self.model.parameters()).device
        img = rgb.to(device).permute(0, 1, 4, 2, 3).float() / 127.5 - 1  # DUSt3R's [-1, 1] input
        with torch.no_grad():  # not inference_mode: the probes save these tensors for backward
            _, acts = capture(self.model, img[:, 0], img[:, 1], locations=self.locations)
        return Batch(
            acts=acts.stream,
            pts3d=torch.from_numpy(r["pts3d_view1"].get_orthogonal_selection((idx,))),
            depth=torch.from_numpy(r["depth"].get_orthogonal_selection((idx,)))[..., None],
            valid=torch.from_numpy(r["valid"].get_orthogonal_selection((idx,))),
        )

    def batches(self, start: int = 0, *, loop: bool = True) -> Iterator[Batch]:
        for idx in batch_indices(self.pairs, self.batch_size, seed=self.seed, start=start, loop=loop):
            yield self.read(idx)
