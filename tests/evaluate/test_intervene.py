"""intervene on tiny real stores: its plain run scores what an independent path scores, a
knockout moves the metrics after it and nothing before it, all-keys knockout = head ablation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.errors import ConfigError
from pipeline.jobs.eval_params import EvaluateParams
from pipeline.jobs.eval_pointmaps import METRICS, batch_targets, score_rows
from pipeline.jobs.evaluate import evaluate_pairs
from pipeline.jobs.extract_model import store_model
from pipeline.jobs.intervene import InterveneParams, parse_knockout, run_intervene
from pipeline.probes.files import load_probes
from pipeline.probing.hooks import Site
from pipeline.store.writer import open_store

BASE = {"splits": ("test",), "n_pairs": 3, "n_boot": 20, "device": "cpu", "save_locations": ("b01.cross",)}
# float32 rounding (seen: <= 3e-7 relative): the references run other batch shapes, kernels
# (per-pixel probe rows, explicit vs fused attention in extract) and pixel orders
RTOL, ATOL = 1e-5, 1e-7
MOVED = 1e-3  # a relative change that is not rounding


def run(stores: dict[str, Path], out: Path, knockouts: tuple[str, ...]) -> dict:
    params = InterveneParams(knockouts=knockouts, **BASE)
    return run_intervene(stores["features"], stores["renders"], stores["probes"], out, params)


def pair_rows(out: Path) -> dict[tuple[str, str, str], np.ndarray]:
    """pairs.csv as (method, location, metric or metric_knocked) -> (P,) values, pairs in file order."""
    with (out / "pairs.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    table: dict[tuple[str, str, str], list[float]] = {}
    for r in rows:
        for key in METRICS:
            for col in (key, f"{key}_knocked"):
                table.setdefault((r["method"], r["location"], col), []).append(float(r[col]))
    return {k: np.array(v) for k, v in table.items()}


def stream_hook(model: nn.Module, location: str, view: int) -> nn.Module:
    """The model's hook-point module carrying `location` of `view` (read here with plain torch hooks)."""
    if location in ("enc", "dec_in"):
        return getattr(model, f"hook_{location}{view}")
    block, sublayer = location.split(".")
    blocks = model.dec_blocks if view == 1 else model.dec_blocks2
    return getattr(blocks[int(block[1:])], f"hook_{sublayer}")


@pytest.fixture(scope="module")
def plain_reference(stores: dict[str, Path]) -> tuple[np.ndarray, dict[tuple[str, str, str], np.ndarray]]:
    """The first 3 test pairs, and (method, location, metric) -> (3,) their plain metrics, not via intervene.

    The model's own output: evaluate's scores of the pointmaps extract stored (a separate
    forward pass, float32). Probes: evaluate's stored features are float16, so instead one
    live forward of all 3 pairs with the streams read by torch forward hooks (not `capture`),
    scored as evaluate scores them (`ProbeSet.at_pixels`, `score_rows`).
    """
    params = EvaluateParams(max_pairs=3, probe_sets=(), lens=False, device="cpu", thresholds_px=(16.0,))
    evaluated = evaluate_pairs(
        stores["features"],
        stores["renders"],
        stores["correspondences"],
        stores["probes"],
        params,
        progress=False,
    )
    ref = {("model", "", k): v[:, 0] for k, v in evaluated.methods["model"]["values"].items()}
    pairs = evaluated.pairs
    group, rgroup = open_store(stores["features"], "features"), open_store(stores["renders"], "renders")
    model = store_model(group, device="cpu", where="features")
    sets = {p.name: load_probes(p, device="cpu") for p in sorted(stores["probes"].iterdir()) if p.is_dir()}
    locations = sorted({loc for s in sets.values() for loc in s.spec.locations})
    streams: dict[tuple[str, int], torch.Tensor] = {}
    handles = [
        stream_hook(model, loc, view).register_forward_hook(
            lambda _m, _i, out, key=(loc, view): streams.__setitem__(key, out)
        )
        for loc in locations
        for view in (1, 2)
    ]
    rgb = torch.from_numpy(rgroup["rgb"].get_orthogonal_selection((pairs,)))
    img = rgb.permute(0, 1, 4, 2, 3).float() / 127.5 - 1
    try:
        with torch.no_grad():
            model(img[:, 0], img[:, 1])
    finally:
        for h in handles:
            h.remove()
    acts = {loc: torch.stack([streams[(loc, 1)], streams[(loc, 2)]], 1) for loc in locations}
    targets = batch_targets(
        *(
            torch.from_numpy(rgroup[k].get_orthogonal_selection((pairs,)))
            for k in ("pts3d_view1", "depth", "valid")
        )
    )
    for name, s in sets.items():
        with torch.no_grad():
            rows = s.at_pixels({loc: acts[loc] for loc in s.spec.locations}, [t.pixels for t in targets])
        scores = score_rows(rows, targets, head=s.spec.head.name, procrustes_scale=False)
        ref |= {(name, loc, k): v[:, j] for k, v in scores.items() for j, loc in enumerate(s.spec.locations)}
    return pairs, ref


