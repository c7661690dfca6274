"""`probe3r train-probes`: fit pointmap (or depth) probes at every location in one pass."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from pipeline.jobs.extract_model import ModelRunner
from pipeline.jobs.extract_params import ExtractParams
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
    locations: Annotated[
        list[str] | None,
        typer.Option(
            help="A location to probe, e.g. b03.cross (repeatable); overrides train_probes.locations."
        ),
    ] = None,
    kinds: Annotated[
        list[str] | None,
        typer.Option(help="A probe kind, mlp or linear (repeatable); overrides train_probes.kinds."),
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Optimiser steps; overrides train_probes.steps.")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Pairs per step; overrides train_probes.batch_size.")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda; overrides base.device.")] = None,
    live: Annotated[
        bool,
        typer.Option(
            help="Train from the model's forward pass (the `extract:` section's model) instead of --features."
        ),
    ] = False,
) -> None:
    """Train the probes of every requested location and kind together, from one pass over the store.

    Resumable: a killed run restarts from out/checkpoint.pt with the same data order.
    With --live, activations come from running the model on the renders (no features store).
    """
    values = apply_overrides(
        load_section(params, "train_probes", base_keys=("seed", "device")),
        locations=tuple(locations) if locations else None,
        kinds=tuple(kinds) if kinds else None,
        steps=steps,
        batch_size=batch_size,
        device=device,
    )
    model = None
    if live:
        extract = load_section(params, "extract", base_keys=("seed", "device"))
        model = ModelRunner.from_params(ExtractParams.from_dict(extract)).model
    val = run_train_probes(
        features, renders, out, TrainProbesParams.from_dict(values), curves_dir=curves, model=model
    )
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
