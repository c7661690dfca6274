"""`probe3r store info|validate PATH`: inspect any store of the project."""

from __future__ import annotations

import typer

app = typer.Typer(help="Inspect and validate probe3r's Zarr stores.", no_args_is_help=True)
