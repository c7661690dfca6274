"""`probe3r viz`: pages for a stored pair and for two photos run live; refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
import typer
import zarr
from typer.testing import CliRunner

from pipeline.errors import ConfigError, SchemaError
from pipeline.jobs.viz import viz_images, viz_pair
from pipeline.model.preprocess import load_image
from pipeline.probes.files import load_probes
from pipeline.viz.live import load_photo, model_for_probes
from stages.viz import viz
from tests.viz.conftest import canvas_content

app = typer.Typer()
app.command()(viz)
app.command("noop")(lambda: None)  # a second command keeps `viz` a sub-command, as in cli.py


def photos(stores: dict[str, Path], tmp_path: Path) -> tuple[Path, Path]:
    """The stored pair 0 saved as two 96 x 80 JPEGs: 'photos' of another size and aspect."""
    rgb = zarr.open_group(str(stores["renders"]), mode="r")["rgb"][0]
    paths = []
    for v in range(2):
        path = tmp_path / f"photo{v + 1}.jpg"
        PIL.Image.fromarray(rgb[v]).resize((96, 80)).save(path)
        paths.append(path)
    return paths[0], paths[1]


def test_viz_pair_writes_both_viewers(tiny_stores, tmp_path: Path) -> None:
    pages = viz_pair(
        tiny_stores["renders"], tiny_stores["features"], tiny_stores["probes"] / "mlp", 1, tmp_path
    )
    assert [p.name for p in pages] == ["pair_0001.html", "attention_0001.html"]
    assert all(p.stat().st_size > 10_000 for p in pages)


def test_viz_images_runs_the_probes_model_live(tiny_stores, screenshot, tmp_path: Path) -> None:
    a, b = photos(tiny_stores, tmp_path)
    pages = viz_images(a, b, tiny_stores["probes"] / "mlp", tmp_path / "out")
    assert [p.name for p in pages] == ["photos.html", "photos_attention.html"]
    html = pages[0].read_text()
    assert "random-init:tiny:0" in html and "photo1.jpg" in html
    area, drawn = canvas_content(screenshot(pages[0]))
    assert drawn > 0.01 * area


@pytest.mark.parametrize(
    ("photo_wh", "size"),
    [
        ((640, 480), (224, 224)),
        ((640, 480), (512, 512)),
        ((480, 640), (384, 512)),
        ((640, 480), (384, 512)),
        ((50, 90), (32, 48)),
    ],
)
def test_photos_come_at_exactly_the_probes_input_size(tmp_path: Path, photo_wh: tuple, size: tuple) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "p.png"
    PIL.Image.fromarray(rng.integers(0, 256, (photo_wh[1], photo_wh[0], 3), dtype=np.uint8)).save(path)
    x = load_photo(path, size)
    assert tuple(x.shape) == (1, 3, *size) and float(x.abs().max()) <= 1
    official = load_image(path, 512 if max(size) > 224 else 224)
    if tuple(official.shape[-2:]) == size:  # the official preprocessing, untouched, where it fits
        assert torch.equal(x, official)


def test_probes_refuse_a_model_with_other_weights(tiny_stores) -> None:
    probes = load_probes(tiny_stores["probes"] / "mlp")
    probes.meta["features"]["model_weights"] = "random-init:tiny:7"
    with pytest.raises(SchemaError, match="recorded model_weights 'random-init:tiny:7'"):
        model_for_probes(probes, where="config.json", checkpoint=None, device="cpu")


def test_cli_for_a_pair_and_its_refusals(tiny_stores, tmp_path: Path) -> None:
    runner = CliRunner()
    common = ["--renders", str(tiny_stores["renders"]), "--features", str(tiny_stores["features"])]
    common += ["--probes", str(tiny_stores["probes"] / "linear"), "--out", str(tmp_path)]
    result = runner.invoke(app, ["viz", "0", *common, "--stride", "1"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "pair_0000.html").is_file() and (tmp_path / "attention_0000.html").is_file()
    result = runner.invoke(app, ["viz", *common])
    assert isinstance(result.exception, ConfigError) and "either a PAIR index or two --image" in str(
        result.exception
    )
    result = runner.invoke(app, ["viz", "--image", str(tmp_path / "x.jpg"), *common])
    assert isinstance(result.exception, ConfigError) and "exactly two photos, got 1" in str(result.exception)
    np.testing.assert_equal(result.exit_code, 1)
