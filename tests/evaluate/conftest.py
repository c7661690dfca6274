"""Tiny real stores for the evaluate and intervene tests: render → extract → correspond → probes.

Built once per session (about 20 s on 2 cores): 8 procedural pairs at 64x64 (the `tiny`
model's 4x4 patch grid), the `tiny` random model, and mlp, linear and depth-mlp probe
sets trained a few steps at every location.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.jobs.correspond import run_correspond
from pipeline.jobs.extract import run_extract
from pipeline.jobs.extract_params import ExtractParams
from pipeline.jobs.render import RenderParams, run_render
from pipeline.jobs.train_probes import TrainProbesParams, run_train_probes


@pytest.fixture(scope="session")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval_stores")
    paths = {name: root / f"{name}.zarr" for name in ("renders", "features", "correspondences")}
    paths["probes"] = root / "probes"
    render = RenderParams.from_dict(
        {
            "n_pairs": 8,
            "pairs_per_scene": 2,
            "pairs_per_shard": 4,
            "split_fractions": [0.5, 0.0, 0.5],
            "height": 64,
            "width": 64,
            "overlap": [0.1, 1.0],
            "min_clearance": 0.2,
        }
    )
    run_render(paths["renders"], render)
    extract = ExtractParams(
        model="tiny", pairs_per_shard=4, batch_size=4, device="cpu", full_attention_splits=("test",)
    )
    run_extract(paths["renders"], paths["features"], extract)
    run_correspond(paths["renders"], paths["correspondences"], patch_size=16)
    common = {
        "steps": 3,
        "batch_size": 2,
        "hidden": 32,
        "val_every": 3,
        "checkpoint_every": 3,
        "device": "cpu",
    }
    for head, kinds in (("pointmap", ["mlp", "linear"]), ("depth", ["mlp"])):
        params = TrainProbesParams.from_dict(
            {**common, "kinds": kinds, "head": head, "train_splits": ["train"]}
        )
        run_train_probes(
            paths["features"],
            paths["renders"],
            paths["probes"],
            params,
            curves_dir=root / f"curves-{head}",
            progress=False,
        )
    return paths
