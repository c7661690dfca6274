"""`probe3r intervene`: knock out attention live on chosen pairs and report what the probes see change."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from pipeline.jobs.intervene import InterveneParams, run_intervene
from pipeline.params import apply_overrides, load_section

log = logging.getLogger("probe3r.intervene")


def intervene(
    *,
    params: Annotated[
        Path,
        typer.Option(help="params.yaml to read the `intervene:` section (and base.seed, base.device) from."),
    ] = Path("params.yaml"),
    features: Annotated[Path, typer.Option(help="Features store (names the model to rebuild).")] = Path(
        "data/features.zarr"
    ),
    renders: Annotated[Path, typer.Option(help="Renders store (images and ground truth).")] = Path(
        "data/renders.zarr"
    ),
    probes: Annotated[Path, typer.Option(help="Folder of probe sets.")] = Path("models/probes"),
    out: Annotated[Path, typer.Option(help="Folder for metrics.json, pairs.csv and pointmaps.npz.")] = Path(
        "reports/intervene"
    ),
    knockout: Annotated[
        list[str] | None,
        typer.Option(
            help="Knockout, e.g. b02.self:heads=0,3,8,9:top_k=5:views=2, b01.cross:heads=3:keys=0,1 or "
            "b01.cross:heads=3:ablate (repeatable); add :renormalize to rescale knocked rows to sum "
            "to 1; overrides intervene.knockouts."
        ),
    ] = None,
    pair: Annotated[
        list[int] | None, typer.Option(help="Pair index to run (repeatable); overrides intervene.pairs.")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda; overrides base.device.")] = None,
) -> None:
    """Run the model plain and with the knockouts on the chosen pairs; probes read both streams."""
    values = apply_overrides(
        load_section(params, "intervene", base_keys=("seed", "device")),
        knockouts=tuple(knockout) if knockout else None,
        pairs=tuple(pair) if pair else None,
        device=device,
    )
    result = run_intervene(features, renders, probes, out, InterveneParams.from_dict(values))
    change = result["methods"]["model"][""].get("ssi_error_change")
    log.info("%s: %d pairs; model output ssi_error change %s", out, len(result["pairs"]), change)
