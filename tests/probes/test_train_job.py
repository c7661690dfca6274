"""train-probes end to end on tiny stores: store-fed batches, probe files, curves, the stage."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from pipeline.errors import ConfigError, SchemaError, StoreNotFoundError
from pipeline.jobs.train_probes import TrainProbesParams, run_train_probes
from pipeline.probes.files import load_probes
from pipeline.probes.store_source import StoreSource
from stages.train_probes import train_probes


class TestStoreSource:
    def test_batches_hold_the_stored_features_and_targets(self, tiny_stores: tuple) -> None:
        features, renders, problem = tiny_stores
        src = StoreSource(features, renders, ["b00.self", "enc"], splits=["val"], batch_size=3, prefetch=1)
        assert list(src.pairs) == list(range(16, 24))
        assert src.widths == {"b00.self": 16, "enc": 24} and src.grid == (2, 2)
        batches = list(src.batches(loop=False))
        assert [len(b.valid) for b in batches] == [3, 3, 2]
        b = batches[1]
        idx = [19, 20, 21]
        torch.testing.assert_close(
            b.acts["b00.self"].float(), problem["acts"]["b00.self"][idx], atol=1e-2, rtol=1e-3
        )
        torch.testing.assert_close(b.acts["enc"].float(), problem["acts"]["enc"][idx], atol=1e-2, rtol=1e-3)
        torch.testing.assert_close(b.pts3d, problem["pts3d"][idx])
        assert torch.equal(b.valid, problem["valid"][idx])

    def test_unknown_location_is_named(self, tiny_stores: tuple) -> None:
        features, renders, _ = tiny_stores
        with pytest.raises(SchemaError, match=r"Unknown location 'b0.self'\. Did you mean 'b00.self'"):
            StoreSource(features, renders, ["b0.self"], splits=["train"], batch_size=2)


def test_job_writes_loadable_probe_sets_and_curves(tmp_path: Path, tiny_stores: tuple) -> None:
    features, renders, problem = tiny_stores
    params = TrainProbesParams(
        kinds=("mlp", "linear"), hidden=16, steps=4, batch_size=4, val_every=2, lr=1e-3
    )
    val = run_train_probes(
        features, renders, tmp_path / "probes", params, curves_dir=tmp_path / "curves", progress=False
    )
    assert set(val) == {"mlp", "linear"} and set(val["mlp"]) == {"enc", "dec_in", "b00.self"}
    assert not (tmp_path / "probes" / "checkpoint.pt").exists()
    probes = load_probes(tmp_path / "probes" / "mlp")
    assert probes.meta["features"]["model_name"] == "synthetic"
    assert probes.meta["final_loss"]["val"] == val["mlp"]
    assert probes.meta["training"]["pairs_seen"] == 16
    out = probes({k: v[:2] for k, v in problem["acts"].items()})
    assert out["enc"]["pred"].shape == (2, 2, 8, 8, 3) and out["enc"]["conf"].shape == (2, 2, 8, 8)
    with (tmp_path / "curves" / "train_loss.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and "linear/b00.self" in rows[0]
    assert json.loads((tmp_path / "curves" / "val_loss.json").read_text()) == val


def test_depth_probes_train_on_depth(tmp_path: Path, tiny_stores: tuple) -> None:
    features, renders, _ = tiny_stores
    params = TrainProbesParams(
        kinds=("linear",), head="depth", depth_beta=3.0, locations=("enc",), steps=2, batch_size=4
    )
    val = run_train_probes(
        features, renders, tmp_path / "p", params, curves_dir=tmp_path / "c", progress=False
    )
    assert set(val) == {"depth-linear"}
    assert load_probes(tmp_path / "p" / "depth-linear").spec.head.beta == 3.0


def test_pointmap_and_depth_probes_train_together_in_one_pass(tmp_path: Path, tiny_stores: tuple) -> None:
    features, renders, _ = tiny_stores
    params = TrainProbesParams(
        kinds=("linear",), depth_kinds=("linear",), locations=("enc",), steps=2, batch_size=4
    )
    val = run_train_probes(
        features, renders, tmp_path / "p", params, curves_dir=tmp_path / "c", progress=False
    )
    assert set(val) == {"linear", "depth-linear"}
    assert load_probes(tmp_path / "p" / "linear").spec.head.name == "pointmap"
    assert load_probes(tmp_path / "p" / "depth-linear").spec.head.name == "depth"
    with pytest.raises(ConfigError, match=r"a probe set is listed twice"):
        run_train_probes(
            features,
            renders,
            tmp_path / "q",
            TrainProbesParams(kinds=("linear",), head="depth", depth_kinds=("linear",), locations=("enc",)),
            curves_dir=tmp_path / "c2",
            progress=False,
        )


def test_params_refuse_unknown_keys_and_missing_probe_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train_probes: unknown parameter\(s\) \['hiden'\]"):
        TrainProbesParams.from_dict({"hiden": 3})
    with pytest.raises(StoreNotFoundError, match=r"no probes\.safetensors"):
        load_probes(tmp_path)


def test_stage_trains_with_overrides(tmp_path: Path, tiny_stores: tuple) -> None:
    features, renders, _ = tiny_stores
    (tmp_path / "params.yaml").write_text(
        "base:\n  seed: 0\n  device: cpu\ntrain_probes:\n  kinds: [linear]\n  steps: 50\n  batch_size: 4\n"
    )
    app = typer.Typer()
    app.command()(train_probes)
    args = ["--params", str(tmp_path / "params.yaml"), "--features", str(features), "--renders", str(renders)]
    args += ["--out", str(tmp_path / "probes"), "--curves", str(tmp_path / "curves")]
    result = CliRunner().invoke(app, [*args, "--steps", "2", "--locations", "dec_in", "--kinds", "mlp"])
    assert result.exit_code == 0, result.output
    probes = load_probes(tmp_path / "probes" / "mlp")
    assert probes.spec.locations == ("dec_in",) and probes.meta["training"]["steps"] == 2
    assert np.isfinite(list(probes.meta["final_loss"]["val"].values())).all()


def test_probe_files_of_another_format_or_shape_are_refused(tmp_path: Path, tiny_stores: tuple) -> None:
    features, renders, _ = tiny_stores
    params = TrainProbesParams(kinds=("linear",), steps=1, batch_size=4, lr=1e-3)
    run_train_probes(features, renders, tmp_path / "p", params, curves_dir=tmp_path / "c", progress=False)
    folder = tmp_path / "p" / "linear"
    tensors = load_file(str(folder / "probes.safetensors"))
    key = next(k for k in tensors if k.endswith(".bias"))
    save_file(
        {**tensors, key: tensors[key][:1].contiguous()}, str(folder / "probes.safetensors")
    )  # broadcastable
    with pytest.raises(SchemaError, match=rf"'{key}' has shape \(1,\), config\.json's spec gives"):
        load_probes(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "format_version": 99}))
    with pytest.raises(SchemaError, match=r"config\.json: format_version 99, this probe3r reads 1"):
        load_probes(folder)
