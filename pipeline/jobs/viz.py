"""The viz job: the 4D pointmap viewer and the attention viewer for one pair.

Either a pair of the stores (renders + features + probes, with GT and the true cameras) or
the user's own two photos, run live through the model the probes were trained on (the
second camera is then placed from the model's own pointmaps).
"""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.probes.files import load_probes
from pipeline.probing.locations import attention_locations
from pipeline.store.writer import open_store
from pipeline.viz.attention_viewer import query_patch, write_attention_viewer
from pipeline.viz.live import identity_lines, load_photo, model_for_probes, run_live
from pipeline.viz.loaders import apply_probes, load_pair, pair_acts, pair_attention
from pipeline.viz.viewer4d import write_viewer4d


def _stream(points: dict) -> dict:
    """Residual-stream locations only: `.out` sublayer outputs are not states to play through."""
    return {k: v for k, v in points.items() if not k.endswith(".out")}


@torch.no_grad()
def viz_pair(
    renders: Path,
    features: Path,
    probes_dir: Path,
    pair: int,
    out: Path,
    *,
    stride: int = 2,
    query: int | None = None,
    device: str = "cpu",
) -> list[Path]:
    """Write out/pair_XXXX.html (4D viewer) and out/attention_XXXX.html for a stored pair.

    Args:
        renders, features: the stores.
        probes_dir: one probe set folder (probes.safetensors + config.json).
        pair: the pair index.
        out: folder for the pages.
        stride: pixel subsampling of the 4D viewer.
        query: first query patch of the attention viewer (None: centre).
        device: where the probes run.

    Returns:
        the pages written (the attention page only when the store holds attention maps).
    """
    grid = tuple(open_store(features, "features").attrs["patch_grid"])
    query = query_patch(query, grid)  # a bad query stops here, before any work
    probes = load_probes(probes_dir, device=device)
    view = load_pair(renders, pair, features=features)
    points, conf = apply_probes(probes, pair_acts(features, pair, probes.spec.locations))
    pages = [write_viewer4d(out / f"pair_{pair:04d}.html", view, _stream(points), conf, stride=stride)]
    attention = pair_attention(features, pair)
    if attention:
        pages.append(
            write_attention_viewer(
                out / f"attention_{pair:04d}.html",
                view.rgb,
                attention,
                grid=grid,
                query=query,
                title=view.title,
                identity=view.identity,
            )
        )
    return pages


def viz_images(
    image1: Path,
    image2: Path,
    probes_dir: Path,
    out: Path,
    *,
    checkpoint: Path | None = None,
    stride: int = 2,
    query: int | None = None,
    device: str = "cpu",
) -> list[Path]:
    """Write out/photos.html (4D viewer) and out/photos_attention.html for two photos.

    Args:
        image1, image2: the photos; image1 is the reference view.
        probes_dir: one pointmap probe set folder.
        out: folder for the pages.
        checkpoint: the DUSt3R checkpoint the probes were trained on, when not at the
            path their config.json records (must hash the same).
        stride, query, device: as `viz_pair`.

    Raises:
        SchemaError: the rebuilt model is not the one the probes were trained on.
    """
    probes = load_probes(probes_dir, device=device)
    grid = tuple(probes.spec.grid)  # the probes' input, which may differ from the model's img_size
    size = (grid[0] * probes.spec.patch_size, grid[1] * probes.spec.patch_size)
    img1, img2 = load_photo(image1, size), load_photo(image2, size)  # checks the files before the model
    query = query_patch(query, grid)
    model, weights = model_for_probes(
        probes, where=str(probes_dir / "config.json"), checkpoint=checkpoint, device=device
    )
    result = run_live(
        model,
        probes,
        img1,
        img2,
        attention=attention_locations(model.config.dec_depth),
        title=f"{image1.name} · {image2.name}",
        identity={"images": f"{image1}, {image2}", **identity_lines(weights, probes_dir)},
    )
    pair = result.pair
    pages = [write_viewer4d(out / "photos.html", pair, _stream(result.points), result.conf, stride=stride)]
    pages.append(
        write_attention_viewer(
            out / "photos_attention.html",
            pair.rgb,
            result.attention,
            grid=grid,
            query=query,
            title=pair.title,
            identity=pair.identity,
        )
    )
    return pages
