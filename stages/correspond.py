"""`probe3r correspond`: ground-truth patch correspondences of every rendered pair."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from pipeline.jobs.correspond import run_correspond
from pipeline.params import apply_overrides, load_section

log = logging.getLogger("probe3r.correspond")


def correspond(
    *,
    params: Annotated[Path, typer.Option(help="params.yaml to read the `correspond:` section from.")] = Path(
        "params.yaml"
    ),
    renders: Annotated[Path, typer.Option(help="Renders store to read `corr` from.")] = Path(
        "data/renders.zarr"
    ),
    out: Annotated[Path, typer.Option(help="Correspondences store to write (Zarr v3 folder).")] = Path(
        "data/correspondences.zarr"
    ),
    patch_size: Annotated[
        int | None, typer.Option(help="Patch side in pixels; overrides correspond.patch_size.")
    ] = None,
    workers: Annotated[int, typer.Option(help="Processes on this machine (one shard each at a time).")] = 1,
    overwrite: Annotated[
        bool, typer.Option(help="Replace an existing store instead of resuming it.")
    ] = False,
) -> None:
    """Patch correspondences both ways, and each pixel's patch in the other view.

    Resumable: rerunning computes only shards still pending (e.g. pairs rendered since).
    """
    values = apply_overrides(load_section(params, "correspond"), patch_size=patch_size)
    summary = run_correspond(
        renders, out, patch_size=int(values.get("patch_size", 16)), workers=workers, overwrite=overwrite
    )
    log.info(
        "%s: %d of %d pairs with correspondences (%d pending, %d shards this run)",
        out,
        summary["n_ok"],
        summary["n_pairs"],
        summary["n_pending"],
        summary["shards_computed"],
    )
