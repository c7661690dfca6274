"""Fit every probe set at every location together, from one stream of batches.

One step: each probe set scores all its probes (`ProbeSet.losses`, one batched kernel per
layer), the summed loss is backpropagated (probes share no parameters, so each gets its own
loss's gradient), each location's gradient is clipped on its own, and one AdamW step
updates everything. AdamW is elementwise, so this equals training each location alone
with the same data and seeds (tests/probes/test_trainer.py checks it).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import pickle
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from pipeline.errors import ConfigError
from pipeline.probes.batches import Batch, BatchSource
from pipeline.probes.probeset import ProbeSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation budget and settings (params.yaml `train_probes:`).

    Attributes:
        steps: optimiser steps.
        batch_size: pairs per step.
        lr: peak learning rate (paper: 1e-4).
        weight_decay: AdamW weight decay (paper: 0.05).
        warmup_steps: linear warm-up before the cosine decay to 0.
        grad_clip: max gradient norm of each location's probe.
        alpha: weight of −log conf in the loss (DUSt3R: 0.2).
        val_every: steps between validation passes (and at the end).
        checkpoint_every: steps between checkpoints (and at the end).
        seed: data order (probe inits are seeded by each ProbeSpec).
    """

    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.05
    warmup_steps: int = 0
    grad_clip: float = 1.0
    alpha: float = 0.2
    val_every: int = 200
    checkpoint_every: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "val_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train_probes.{name} must be >= 1, got {getattr(self, name)}")

    def lr_factor(self, step: int) -> float:
        """Multiplier of `lr` at `step`: linear warm-up, then cosine from 1 to 0."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        t = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def make_optimizer(
    sets: Mapping[str, ProbeSet], cfg: TrainConfig
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    params = [p for s in sets.values() for p in s.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, cfg.lr_factor)


def step_losses(sets: Mapping[str, ProbeSet], batch: Batch, alpha: float) -> dict[str, torch.Tensor]:
    """set name → (L,) loss of each location's probe on `batch`."""
    return {
        name: s.losses(batch.acts, batch.target(s.spec.head.name), batch.valid, alpha=alpha)
        for name, s in sets.items()
    }


def _to(batch: Batch, device: torch.device) -> Batch:
    return Batch(
        {k: v.to(device, non_blocking=True) for k, v in batch.acts.items()},
        batch.pts3d.to(device, non_blocking=True),
        batch.depth.to(device, non_blocking=True),
        batch.valid.to(device, non_blocking=True),
    )


def _device(sets: Mapping[str, ProbeSet]) -> torch.device:
    """Where the probes live; batches are moved there."""
    return next(next(iter(sets.values())).parameters()).device


@torch.no_grad()
def validate(sets: Mapping[str, ProbeSet], source: BatchSource, alpha: float) -> dict[str, dict[str, float]]:
    """Mean loss per pair over one ordered pass of `source`: set name → location → loss."""
    totals: dict[str, torch.Tensor] = {}
    n = 0
    for batch in source.batches(loop=False):
        pairs = len(batch.valid)  # weights each batch by its pairs: a short last batch counts less
        for name, loss in step_losses(sets, _to(batch, _device(sets)), alpha).items():
            totals[name] = totals.get(name, 0) + loss * pairs
        n += pairs
    return {
        name: dict(zip(sets[name].spec.locations, (t / max(n, 1)).tolist(), strict=True))
        for name, t in totals.items()
    }


def _columns(sets: Mapping[str, ProbeSet]) -> list[str]:
    return [f"{name}/{loc}" for name, s in sets.items() for loc in s.spec.locations]


class _Curves:
    """Per-step CSV files for `dvc plots`: step, lr and one column per set/location."""

    def __init__(self, path: Path, columns: list[str], resume_step: int) -> None:
        self.path, self.columns = path, ["step", *columns]
        rows = []
        if resume_step and path.exists():
            with path.open() as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.columns)
            writer.writeheader()
            writer.writerows(rows)

    def add(self, step: int, values: Mapping[str, float]) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow({"step": step, **values})


def _flat(losses: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    return {f"{name}/{loc}": v for name, per in losses.items() for loc, v in per.items()}


def _save_checkpoint(path: Path, sets, opt, sched, step: int, identity: dict, losses: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "step": step,
            "identity": identity,
            "losses": losses,  # so a run resumed after its last step still reports them
            "sets": {n: s.state_dict() for n, s in sets.items()},
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
        },
        tmp,
    )
    os.replace(tmp, path)  # atomic: a kill mid-save leaves the previous checkpoint


