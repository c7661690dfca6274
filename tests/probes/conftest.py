"""Small synthetic probing problems: tokens that determine each patch's 3D points."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.probes.batches import TensorSource
from pipeline.store.features import FeatureLayout, create_features_store
from pipeline.store.writer import create_store

GRID, PATCH = (2, 2), 4  # 8x8-pixel views of 4 tokens


def synthetic_problem(n_pairs: int, widths: dict[str, int], *, seed: int = 0) -> dict:
    """Each patch sees a plane patch at a random depth; every location's tokens encode it linearly.

    Returns tensors for `TensorSource`: acts[location] (P, V, N, D), pts3d (P, V, H, W, 3)
    in view 1's frame (here simply each view's own points), depth (P, V, H, W, 1), valid.
    """
    g = torch.Generator().manual_seed(seed)
    n = GRID[0] * GRID[1]
    H, W = GRID[0] * PATCH, GRID[1] * PATCH
    latent = torch.randn(n_pairs, 2, n, 3, generator=g)  # per patch: depth offset and slopes
    depth = 3.0 + 0.5 * latent[..., 0]
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, PATCH), torch.linspace(-1, 1, PATCH), indexing="ij")
    z = depth[..., None, None] + 0.3 * (latent[..., 1, None, None] * yy + latent[..., 2, None, None] * xx)
    z = z.reshape(n_pairs, 2, *GRID, PATCH, PATCH).permute(0, 1, 2, 4, 3, 5).reshape(n_pairs, 2, H, W)
    v, u = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    pts3d = torch.stack([(u - W / 2) / W * z, (v - H / 2) / H * z, z], -1)
    acts = {}
    for loc, d in widths.items():
        mix = torch.randn(3, d, generator=g)
        acts[loc] = latent @ mix + 0.05 * torch.randn(n_pairs, 2, n, d, generator=g)
    valid = torch.rand(n_pairs, 2, H, W, generator=g) > 0.1
    return {"acts": acts, "pts3d": pts3d, "depth": z[..., None], "valid": valid}


@pytest.fixture
def problem() -> dict:
    return synthetic_problem(48, {"enc": 24, "b00.self": 16, "b00.cross": 16})


@pytest.fixture
def make_source() -> Callable[..., TensorSource]:
    """make_source(problem, pairs, batch_size, seed=0): batches of the pairs in `pairs` (a range)."""

    def make(problem: dict, pairs: range, batch_size: int, seed: int = 0) -> TensorSource:
        return TensorSource(
            **problem, pairs=np.arange(len(problem["valid"]))[pairs], batch_size=batch_size, seed=seed
        )

    return make


@pytest.fixture
def layout() -> dict:
    """ProbeSpec keywords matching `synthetic_problem`."""
    return {"grid": GRID, "patch_size": PATCH}


def write_tiny_stores(
    root: Path, problem: dict, splits: list[str], dec_locations: list[str]
) -> tuple[Path, Path]:
    """A renders store and a features store holding `problem` (pairs of 8x8 views, 4 tokens)."""
    n = len(splits)
    H, W = problem["valid"].shape[-2:]
    renders = root / "renders.zarr"
    r = create_store(
        renders,
        "renders",
        sizes={"pair": n, "y": H, "x": W},
        pairs_per_shard=8,
        attrs={"params": {"seed": 0}, "n_pairs": n, "pairs_per_shard": 8, "image_size": [H, W]},
        coords={"view": np.array([1, 2])},
    )
    r["pts3d_view1"][:] = problem["pts3d"].numpy()
    r["depth"][:] = problem["depth"][..., 0].numpy()
    r["valid"][:] = problem["valid"].numpy()
    r["status"][:] = 1
    r["split"][:] = np.array(splits, dtype=np.dtypes.StringDType())
    layout = FeatureLayout(
        n_pairs=n,
        pairs_per_shard=8,
        locations=tuple(dec_locations),
        attn_locations=(),
        image_size=(H, W),
        patch_grid=GRID,
        enc_dim=problem["acts"]["enc"].shape[-1],
        dec_dim=problem["acts"][dec_locations[0]].shape[-1],
        n_heads=2,
    )
    features = root / "features.zarr"
    f = create_features_store(
        features, layout, attrs={"renders": {"params": {"seed": 0}}, "model_name": "synthetic"}
    )
    f["enc"][:] = problem["acts"]["enc"].numpy().astype(np.float16)
    f["acts"][:] = np.stack([problem["acts"][loc].numpy() for loc in dec_locations], 2).astype(np.float16)
    f["split"][:] = np.array(splits, dtype=np.dtypes.StringDType())
    f["status"][:] = 1
    return features, renders


@pytest.fixture
def tiny_stores(tmp_path: Path) -> tuple[Path, Path, dict]:
    """(features, renders, problem): 24 pairs, 16 train then 8 val; locations enc, dec_in, b00.self."""
    problem = synthetic_problem(24, {"enc": 24, "dec_in": 16, "b00.self": 16}, seed=5)
    features, renders = write_tiny_stores(
        tmp_path, problem, ["train"] * 16 + ["val"] * 8, ["dec_in", "b00.self"]
    )
    return features, renders, problem


@pytest.fixture
def rgb_renders(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """8 train pairs of random 32x32 images (and random targets) for live training."""
    path, n = tmp_path / "rgb_renders.zarr", 8
    g = np.random.default_rng(0)
    group = create_store(
        path,
        "renders",
        sizes={"pair": n, "y": 32, "x": 32},
        pairs_per_shard=4,
        attrs={"params": {}, "n_pairs": n, "image_size": [32, 32]},
        coords={"view": np.array([1, 2])},
    )
    rgb = g.integers(0, 256, (n, 2, 32, 32, 3), dtype=np.uint8)
    group["rgb"][:] = rgb
    group["pts3d_view1"][:] = g.normal(size=(n, 2, 32, 32, 3)).astype(np.float32) + np.array(
        [0, 0, 4], np.float32
    )
    group["depth"][:] = 4.0
    group["valid"][:] = True
    group["status"][:] = 1
    group["split"][:] = np.array(["train"] * n, dtype=np.dtypes.StringDType())
    return path, rgb
