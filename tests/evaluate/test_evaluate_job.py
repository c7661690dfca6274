"""evaluate end to end on tiny real stores: metrics.json, plots and per-pair tables with the expected keys."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.jobs.eval_inputs import BatchReader
from pipeline.jobs.eval_params import EvaluateParams
from pipeline.jobs.evaluate import run_evaluate
from pipeline.probing.locations import residual_locations

TINY_DEPTH = 4  # decoder blocks of the `tiny` model


@pytest.fixture(scope="module")
def report(stores: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("reports")
    params = EvaluateParams(splits=("test", "train"), batch_size=3, n_boot=50, device="cpu")
    summary = run_evaluate(
        stores["features"],
        stores["renders"],
        stores["correspondences"],
        stores["probes"],
        out,
        params,
        progress=False,
    )
    return out, summary


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_metrics_json_keys(report: tuple[Path, dict]) -> None:
    out, summary = report
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_pairs"] == 8
    locs = residual_locations(TINY_DEPTH)
    assert set(metrics["pointmap"]) == {"mlp", "linear", "depth-mlp", "lens"}
    assert set(metrics["pointmap"]["mlp"]) == set(locs)
    assert set(metrics["pointmap"]["lens"]) == set(locs[1:])  # the lens reads decoder locations only
    entry = metrics["pointmap"]["mlp"]["b01.cross"]
    for key in (
        "ssi_error",
        "ssi_error_lo",
        "ssi_error_hi",
        "ssi_error_v2",
        "procrustes_v2_error",
        "depth_delta1",
    ):
        assert isinstance(entry[key], float), key
    assert entry["ssi_error_lo"] <= entry["ssi_error"] <= entry["ssi_error_hi"]
    assert "ssi_error" not in metrics["pointmap"]["depth-mlp"]["b01.cross"]
    assert "depth_abs_rel" in metrics["pointmap"]["depth-mlp"]["b01.cross"]
    contrib = metrics["contributions"]["mlp"]
    assert set(contrib) == {f"{p}{s}" for p in ("per_block", "total") for s in ("", "_lo", "_hi")}
    assert set(contrib["total"]) == {"self", "cross", "mlp"}
    for part in ("per_block", "total"):
        for key, value in contrib[part].items():
            assert contrib[f"{part}_lo"][key] <= value <= contrib[f"{part}_hi"][key], key
    assert set(metrics["contributions"]) == {"mlp", "linear", "lens"}
    assert metrics["model"]["ssi_error"] >= 0
    corr = metrics["correspondence"]
    assert set(corr) == {"attention", "attention_compact", "similarity"}
    block = corr["attention_compact"]["v2_to_v1"]["b00.cross"]
    assert 0 <= block["best_head"] < 4 and 0 <= block["accuracy_16px"] <= 1
    assert len(block["head_accuracy_16px"]) == 4
    assert set(corr["similarity"]["v1_to_v2"]) == {"enc", *locs[1:]}
    reg = metrics["registers"]["view2"]["b02.self"]
    assert len(reg["register_head_share"]) == 4 and "top_token_share" in reg
    assert set(summary["timings"]) >= {"read", "pointmap_metrics", "correspondence", "registers", "total"}


def test_full_and_compact_attention_agree(report: tuple[Path, dict]) -> None:
    """Both sources score the same heads and nearly the same accuracies (exactly, but for float16 ties)."""
    out, _ = report
    corr = json.loads((out / "metrics.json").read_text())["correspondence"]
    rows = read_csv(out / "pairs" / "correspondence.csv")
    full = {
        (r["pair"], r["direction"], r["location"], r["head"]): r for r in rows if r["source"] == "attention"
    }
    compact = {
        (r["pair"], r["direction"], r["location"], r["head"]): r
        for r in rows
        if r["source"] == "attention_compact"
    }
    assert full and set(full) <= set(compact)
    # the full maps are float16: a row whose two largest weights round to one value may pick
    # another key (about 0.1% of rows), moving a pair's accuracy by a query or two at most
    same = [row["accuracy_16px"] == compact[key]["accuracy_16px"] for key, row in full.items()]
    assert sum(same) >= 0.95 * len(same)
    for key, row in full.items():
        assert abs(float(row["accuracy_16px"]) - float(compact[key]["accuracy_16px"])) <= 2 / 16 + 1e-6, key
    assert (
        corr["attention"]["v2_to_v1"]["b00.cross"].keys()
        == corr["attention_compact"]["v2_to_v1"]["b00.cross"].keys()
    )


def test_plots_and_pair_tables(report: tuple[Path, dict]) -> None:
    out, _ = report
    for name in (
        "ssi_error",
        "procrustes_v2_error",
        "depth_delta1",
        "contributions",
        "correspondence_blocks",
        "correspondence_curve",
        "correspondence_similarity",
        "registers",
        "binned",
    ):
        assert (out / "plots" / f"{name}.csv").is_file(), name
    ssi = read_csv(out / "plots" / "ssi_error.csv")
    assert ssi[0]["location"] == "enc" and {"mlp", "linear", "lens", "mlp_lo"} <= set(ssi[0])
    contrib = read_csv(out / "plots" / "contributions.csv")
    assert [r["location"] for r in contrib] == residual_locations(TINY_DEPTH)[2:]
    assert {"mlp", "mlp_lo", "mlp_hi", "lens_hi"} <= set(contrib[0])
    assert float(contrib[0]["mlp_lo"]) <= float(contrib[0]["mlp"]) <= float(contrib[0]["mlp_hi"])
    curve = read_csv(out / "plots" / "correspondence_curve.csv")
    assert [float(r["threshold_px"]) for r in curve] == list(EvaluateParams().thresholds_px)
    binned = read_csv(out / "plots" / "binned.csv")
    assert {r["bin_by"] for r in binned} == {"overlap", "rotation_deg"}
    assert (
        sum(
            int(r["n"])
            for r in binned
            if r["bin_by"] == "overlap" and r["method"] == "model" and r["metric"] == "ssi_error"
        )
        == 8
    )
    pairs = read_csv(out / "pairs" / "pointmap.csv")
    assert {"pair", "scene_id", "overlap", "rotation_deg", "method", "location", "ssi_error"} <= set(pairs[0])
    assert len({r["pair"] for r in pairs}) == 8
    assert (out / "pairs" / "registers.csv").is_file() and (out / "pairs" / "tokens.csv").is_file()


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_register_numbers_have_intervals_around_the_pair_table_means(report: tuple[Path, dict]) -> None:
    """Each register number is the mean of its per-pair values (pairs/*.csv), inside its interval."""
    out, _ = report
    regs = json.loads((out / "metrics.json").read_text())["registers"]
    rows = read_csv(out / "pairs" / "registers.csv")
    params = EvaluateParams()
    for view, loc in (("view1", "b00.self"), ("view2", "b02.cross")):
        entry = regs[view][loc]
        for head in range(4):
            mine = [
                r for r in rows if r["view"] == view[-1] and r["location"] == loc and r["head"] == str(head)
            ]
            indep = [float(r["independence"]) for r in mine]
            mass = [float(r["topk_mass"]) for r in mine]
            is_reg = [
                float(i >= params.register_min_independence and m >= params.register_min_topk_mass)
                for i, m in zip(indep, mass, strict=True)
            ]
            for name, values in (
                ("independence", indep),
                ("topk_mass", mass),
                ("register_head_share", is_reg),
            ):
                assert entry[name][head] == pytest.approx(_mean(values), abs=1e-6), (loc, name, head)
                assert (
                    entry[f"{name}_lo"][head]
                    <= entry[name][head] + 1e-12
                    <= entry[f"{name}_hi"][head] + 2e-12
                )
        tokens = [
            r
            for r in read_csv(out / "pairs" / "tokens.csv")
            if r["view"] == view[-1] and r["location"] == loc
        ]
        sinks = [r["sink_tokens"].split() for r in tokens]
        assert entry["sinks_per_pair"] == pytest.approx(_mean([len(t) for t in sinks]))
        assert entry["pairs_with_sinks"] == pytest.approx(_mean([float(bool(t)) for t in sinks]))
        for name in ("sinks_per_pair", "pairs_with_sinks", "top_token_share"):
            assert entry[f"{name}_lo"] <= entry[name] <= entry[f"{name}_hi"], name
    table = read_csv(out / "plots" / "registers.csv")
    assert {"sinks_per_pair_lo", "sink_high_norm_overlap_hi"} <= set(table[0])


def test_curve_and_head_accuracies_have_intervals(report: tuple[Path, dict]) -> None:
    """The curve of a block's best head is the mean of its per-pair curves; every point has an interval."""
    out, _ = report
    corr = json.loads((out / "metrics.json").read_text())["correspondence"]["attention_compact"]
    block = corr["v2_to_v1"]["b01.cross"]
    for lo, mean, hi in zip(
        block["head_accuracy_16px_lo"],
        block["head_accuracy_16px"],
        block["head_accuracy_16px_hi"],
        strict=True,
    ):
        assert lo <= mean <= hi
    pairs = [
        r
        for r in read_csv(out / "pairs" / "correspondence.csv")
        if r["source"] == "attention_compact"
        and r["direction"] == "v2_to_v1"
        and r["location"] == "b01.cross"
        and r["head"] == str(block["best_head"])
        and r["accuracy_8px"] != ""
    ]
    curve = read_csv(out / "plots" / "correspondence_curve.csv")
    point = next(r for r in curve if float(r["threshold_px"]) == 8)
    assert float(point["b01.cross_v2_to_v1"]) == pytest.approx(
        _mean([float(r["accuracy_8px"]) for r in pairs])
    )
    assert float(point["b01.cross_v2_to_v1_lo"]) <= float(point["b01.cross_v2_to_v1"])
    assert float(point["b01.cross_v2_to_v1"]) <= float(point["b01.cross_v2_to_v1_hi"])


def test_mean_pixel_errors_are_reported_per_head_and_for_the_baseline(report: tuple[Path, dict]) -> None:
    """A block's best head has a mean pixel error (the mean of its per-pair errors), every head one,
    and the similarity baseline one per location; all inside their intervals."""
    out, _ = report
    corr = json.loads((out / "metrics.json").read_text())["correspondence"]
    rows = read_csv(out / "pairs" / "correspondence.csv")
    for source in ("attention", "attention_compact"):
        block = corr[source]["v1_to_v2"]["b02.cross"]
        assert len(block["head_mean_error_px"]) == 4
        assert block["mean_error_px"] == block["head_mean_error_px"][block["best_head"]]
        mine = [
            float(r["mean_error_px"])
            for r in rows
            if (r["source"], r["direction"], r["location"], r["head"])
            == (source, "v1_to_v2", "b02.cross", str(block["best_head"]))
            and r["mean_error_px"] != ""
        ]
        assert block["mean_error_px"] == pytest.approx(_mean(mine), rel=1e-6)
        assert block["mean_error_px_lo"] <= block["mean_error_px"] <= block["mean_error_px_hi"]
    sim = corr["similarity"]["v2_to_v1"]["enc"]
    assert sim["mean_error_px_lo"] <= sim["mean_error_px"] <= sim["mean_error_px_hi"]
    assert sim["mean_error_px"] >= 0


def test_every_per_pair_metric_is_binned(report: tuple[Path, dict]) -> None:
    """binned.csv holds every pointmap and depth metric, the baselines and register counts; a bin's
    mean is the mean of the pairs whose overlap falls in it (pairs/pointmap.csv)."""
    out, _ = report
    binned = read_csv(out / "plots" / "binned.csv")
    kinds = {(r["method"], r["metric"]) for r in binned}
    for method in ("mlp", "linear", "lens", "model"):
        for metric in (
            "ssi_error",
            "ssi_error_v1",
            "ssi_error_v2",
            "procrustes_v2_error",
            "depth_abs_rel",
            "depth_delta1",
        ):
            assert (method, metric) in kinds, (method, metric)
    assert ("depth-mlp", "depth_delta1") in kinds and ("depth-mlp", "ssi_error") not in kinds
    assert ("similarity", "accuracy_16px_v2_to_v1") in kinds and (
        "similarity",
        "mean_error_px_v1_to_v2",
    ) in kinds
    assert ("attention_best_head", "mean_error_px_v2_to_v1") in kinds
    assert ("attention_compact_best_head", "accuracy_16px_v1_to_v2") in kinds
    assert ("registers", "n_sinks_view2") in kinds and ("registers", "n_register_heads_view1") in kinds
    pairs = [
        r
        for r in read_csv(out / "pairs" / "pointmap.csv")
        if r["method"] == "mlp" and r["location"] == "b02.mlp"
    ]
    for row in binned:
        if (row["bin_by"], row["method"], row["location"], row["metric"]) != (
            "overlap",
            "mlp",
            "b02.mlp",
            "depth_abs_rel",
        ):
            continue
        lo, hi = float(row["low_edge"]), float(row["high_edge"])
        inside = [
            float(p["depth_abs_rel"])
            for p in pairs
            if lo <= float(p["overlap"]) < hi or float(p["overlap"]) == hi == 1.0
        ]
        assert int(row["n"]) == len(inside)
        if inside:
            assert float(row["mean"]) == pytest.approx(_mean(inside), rel=1e-6)


def test_a_failed_read_ahead_is_raised_not_lost(
    stores: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Batches are read in a thread: an error there must end evaluate with that error."""
    real_read = BatchReader.read
    calls = []

    def failing_read(self: BatchReader, idx):
        calls.append(idx)
        if len(calls) == 2:
            raise OSError(f"chunk of pairs {list(idx)} unreadable")
        return real_read(self, idx)

    monkeypatch.setattr(BatchReader, "read", failing_read)
    params = EvaluateParams(splits=("test", "train"), batch_size=3, n_boot=10, device="cpu")
    with pytest.raises(OSError, match="unreadable"):
        run_evaluate(
            stores["features"],
            stores["renders"],
            stores["correspondences"],
            stores["probes"],
            tmp_path / "reports",
            params,
            progress=False,
        )
    assert not (tmp_path / "reports" / "metrics.json").exists()


def test_worker_processes_give_the_values_of_one_process(
    stores: dict[str, Path], report: tuple[Path, dict], tmp_path: Path
) -> None:
    """Two workers (6 and 2 of the 8 pairs, batches of 3) write the per-pair tables of one
    process, row for row; values agree to float rounding (sums over another thread count)."""
    out, _ = report
    params = EvaluateParams(splits=("test", "train"), batch_size=3, n_boot=50, device="cpu")
    args = (stores["features"], stores["renders"], stores["correspondences"], stores["probes"])
    summary = run_evaluate(*args, tmp_path, params, progress=False, workers=2)
    assert summary["n_pairs"] == 8
    tables = sorted(p.name for p in (out / "pairs").glob("*.csv"))
    assert tables == sorted(p.name for p in (tmp_path / "pairs").glob("*.csv")) and tables
    for name in tables:
        one, two = read_csv(out / "pairs" / name), read_csv(tmp_path / "pairs" / name)
        assert len(one) == len(two) > 0, name
        for row_one, row_two in zip(one, two, strict=True):
            assert row_one.keys() == row_two.keys()
            for key, value in row_one.items():
                try:
                    expected = float(value)
                except ValueError:
                    assert row_two[key] == value, (name, key)
                    continue
                assert float(row_two[key]) == pytest.approx(expected, rel=1e-4, abs=1e-6, nan_ok=True), (
                    name,
                    key,
                )


def test_workers_below_one_are_refused(stores: dict[str, Path], tmp_path: Path) -> None:
    params = EvaluateParams(splits=("test",), device="cpu")
    args = (stores["features"], stores["renders"], stores["correspondences"], stores["probes"])
    with pytest.raises(ConfigError, match="workers must be >= 1, got 0"):
        run_evaluate(*args, tmp_path, params, progress=False, workers=0)
