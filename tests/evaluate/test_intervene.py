"""intervene on tiny real stores: empty knockout changes nothing, all-keys knockout = head ablation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.jobs.eval_pointmaps import METRICS
from pipeline.jobs.intervene import InterveneParams, parse_knockout, run_intervene

BASE = {"splits": ("test",), "n_pairs": 3, "n_boot": 20, "device": "cpu", "save_locations": ("b01.cross",)}


def run(stores: dict[str, Path], out: Path, knockouts: tuple[str, ...]) -> dict:
    params = InterveneParams(knockouts=knockouts, **BASE)
    return run_intervene(stores["features"], stores["renders"], stores["probes"], out, params)


def test_empty_knockout_reproduces_the_plain_metrics(stores: dict[str, Path], tmp_path: Path) -> None:
    result = run(stores, tmp_path, ())
    for method, per_loc in result["methods"].items():
        for loc, entry in per_loc.items():
            for key in METRICS:
                if key in entry:
                    assert entry[f"{key}_change"] == 0.0, (method, loc, key)
                    assert entry[f"{key}_knocked"] == entry[key]
    with (tmp_path / "pairs.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert all(r["ssi_error"] == r["ssi_error_knocked"] for r in rows)
    saved = np.load(tmp_path / "pointmaps.npz")
    np.testing.assert_array_equal(saved["model/output/plain"], saved["model/output/knocked"])
    assert saved["mlp/b01.cross/plain"].shape == (3, 2, 64, 64, 3)
    assert json.loads((tmp_path / "metrics.json").read_text())["knockouts"] == []


def test_knocking_out_every_key_equals_ablating_the_head(stores: dict[str, Path], tmp_path: Path) -> None:
    keys = run(stores, tmp_path / "keys", ("b01.self:heads=2:keys=all:views=2",))
    ablate = run(stores, tmp_path / "ablate", ("b01.self:heads=2:ablate:views=2",))
    a, b = np.load(tmp_path / "keys" / "pointmaps.npz"), np.load(tmp_path / "ablate" / "pointmaps.npz")
    assert np.abs(a["model/output/knocked"] - a["model/output/plain"]).max() > 1e-4  # it did change something
    np.testing.assert_allclose(a["model/output/knocked"], b["model/output/knocked"], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(a["mlp/b01.cross/knocked"], b["mlp/b01.cross/knocked"], atol=1e-5, rtol=1e-5)
    ka, kb = keys["methods"]["model"][""], ablate["methods"]["model"][""]
    assert ka["ssi_error_knocked"] == pytest.approx(kb["ssi_error_knocked"], rel=1e-4)


def test_paper_knockout_runs_and_view1_is_untouched_in_block0(
    stores: dict[str, Path], tmp_path: Path
) -> None:
    result = run(stores, tmp_path, ("b02.self:heads=0,3:top_k=5:views=2",))
    mlp = result["methods"]["mlp"]
    # the knockout is in view 2's block 2: view 1's stream before block 2 cannot change
    assert mlp["b01.mlp"]["ssi_error_v1_change"] == 0.0
    assert "procrustes_v2_error_change_lo" in mlp["b03.mlp"]


@pytest.mark.parametrize(
    "spec,match",
    [
        ("b2.self:heads=0:top_k=5", "Did you mean 'b02.self'"),
        ("b02.self:top_k=5", "give the heads"),
        ("b02.self:heads=0", "exactly one of keys= and top_k="),
        ("b02.self:heads=0:topk=5", "unknown field 'topk'"),
        ("b02.self:heads=a:top_k=5", "comma-separated integers"),
        ("b02.self:heads=:top_k=5", "give the heads"),
        ("b02.self:heads=0,-1:top_k=5", r"heads \[-1\] out of range 0\.\.1"),
        ("b02.self:heads=2:top_k=5", r"heads \[2\] out of range 0\.\.1"),
        ("b02.self:heads=0:top_k=x", "comma-separated integers"),
        ("b02.self:heads=0:top_k=0", r"top_k must be one integer in 1\.\.16"),
        ("b02.self:heads=0:keys=3,16", r"keys \[16\] out of range 0\.\.15"),
        ("b02.self:heads=0:top_k=5:views=3", "views must be 1, 2 or 1,2"),
        ("b02.self:heads=0:ablate:top_k=5", "ablate removes whole heads; it takes no keys or top_k"),
    ],
)
def test_knockout_strings_are_checked(spec: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_knockout(spec, dec_depth=4, n_tokens=16, n_heads=2)


def test_an_unknown_save_location_is_refused_by_name(stores: dict[str, Path], tmp_path: Path) -> None:
    params = InterveneParams(knockouts=(), **{**BASE, "save_locations": ("b1.cross",)})
    with pytest.raises(ConfigError, match=r"'b1\.cross'.*Did you mean 'b01\.cross'"):
        run_intervene(stores["features"], stores["renders"], stores["probes"], tmp_path, params)