def assert_plain_matches(got: dict, ref: dict, column: str = "") -> None:
    """Every (method, location, metric) of `ref` equals pairs.csv's `metric{column}` (NaN where NaN)."""
    for (method, loc, key), want in ref.items():
        have = got[(method, loc, key + column)]
        np.testing.assert_allclose(have, want, rtol=RTOL, atol=ATOL, err_msg=f"{method} {loc} {key}{column}")


def test_empty_knockout_scores_the_plain_metrics_of_an_independent_path(
    stores: dict[str, Path], plain_reference: tuple, tmp_path: Path
) -> None:
    """With no knockout, both of intervene's runs score every method, location and metric of
    every pair as evaluate scores the stored model output and a hook-read live pass (to float32
    rounding: RTOL), and the change is exactly 0."""
    pairs, ref = plain_reference
    result = run(stores, tmp_path, ())
    np.testing.assert_array_equal(result["pairs"], pairs)
    got = pair_rows(tmp_path)
    assert {(m, loc) for m, loc, _ in ref} == {(m, loc) for m, loc, _ in got}
    assert_plain_matches(got, ref)
    assert_plain_matches(got, ref, "_knocked")
    for per_loc in result["methods"].values():
        for entry in per_loc.values():
            assert all(entry[f"{k}_change"] == 0.0 for k in METRICS if k in entry)
    saved = np.load(tmp_path / "pointmaps.npz")
    np.testing.assert_array_equal(saved["model/output/plain"], saved["model/output/knocked"])
    assert saved["mlp/b01.cross/plain"].shape == (3, 2, 64, 64, 3)
    assert json.loads((tmp_path / "metrics.json").read_text())["knockouts"] == []


def test_a_knockout_moves_the_metrics_after_it_and_none_before(
    stores: dict[str, Path], plain_reference: tuple, tmp_path: Path
) -> None:
    """Ablating every head of b01.cross (both views): the plain run still scores the independent
    plain metrics; the knocked run scores exactly the plain values up to b01.self, and from
    b01.cross on the pointmap metrics of the model and both pointmap probe sets move by far more
    than rounding (the depth probes' aligned depth barely moves on this tiny random model)."""
    run(stores, tmp_path, ("b01.cross:heads=0,1,2,3:ablate",))
    got = pair_rows(tmp_path)
    assert_plain_matches(got, plain_reference[1])
    before = ["enc", "dec_in", "b00.self", "b00.cross", "b00.mlp", "b01.self"]
    after = ["b01.cross", "b01.mlp", "b02.self", "b02.cross", "b02.mlp", "b03.self", "b03.cross", "b03.mlp"]
    for method in ("mlp", "linear", "depth-mlp"):
        for loc in before:
            for key in METRICS:
                np.testing.assert_array_equal(got[(method, loc, f"{key}_knocked")], got[(method, loc, key)])
    for method, loc in [("model", ""), *((m, loc) for m in ("mlp", "linear") for loc in after)]:
        moved = [
            np.abs(got[(method, loc, f"{k}_knocked")] - got[(method, loc, k)]).max()
            / got[(method, loc, k)].max()
            for k in METRICS[:4]
        ]
        assert max(moved) > MOVED, (method, loc, moved)


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
        ("b02.self:heads=0:ablate:top_k=5", "ablate removes whole heads; it takes no keys"),
        ("b02.self:heads=0:ablate:renormalize", "ablate removes whole heads; it takes no keys"),
        ("b02.self:heads=0:top_k=5:renormalize=1", "renormalize is a flag and takes no value"),
    ],
)
def test_knockout_strings_are_checked(spec: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_knockout(spec, dec_depth=4, n_tokens=16, n_heads=2)


def test_renormalize_flag_rescales_only_the_knocked_rows() -> None:
    """`:renormalize` makes the knocked head's rows sum to 1 again, each the plain knockout's
    row over its sum; without the flag the rows keep their other weights (the paper's way)."""
    attn = torch.softmax(torch.randn(2, 2, 16, 16, generator=torch.Generator().manual_seed(0)), -1)
    site = Site("attention", "b02.self", 2)
    plain = parse_knockout("b02.self:heads=1:keys=0,3:views=2", dec_depth=4, n_tokens=16, n_heads=2)
    rescaled = parse_knockout(
        "b02.self:heads=1:keys=0,3:views=2:renormalize", dec_depth=4, n_tokens=16, n_heads=2
    )
    knocked, renormed = plain.fn(attn, loc=site), rescaled.fn(attn, loc=site)
    expected = attn[:, 1].clone()
    expected[..., [0, 3]] = 0
    torch.testing.assert_close(knocked[:, 1], expected)
    torch.testing.assert_close(renormed[:, 1], expected / expected.sum(-1, keepdim=True))
    torch.testing.assert_close(renormed[:, 1].sum(-1), torch.ones(2, 16))
    torch.testing.assert_close(renormed[:, 0], attn[:, 0], rtol=0, atol=0)  # other heads untouched


def test_an_unknown_save_location_is_refused_by_name(stores: dict[str, Path], tmp_path: Path) -> None:
    params = InterveneParams(knockouts=(), **{**BASE, "save_locations": ("b1.cross",)})
    with pytest.raises(ConfigError, match=r"'b1\.cross'.*Did you mean 'b01\.cross'"):
        run_intervene(stores["features"], stores["renders"], stores["probes"], tmp_path, params)
