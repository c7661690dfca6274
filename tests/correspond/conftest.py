"""A tiny renders store with random correspondences, shared by the correspond tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pipeline.store.writer import create_store


def random_corr(rng: np.random.Generator, B: int, H: int, W: int) -> np.ndarray:
    """Random (u, v) with holes, plus one point exactly on the far border and one at the origin."""
    corr = np.empty((B, 2, H, W, 2), np.float32)
    corr[..., 0] = rng.uniform(0, W, (B, 2, H, W))
    corr[..., 1] = rng.uniform(0, H, (B, 2, H, W))
    corr[rng.random((B, 2, H, W)) < 0.3] = np.nan
    corr[0, 0, 0, 0] = (W, H)
    corr[0, 1, 0, 0] = (0.0, 0.0)
    return corr


@pytest.fixture
def corr_factory() -> Callable[..., np.ndarray]:
    return random_corr


@pytest.fixture
def tiny_renders(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """6 pairs of 16x16 views in shards of 4; pair 2's render failed and pair 5's is pending."""
    path = tmp_path / "renders.zarr"
    group = create_store(
        path,
        "renders",
        sizes={"pair": 6, "y": 16, "x": 16},
        pairs_per_shard=4,
        attrs={
            "params": {"seed": 0},
            "n_pairs": 6,
            "pairs_per_shard": 4,
            "image_size": [16, 16],
            "camera_convention": "opencv",
            "complete": False,
            "failed_scenes": [],
        },
        coords={"view": np.array([1, 2])},
    )
    corr = random_corr(np.random.default_rng(1), B=6, H=16, W=16)
    group["corr"][:] = corr
    group["status"][:] = np.array([1, 1, 2, 1, 1, 0], np.uint8)
    return path, corr
