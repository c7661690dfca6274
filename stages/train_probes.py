"""`probe3r train-probes`: fit pointmap (or depth) probes at every location in one pass."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from pipeline.jobs.train_probes import TrainProbesParams, run_train_probes
from pipeline.params import apply_overrides, load_section

log = logging.getLogger("probe3r.train_probes")


def train_probes(
    *,
    params: Annotated[
        Path, typer.Option(help="params.yaml to read the `train_probes:` section (and base.seed) from.")
    ] = Path("params.yaml"),
    features: Annotated[Path, typer.Option(help="Features store to train from.")] = Path(
        "data/features.zarr"
    ),
    renders: Annotated[Path, typer.Option(help="Renders store with the ground truth.")] = Path(
        "data/renders.zarr"
    ),
    out: Annotated[Path, typer.Option(help="Folder of the probe sets (one sub-folder per kind).")] = Path(
        "models/probes"
    ),
    curves: Annotated[
        Path, typer.Option(help="Folder for the loss curves (CSV per step) and final validation losses.")
    ] = Path("metrics/train_probes"),
    location: Annotated[
        list[str] | None,
        typer.Option(help="Location to probe (repeat for several); overrides train_probes.locations."),
    ] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option(help="Probe kind, mlp or linear (repeatable); overrides train_probes.kinds."),
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Optimiser steps; overrides train_probes.steps.")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Pairs per step; overrides train_probes.batch_size.")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda; overrides base.device.")] = None,
) -> None:
    """Train the probes of every requested location and kind together, from one pass over the store.

    Resumable: a killed run restarts from out/checkpoint.pt with the same data order.
    """
    values = apply_overrides(
        load_section(params, "train_probes", base_keys=("seed", "device")),
        locations=tuple(location) if location else None,
        kinds=tuple(kind) if kind else None,
        steps=steps,
        batch_size=batch_size,
        device=device,
    )
    val = run_train_probes(features, renders, out, TrainProbesParams.from_dict(values), curves_dir=curves)
    for name, losses in val.items():
        if losses:
            best = min(losses, key=losses.get)
            log.info(
                "%s: %d probes written to %s; best val loss %.4f at %s",
                name,
                len(losses),
                out / name,
                losses[best],
                best,
            )
