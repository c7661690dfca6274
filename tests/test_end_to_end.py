"""`dvc repro` of the whole pipeline on a tiny configuration, as a user runs it.

The repository's own dvc.yaml runs in a scratch git repo (code linked in, params shrunk to
a few 64x64 pairs and the `tiny` model), then `dvc metrics show` and `dvc plots show` read
what it wrote, and the outputs are checked against each other.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
import zarr

from pipeline.store.validate import validate_store

ROOT = Path(__file__).resolve().parents[1]
LINKED = ("pipeline", "stages", "cli.py", "store_schema.yaml")

TINY = {
    "render": {
        "n_pairs": 8,
        "pairs_per_scene": 2,
        "pairs_per_shard": 4,
        "height": 64,
        "width": 64,
        "overlap": [0.1, 1.0],
        "min_clearance": 0.2,
    },
    "extract": {"model": "tiny", "pairs_per_shard": 4, "batch_size": 4},
    "train_probes": {"steps": 3, "hidden": 16, "batch_size": 2, "val_every": 3, "checkpoint_every": 3},
    "evaluate": {"n_boot": 50},
    "intervene": {"n_pairs": 2, "n_boot": 50},
    "report": {"knockout_heads": [0, 3], "viewer_stride": 2},
}


def _dvc(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["dvc", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def repro(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("e2e")
    for name in LINKED:
        (work / name).symlink_to(ROOT / name)
    shutil.copy(ROOT / "dvc.yaml", work / "dvc.yaml")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    _dvc(["init", "-q"], work)
    _dvc(["config", "core.analytics", "false"], work)
    _dvc(["repro"], work)
    return work


def test_every_stage_ran_and_is_up_to_date(repro: Path) -> None:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    lock = yaml.safe_load((repro / "dvc.lock").read_text())["stages"]
    assert set(lock) == set(stages)
    assert "up to date" in _dvc(["status"], repro).stdout.lower()


def test_stores_are_valid_and_agree_on_pairs(repro: Path) -> None:
    for name in ("renders", "features", "correspondences"):
        assert validate_store(repro / "data" / f"{name}.zarr") == [], name
    renders = zarr.open_group(str(repro / "data/renders.zarr"), mode="r")
    features = zarr.open_group(str(repro / "data/features.zarr"), mode="r")
    assert renders.attrs["complete"] and features.attrs["complete"]
    assert features.attrs["n_pairs"] == renders.attrs["n_pairs"] == TINY["render"]["n_pairs"]
    assert features.attrs["model_weights"] == "random-init:tiny:0"
    assert (renders["status"][:] == 1).all()


def test_metrics_plots_probes_and_report_exist_and_say_random_init(repro: Path) -> None:
    metrics = json.loads((repro / "reports/metrics.json").read_text())
    assert metrics["n_pairs"] > 0 and "pointmap" in metrics
    assert metrics["model_weights"] == "random-init:tiny:0"
    intervene = json.loads((repro / "reports/intervene/metrics.json").read_text())
    assert intervene["model_weights"] == "random-init:tiny:0"
    assert "metrics.json" in _dvc(["metrics", "show"], repro).stdout
    _dvc(["plots", "show", "--json"], repro)
    for kind in ("mlp", "linear"):
        assert (repro / "models/probes" / kind / "probes.safetensors").is_file()
    html = (repro / "reports/report.html").read_text()
    assert "random-init" in html
    assert any((repro / "reports/viewers").glob("pair_*.html"))
