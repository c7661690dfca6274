"""Fixtures for viz tests: a synthetic pair, tiny real stores, and a headless-Chromium screenshot.

The real stores come from the project's own jobs (render at 64 x 64, extract with the tiny
random model, two training steps of small probes), so the loaders are tested on exactly
what the pipeline writes; they are built once per session (about 15 s).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from pipeline.viz.pair import PairView

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BACKGROUND = np.array([16, 20, 24])  # the 3D canvas's clear colour (static/viewer4d.js)


def synthetic_pair(size: int = 32) -> tuple[PairView, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Two views of a wavy wall, and 'probed' pointmaps that approach it block by block."""
    H = W = size
    v, u = np.mgrid[0:H, 0:W] + 0.5
    K = np.array([[0.9 * W, 0, W / 2], [0, 0.9 * W, H / 2], [0, 0, 1.0]])
    z = np.stack([3 + 0.3 * np.sin(u / 4), 3 + 0.3 * np.cos(v / 4)])
    gt = np.stack([(u - W / 2) / K[0, 0] * z, (v - H / 2) / K[1, 1] * z, z], -1)
    gt[1, ..., 0] += 0.4
    rgb = np.stack(
        [
            np.stack([u * 255 / W, v * 255 / H, 96 + 0 * u], -1),
            np.stack([255 - u * 255 / W, v * 255 / H, 40 + 0 * u], -1),
        ]
    ).astype(np.uint8)
    cams = np.stack([np.eye(4), np.eye(4)])
    cams[1, 0, 3] = 0.4
    rng = np.random.default_rng(0)
    probed = {f"b{b:02d}.mlp": gt + rng.normal(0, 0.5 / (b + 1), gt.shape) for b in range(4)}
    conf = {name: 1 + rng.random((2, H, W)) for name in probed}
    pair = PairView(
        rgb=rgb,
        valid=np.ones((2, H, W), bool),
        cam_to_view1=cams,
        intrinsics=np.stack([K, K]),
        gt=gt,
        model=gt * 1.05,
        model_conf=1 + rng.random((2, H, W)),
        title="synthetic wall",
        identity={"model": "random-init:tiny:0"},
    )
    return pair, probed, conf


@pytest.fixture
def pair_and_probes() -> tuple[PairView, dict[str, np.ndarray], dict[str, np.ndarray]]:
    return synthetic_pair()


@pytest.fixture(scope="session")
def tiny_stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """renders, features (tiny random model, full attention) and probes/{mlp,linear} for 2 pairs."""
    from pipeline.jobs.extract import run_extract
    from pipeline.jobs.extract_params import ExtractParams
    from pipeline.jobs.render import RenderParams, run_render
    from pipeline.jobs.train_probes import TrainProbesParams, run_train_probes

    root = tmp_path_factory.mktemp("viz_stores")
    render = {"n_pairs": 2, "pairs_per_scene": 2, "pairs_per_shard": 2, "height": 64, "width": 64}
    run_render(
        root / "renders.zarr", RenderParams.from_dict({**render, "overlap": [0.1, 1.0], "min_clearance": 0.2})
    )
    extract = ExtractParams(
        model="tiny",
        pairs_per_shard=2,
        batch_size=2,
        device="cpu",
        full_attention_splits=("train", "val", "test"),
    )
    run_extract(root / "renders.zarr", root / "features.zarr", extract)
    train = TrainProbesParams(
        kinds=("mlp", "linear"),
        hidden=16,
        steps=2,
        batch_size=2,
        device="cpu",
        train_splits=("train", "val", "test"),
        val_splits=("none",),
    )
    run_train_probes(
        root / "features.zarr",
        root / "renders.zarr",
        root / "probes",
        train,
        curves_dir=root / "curves",
        progress=False,
    )
    return {
        "root": root,
        "renders": root / "renders.zarr",
        "features": root / "features.zarr",
        "probes": root / "probes",
    }


@pytest.fixture
def screenshot(tmp_path: Path) -> Callable[[Path], np.ndarray]:
    """screenshot(html) → (H, W, 3) uint8 of the page in headless Chromium (800 x 600)."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (scripts/setup.sh installs it: apt-get install -y chromium)")

    def shoot(html: Path, size: tuple[int, int] = (800, 600)) -> np.ndarray:
        png = tmp_path / f"{html.stem}.png"
        cmd = [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            f"--screenshot={png}",
            f"--window-size={size[0]},{size[1]}",
            "--virtual-time-budget=3000",
            html.resolve().as_uri(),
        ]
        subprocess.run(cmd, capture_output=True, timeout=60, check=False)
        assert png.is_file(), f"chromium wrote no screenshot of {html}"
        return np.asarray(PIL.Image.open(png).convert("RGB"))

    return shoot


def canvas_content(shot: np.ndarray, background: np.ndarray = BACKGROUND) -> tuple[int, int]:
    """(canvas pixels, drawn pixels): the region of the canvas's clear colour and what is drawn in it.

    The canvas is found as the bounding box of clear-colour pixels; drawn pixels are those
    inside it that differ from the clear colour (the frame label's rows are left out).
    """
    bg = np.abs(shot.astype(int) - background).sum(-1) <= 6
    if bg.sum() < 1000:
        return 0, 0
    ys, xs = np.nonzero(bg)
    box = shot[ys.min() + 30 : ys.max() + 1, xs.min() : xs.max() + 1]
    inside = bg[ys.min() + 30 : ys.max() + 1, xs.min() : xs.max() + 1]
    return box.shape[0] * box.shape[1], int((~inside).sum())