def train(
    sets: Mapping[str, ProbeSet],
    train_source: BatchSource,
    val_source: BatchSource | None,
    cfg: TrainConfig,
    *,
    checkpoint: Path | None = None,
    curves_dir: Path | None = None,
    progress: bool = True,
) -> dict[str, dict[str, dict[str, float]]]:
    """Train all probe sets together for `cfg.steps` steps, resuming from `checkpoint` if it exists.

    Args:
        sets: name → probe set (e.g. {"mlp": …, "linear": …}), trained in place.
        train_source: endless batches (`batches(start)`).
        val_source: validation batches, scored every `cfg.val_every` steps; None to skip.
        cfg: optimisation settings.
        checkpoint: file written every `cfg.checkpoint_every` steps and resumed from; None: none.
        curves_dir: where `train_loss.csv` and `val_loss.csv` (one row per step / validation,
            one column per set/location) go, for `dvc plots`; None: none.
        progress: show a progress bar.

    Returns:
        {"train": set → location → last step's loss, "val": … final validation loss ({} without val)}.

    Raises:
        ConfigError: `checkpoint` holds other probes or settings.
    """
    device = _device(sets)
    opt, sched = make_optimizer(sets, cfg)
    identity = {"train": asdict(cfg), "sets": {n: s.spec.to_dict() for n, s in sets.items()}}
    if hasattr(train_source, "identity"):  # the features (store, model) the probes learn from
        identity["source"] = train_source.identity()
    identity = json.loads(json.dumps(identity))
    start = 0
    last: dict[str, dict[str, float]] = {}
    ckpt_path = checkpoint
    if ckpt_path and ckpt_path.exists():
        try:  # weights_only: a checkpoint is data; never run code it carries
            ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        except pickle.UnpicklingError as e:
            raise ConfigError(
                f"{ckpt_path}: refused to unpickle a probe checkpoint holding more than tensors and "
                f"plain values ({str(e).splitlines()[0]}); delete it to train afresh"
            ) from e
        if ckpt["identity"] != identity:
            raise ConfigError(
                f"{ckpt_path}: checkpoint of other probes, settings or features; delete it to train afresh"
            )
        for name, s in sets.items():
            s.load_state_dict(ckpt["sets"][name])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        start, last = ckpt["step"], ckpt["losses"]
        log.info("resuming from %s at step %d", ckpt_path, start)
    train_curve = val_curve = None
    if curves_dir:
        curves_dir.mkdir(parents=True, exist_ok=True)
        train_curve = _Curves(curves_dir / "train_loss.csv", ["lr", *_columns(sets)], start)
        val_curve = _Curves(curves_dir / "val_loss.csv", _columns(sets), start)
    if ckpt_path:
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    val: dict[str, dict[str, float]] = {}
    bar = tqdm(total=cfg.steps, initial=start, desc="train probes", unit="step", disable=not progress)
    batches = train_source.batches(start)
    for step in range(start, cfg.steps):
        batch = _to(next(batches), device)
        lr = sched.get_last_lr()[0]
        opt.zero_grad(set_to_none=True)
        losses = step_losses(sets, batch, cfg.alpha)
        torch.stack([loss.sum() for loss in losses.values()]).sum().backward()
        for s in sets.values():
            s.clip_grad_norm_(cfg.grad_clip)
        opt.step()
        sched.step()
        last = {n: dict(zip(sets[n].spec.locations, v.tolist(), strict=True)) for n, v in losses.items()}
        done = step + 1
        bar.update(1)
        bar.set_postfix(loss=f"{torch.cat(list(losses.values())).mean().item():.4f}")
        if train_curve:
            train_curve.add(done, {"lr": lr, **_flat(last)})
        if val_source is not None and (done % cfg.val_every == 0 or done == cfg.steps):
            val = validate(sets, val_source, cfg.alpha)
            if val_curve:
                val_curve.add(done, _flat(val))
        if ckpt_path and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            _save_checkpoint(ckpt_path, sets, opt, sched, done, identity, last)
    bar.close()
    if val_source is not None and not val:
        val = validate(sets, val_source, cfg.alpha)
    return {"train": last, "val": val}
