"""`probe3r render`: render view pairs with exact ground truth into a renders store."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from pipeline.jobs.render import RenderParams, run_render
from pipeline.params import apply_overrides, load_section

log = logging.getLogger("probe3r.render")


def render(
    *,
    params: Annotated[
        Path, typer.Option(help="params.yaml to read the `render:` section (and base.seed) from.")
    ] = Path("params.yaml"),
    out: Annotated[Path, typer.Option(help="Renders store to write (Zarr v3 folder).")] = Path(
        "data/renders.zarr"
    ),
    source: Annotated[
        str | None,
        typer.Option(
            help="'procedural' or a folder of mesh scenes (HM3D glb layout); overrides render.source."
        ),
    ] = None,
    n_pairs: Annotated[int | None, typer.Option(help="Pairs to render; overrides render.n_pairs.")] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed for scenes and cameras; overrides base.seed.")
    ] = None,
    workers: Annotated[int, typer.Option(help="Processes on this machine (one shard each at a time).")] = 2,
    scheduler: Annotated[
        str | None,
        typer.Option(help="dask-distributed scheduler address (tcp://host:8786) to run shards on a cluster."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace an existing store instead of resuming it.")
    ] = False,
) -> None:
    """Render pairs of views of scenes into a renders store.

    Resumable: rerunning the same command after a crash renders only the shards that are
    not complete. A store made with other parameters is refused unless --overwrite.
    """
    values = apply_overrides(
        load_section(params, "render", base_keys=("seed",)), source=source, n_pairs=n_pairs, seed=seed
    )
    summary = run_render(
        out, RenderParams.from_dict(values), workers=workers, scheduler=scheduler, overwrite=overwrite
    )
    log.info(
        "%s: %d pairs rendered, %d failed (%d shards this run)",
        out,
        summary["n_ok"],
        summary["n_failed"],
        summary["shards_rendered"],
    )
    for scene in summary["failed_scenes"]:
        log.warning("skipped scene %s: %s", scene["scene_id"], scene["reason"])
