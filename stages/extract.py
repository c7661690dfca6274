"""`probe3r extract`: run the model over a renders store and write the features store."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from pipeline.errors import ConfigError
from pipeline.jobs.extract import run_extract
from pipeline.jobs.extract_params import ExtractParams
from pipeline.params import apply_overrides, load_section
from pipeline.store.location import store_location

log = logging.getLogger("probe3r.extract")


def _parse_shard(text: str) -> tuple[int, int]:
    i, sep, n = text.partition("/")
    if not (sep and i.isdigit() and n.isdigit() and 0 <= int(i) < int(n)):
        raise ConfigError(f"--shard expects i/n with 0 <= i < n (e.g. 0/4), got {text!r}")
    return int(i), int(n)


def extract(
    *,
    params: Annotated[
        Path,
        typer.Option(help="params.yaml to read the `extract:` section (and base.seed, base.device) from."),
    ] = Path("params.yaml"),
    renders: Annotated[
        str, typer.Option(help="Renders store to read: a folder or an fsspec URL.")
    ] = "data/renders.zarr",
    out: Annotated[
        str,
        typer.Option(
            help="Features store to write (Zarr v3): a folder or an fsspec URL such as s3://bucket/f.zarr."
        ),
    ] = "data/features.zarr",
    model: Annotated[str | None, typer.Option(help="Model config name; overrides extract.model.")] = None,
    checkpoint: Annotated[
        str | None, typer.Option(help="Checkpoint (.pth or HF folder); overrides extract.checkpoint.")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Pairs per forward pass; overrides extract.batch_size.")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda or cuda:<i>; overrides base.device.")
    ] = None,
    autocast: Annotated[
        str | None, typer.Option(help="none, bf16 or fp16 (CUDA only); overrides extract.autocast.")
    ] = None,
    shard: Annotated[
        str, typer.Option(help="i/n: fill only shards k with k % n == i (one process per GPU).")
    ] = "0/1",
    workers: Annotated[int, typer.Option(help="Processes on this machine, each with its own model.")] = 1,
    scheduler: Annotated[
        str | None,
        typer.Option(help="dask-distributed scheduler address (tcp://host:8786) to run shards on."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace an existing store instead of resuming it.")
    ] = False,
) -> None:
    """Capture every residual-stream location and attention map of every rendered pair.

    Resumable: rerunning the same command after a crash computes only the shards that are
    not complete. A store made by another model, renders store or parameters is refused.
    """
    values = apply_overrides(
        load_section(params, "extract", base_keys=("seed", "device")),
        model=model,
        checkpoint=checkpoint,
        batch_size=batch_size,
        device=device,
        autocast=autocast,
    )
    summary = run_extract(
        store_location(renders),
        store_location(out),
        ExtractParams.from_dict(values),
        shard=_parse_shard(shard),
        workers=workers,
        scheduler=scheduler,
        overwrite=overwrite,
    )
    log.info(
        "%s: %d shards written this run; store %s; weights %s",
        out,
        summary["shards_written"],
        "complete" if summary["complete"] else "incomplete (other shards pending)",
        summary["model_weights"],
    )
