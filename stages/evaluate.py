"""`probe3r evaluate`: the paper's metrics from the stores and probes → reports/."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from pipeline.jobs.eval_params import EvaluateParams
from pipeline.jobs.evaluate import run_evaluate
from pipeline.params import apply_overrides, load_section

log = logging.getLogger("probe3r.evaluate")


def evaluate(
    *,
    params: Annotated[
        Path,
        typer.Option(help="params.yaml to read the `evaluate:` section (and base.seed, base.device) from."),
    ] = Path("params.yaml"),
    features: Annotated[Path, typer.Option(help="Features store.")] = Path("data/features.zarr"),
    renders: Annotated[Path, typer.Option(help="Renders store (ground truth, overlap, rotation).")] = Path(
        "data/renders.zarr"
    ),
    correspondences: Annotated[Path, typer.Option(help="Correspondences store.")] = Path(
        "data/correspondences.zarr"
    ),
    probes: Annotated[Path, typer.Option(help="Folder of probe sets (one sub-folder per set).")] = Path(
        "models/probes"
    ),
    out: Annotated[Path, typer.Option(help="Reports folder: metrics.json, plots/, pairs/.")] = Path(
        "reports"
    ),
    max_pairs: Annotated[
        int | None, typer.Option(help="Evaluate at most this many pairs; overrides evaluate.max_pairs.")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Pairs per batch; overrides evaluate.batch_size.")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda; overrides base.device.")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Processes on this machine, each scoring a share of the pairs on its share of the cores; "
            "default: one per core on a CPU (at most 4), one on a GPU.",
            min=1,
        ),
    ] = None,
) -> None:
    """Score every probe set, the head lens, attention correspondences and registers on the test pairs."""
    values = apply_overrides(
        load_section(params, "evaluate", base_keys=("seed", "device")),
        max_pairs=max_pairs,
        batch_size=batch_size,
        device=device,
    )
    metrics = run_evaluate(
        features, renders, correspondences, probes, out, EvaluateParams.from_dict(values), workers=workers
    )
    log.info(
        "%s: %d pairs; model ssi_error %s; %.1f s",
        out / "metrics.json",
        metrics["n_pairs"],
        metrics["model"].get("ssi_error"),
        metrics["timings"]["total"],
    )
