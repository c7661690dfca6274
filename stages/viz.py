"""`probe3r viz`: the 4D pointmap viewer and the attention viewer for one pair or two photos."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from pipeline.errors import ConfigError
from pipeline.jobs.viz import viz_images, viz_pair

log = logging.getLogger("probe3r.viz")


def viz(
    pair: Annotated[int | None, typer.Argument(help="Pair index in the stores (omit with --image).")] = None,
    *,
    image: Annotated[
        list[Path] | None,
        typer.Option(help="Your own photo; give exactly two (the first is the reference view)."),
    ] = None,
    renders: Annotated[Path, typer.Option(help="Renders store (for PAIR).")] = Path("data/renders.zarr"),
    features: Annotated[Path, typer.Option(help="Features store (for PAIR).")] = Path("data/features.zarr"),
    probes: Annotated[
        Path, typer.Option(help="One probe set folder (probes.safetensors + config.json).")
    ] = Path("models/probes/mlp"),
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="DUSt3R checkpoint the probes were trained on (for --image), if moved."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for the HTML pages.")] = Path("reports/viewers"),
    stride: Annotated[int, typer.Option(help="Keep every STRIDE-th pixel in the 4D viewer.")] = 2,
    query: Annotated[int | None, typer.Option(help="First query patch of the attention viewer.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
) -> None:
    """Write self-contained viewer pages for PAIR of the stores, or for two photos (--image A --image B).

    Open them in a browser straight from disk; they need no network.
    """
    if (pair is None) == (not image):
        raise ConfigError("give either a PAIR index or two --image options, not both or neither")
    if image:
        if len(image) != 2:
            raise ConfigError(f"--image: give exactly two photos, got {len(image)}")
        pages = viz_images(
            image[0], image[1], probes, out, checkpoint=checkpoint, stride=stride, query=query, device=device
        )
    else:
        pages = viz_pair(renders, features, probes, pair, out, stride=stride, query=query, device=device)
    for page in pages:
        log.info("wrote %s", page)
