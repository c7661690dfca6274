"""`probe3r store info|validate PATH`: inspect any store of the project."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.store.validate import store_info, validate_store

app = typer.Typer(help="Inspect and validate probe3r's Zarr stores.", no_args_is_help=True)


@app.command()
def info(path: Annotated[Path, typer.Argument(help="Store folder, e.g. data/renders.zarr.")]) -> None:
    """Print a store's kind, attributes and arrays (dims, dtype, chunks, shards, size)."""
    typer.echo(store_info(path))


@app.command()
def validate(path: Annotated[Path, typer.Argument(help="Store folder, e.g. data/renders.zarr.")]) -> None:
    """Check a store against store_schema.yaml; list every difference and exit 1 if any."""
    problems = validate_store(path)
    for problem in problems:
        typer.echo(problem, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{path}: valid")
