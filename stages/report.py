"""`probe3r report`: figures, viewers and the HTML report from the stores, probes and metrics."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from pipeline.jobs.report import ReportParams, run_report
from pipeline.params import apply_overrides, load_section

log = logging.getLogger("probe3r.report")


def report(
    *,
    params: Annotated[Path, typer.Option(help="params.yaml to read the `report:` section from.")] = Path(
        "params.yaml"
    ),
    renders: Annotated[Path, typer.Option(help="Renders store (images, GT, cameras).")] = Path(
        "data/renders.zarr"
    ),
    features: Annotated[Path, typer.Option(help="Features store (model outputs, tokens, attention).")] = Path(
        "data/features.zarr"
    ),
    probes: Annotated[Path, typer.Option(help="Folder of probe sets written by train-probes.")] = Path(
        "models/probes"
    ),
    metrics: Annotated[Path, typer.Option(help="Folder with metrics.json and plots/ from evaluate.")] = Path(
        "reports"
    ),
    out: Annotated[Path, typer.Option(help="Folder for report.html and viewers/.")] = Path("reports"),
    pair: Annotated[
        list[int] | None, typer.Option(help="Pair to draw (repeatable); overrides report.pairs.")
    ] = None,
    probe_set: Annotated[
        str | None, typer.Option(help="Probe set to draw; overrides report.probe_set.")
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda; overrides report.device.")] = None,
) -> None:
    """Write report.html (figures inlined, headline numbers, run identity) and per-pair viewers.

    A missing input (e.g. metrics.json before `probe3r evaluate`) is named in its section.
    """
    values = apply_overrides(
        load_section(params, "report"),
        pairs=tuple(pair) if pair else None,
        probe_set=probe_set,
        device=device,
    )
    result = run_report(renders, features, probes, metrics, out, ReportParams.from_dict(values))
    log.info("%s: %d sections, %d viewers", result["report"], result["n_sections"], len(result["viewers"]))
    for title in result["missing"]:
        log.warning("not drawn: %s", title)
