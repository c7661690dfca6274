"""`probe3r correspond` through a local typer app (cli.py is the integrator's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from typer.testing import CliRunner

from pipeline.store.writer import open_store
from stages.correspond import correspond


def test_stage_reads_params_and_overrides(tmp_path: Path, tiny_renders: tuple[Path, np.ndarray]) -> None:
    (tmp_path / "params.yaml").write_text("correspond:\n  patch_size: 8\n")
    app = typer.Typer()
    app.command()(correspond)
    args = ["--params", str(tmp_path / "params.yaml"), "--renders", str(tiny_renders[0])]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "c.zarr")])
    assert result.exit_code == 0, result.output
    assert open_store(tmp_path / "c.zarr", "correspondences").attrs["grid"] == [2, 2]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "d.zarr"), "--patch-size", "4"])
    assert result.exit_code == 0, result.output
    assert open_store(tmp_path / "d.zarr", "correspondences").attrs["grid"] == [4, 4]
