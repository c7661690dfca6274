"""The evaluate and intervene commands through a local typer app, reading a params file."""

from __future__ import annotations

import json
from pathlib import Path

import typer
import yaml
from typer.testing import CliRunner

from stages.evaluate import evaluate
from stages.intervene import intervene

app = typer.Typer()
app.command(name="evaluate")(evaluate)
app.command(name="intervene")(intervene)


def test_commands(stores: dict[str, Path], tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    sections = {
        "base": {"seed": 0, "device": "cpu"},
        "evaluate": {"splits": ["test"], "n_boot": 10, "probe_sets": ["linear"]},
        "intervene": {"n_pairs": 2, "n_boot": 10, "probe_sets": ["linear"]},
    }
    params.write_text(yaml.safe_dump(sections))
    paths = [f"--{k}={stores[k]}" for k in ("features", "renders")] + [f"--probes={stores['probes']}"]
    r = CliRunner().invoke(
        app,
        [
            "evaluate",
            f"--params={params}",
            *paths,
            f"--correspondences={stores['correspondences']}",
            f"--out={tmp_path / 'reports'}",
            "--max-pairs=2",
            "--batch-size=1",
            "--workers=2",  # a pair each
        ],
    )
    assert r.exit_code == 0, r.output
    metrics = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert metrics["n_pairs"] == 2 and set(metrics["pointmap"]) == {"linear", "lens"}
    r = CliRunner().invoke(app, ["evaluate", f"--params={params}", *paths, "--workers=0"])
    assert r.exit_code == 2 and "--workers" in r.output
    r = CliRunner().invoke(
        app,
        [
            "intervene",
            f"--params={params}",
            *paths,
            f"--out={tmp_path / 'iv'}",
            "--knockout=b01.cross:heads=1:top_k=2",
            "--pair=1",
        ],
    )
    assert r.exit_code == 0, r.output
    result = json.loads((tmp_path / "iv" / "metrics.json").read_text())
    assert result["pairs"] == [1] and result["knockouts"] == ["b01.cross:heads=1:top_k=2"]
