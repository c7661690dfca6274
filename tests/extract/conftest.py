"""Tiny renders stores for extract tests, written straight through the renders schema.

The render job needs scenes and the ray caster; these tests only need images, splits and
statuses, so they write the renders arrays directly (the schema is the same one).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.jobs.extract_params import ExtractParams
from pipeline.store.writer import create_store

SIZE = 64  # the tiny model's 4 x 4 patch grid


def make_renders(path: Path, *, n_pairs: int = 6, failed: tuple[int, ...] = (3,), seed: int = 0) -> Path:
    """A complete renders store: smooth random images, alternating train/test splits."""
    group = create_store(
        path,
        "renders",
        sizes={"pair": n_pairs, "y": SIZE, "x": SIZE},
        pairs_per_shard=4,
        attrs={
            "params": {"seed": seed, "n_pairs": n_pairs},
            "n_pairs": n_pairs,
            "pairs_per_shard": 4,
            "image_size": [SIZE, SIZE],
            "camera_convention": "opencv",
            "complete": True,
            "failed_scenes": [],
        },
        coords={"view": np.array([1, 2])},
    )
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (n_pairs, 2, 8, 8, 3), dtype=np.uint8)
    group["rgb"][:] = coarse.repeat(8, axis=2).repeat(8, axis=3)
    group["scene_id"][:] = np.array([f"scene{i // 2}" for i in range(n_pairs)], dtype=np.dtypes.StringDType())
    group["split"][:] = np.array(["train", "test"] * (n_pairs // 2), dtype=np.dtypes.StringDType())
    status = np.ones(n_pairs, np.uint8)
    status[list(failed)] = 2
    group["status"][:] = status
    return path


def tiny_params(**kw) -> ExtractParams:
    return ExtractParams(**{"model": "tiny", "pairs_per_shard": 2, "batch_size": 2, "device": "cpu", **kw})


@pytest.fixture
def renders(tmp_path: Path) -> Path:
    return make_renders(tmp_path / "renders.zarr")
