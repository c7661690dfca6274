"""The evaluation's CSV files: curves for `dvc plots` and per-pair tables for further analysis.

plots/: one row per location (or block, or threshold), one column per method, so
`dvc plots` can draw several methods on one x axis (`index`, the location's position in
forward order: dvc's templates want a numeric x; `location` names it); binned.csv is long (one row per bin,
method, location and metric). pairs/: one row per pair and everything it was scored on,
with the pair's scene, split, overlap and rotation beside it. The aggregation helpers that
metrics.json shares with these tables (`summarise`, `at_best_heads`, `pair_register_heads`)
live here too, so both read the same numbers.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.jobs.eval_params import EvaluateParams
from pipeline.jobs.eval_pointmaps import METRICS
from pipeline.metrics.bootstrap import binned_means, bootstrap_mean
from pipeline.metrics.correspondence import best_heads
from pipeline.metrics.registers import register_heads

if TYPE_CHECKING:
    from pipeline.jobs.evaluate import PairResults

DIRECTIONS = ("v1_to_v2", "v2_to_v1")
PLOT_METRICS = ("ssi_error", "procrustes_v2_error", "depth_abs_rel", "depth_delta1")
SUFFIXES = ("", "_lo", "_hi")  # a mean and its interval's ends, as metrics.json names them
STAT_FIELDS = ("mean", "low", "high")  # the `bootstrap_mean` fields behind SUFFIXES


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def _value(d: dict, key: str) -> Any:
    v = d.get(key)
    return "" if v is None else v


def write_plots(results: PairResults, metrics: dict[str, Any], params: EvaluateParams, out: Path) -> None:
    """plots/<metric>.csv per location, contributions, correspondence per block and curves, registers."""
    pm = metrics["pointmap"]
    order = list(dict.fromkeys(loc for m in pm.values() for loc in m))
    for metric in PLOT_METRICS:
        methods = [name for name, per_loc in pm.items() if any(metric in v for v in per_loc.values())]
        cols = [f"{m}{s}" for m in methods for s in SUFFIXES]
        rows = [
            [i, loc] + [_value(pm[m].get(loc, {}), f"{metric}{s}") for m in methods for s in SUFFIXES]
            for i, loc in enumerate(order)
        ]
        write_csv(out / "plots" / f"{metric}.csv", ["index", "location", *cols], rows)
    contrib = metrics["contributions"]
    if contrib:
        blocks = list(next(iter(contrib.values()))["per_block"])
        cols = [f"{m}{s}" for m in contrib for s in SUFFIXES]
        rows = [
            [i, loc] + [_value(contrib[m][f"per_block{s}"], loc) for m in contrib for s in SUFFIXES]
            for i, loc in enumerate(blocks)
        ]
        write_csv(out / "plots" / "contributions.csv", ["index", "location", *cols], rows)
    corr = metrics["correspondence"]
    key = f"accuracy_{params.headline_px:g}px"
    sources = [s for s in ("attention", "attention_compact") if s in corr]
    if sources:
        cross = list(corr[sources[0]][DIRECTIONS[1]])
        cols = [f"{s}_{d}" for s in sources for d in DIRECTIONS]
        rows = [
            [i, loc] + [_value(corr[s][d][loc], key) for s in sources for d in DIRECTIONS]
            for i, loc in enumerate(cross)
        ]
        write_csv(out / "plots" / "correspondence_blocks.csv", ["index", "location", *cols], rows)
        acc = results.attention["attention_compact"]  # (P, V, C, A, T)
        curve = summarise(at_best_heads(acc, best_heads(acc, params.headline_index)), params)  # (V, C, T)
        cols = [f"{loc}_{d}{s}" for d in DIRECTIONS for loc in cross for s in SUFFIXES]
        rows = [
            [t] + [curve[f][v, c, i] for v in range(2) for c in range(len(cross)) for f in STAT_FIELDS]
            for i, t in enumerate(params.thresholds_px)
        ]
        write_csv(out / "plots" / "correspondence_curve.csv", ["threshold_px", *cols], rows)
    sim = corr["similarity"]
    rows = [
        [i, loc] + [_value(sim[d][loc], key) for d in DIRECTIONS]
        for i, loc in enumerate(results.similarity_locations)
    ]
    write_csv(out / "plots" / "correspondence_similarity.csv", ["index", "location", *DIRECTIONS], rows)
    regs = metrics["registers"]
    fields = [
        f + s
        for f in ("pairs_with_sinks", "sinks_per_pair", "top_token_share", "sink_high_norm_overlap")
        for s in SUFFIXES
    ]
    rows = [
        [view, loc, len(r["register_heads"])] + [_value(r, f) for f in fields]
        for view, per_loc in regs.items()
        for loc, r in per_loc.items()
    ]
    write_csv(out / "plots" / "registers.csv", ["view", "location", "n_register_heads", *fields], rows)


def at_best_heads(values: np.ndarray, best: np.ndarray) -> np.ndarray:
    """Per-pair values (P, V, C, A, ...) of each block's chosen head best (V, C): (P, V, C, ...)."""
    index = best.reshape(1, *best.shape, 1, *[1] * (values.ndim - 4))
    return np.take_along_axis(values, index, 3)[:, :, :, 0]


def pair_register_heads(results: PairResults, params: EvaluateParams) -> np.ndarray:
    """(P, V, La, A) bool: which heads are register heads in each pair, by params' thresholds."""
    return register_heads(
        results.registers["independence"],
        results.registers["topk_mass"],
        min_independence=params.register_min_independence,
        min_topk_mass=params.register_min_topk_mass,
    )


def summarise(values: np.ndarray, params: EvaluateParams) -> dict[str, np.ndarray]:
    """`bootstrap_mean` of (P, ...) per-pair values, reshaped back to (...)."""
    out = bootstrap_mean(
        values.reshape(len(values), -1), n_boot=params.n_boot, confidence=params.confidence, seed=params.seed
    )
    return {k: v.reshape(values.shape[1:]) for k, v in out.items()}


def binned_columns(
    results: PairResults, params: EvaluateParams
) -> tuple[list[tuple[str, str, str]], np.ndarray]:
    """Every per-pair metric as (method, location, metric) columns of a (P, M) table.

    Pointmap and depth metrics of every method and location; the headline accuracy and
    mean pixel error of each block's best head (both sources) and of the similarity
    baseline, per direction;
    and per attention map and view, the pair's count of register heads and of sink tokens.
    """
    columns: list[tuple[str, str, str]] = []
    values: list[np.ndarray] = []
    for method, m in results.methods.items():
        for metric in METRICS:
            if not np.isnan(m["values"][metric]).all():
                columns += [(method, loc, metric) for loc in m["locations"]]
                values.append(m["values"][metric])
    key, h = f"accuracy_{params.headline_px:g}px", params.headline_index
    for metric, sim in (
        (key, results.attention["similarity"][..., h]),
        ("mean_error_px", results.attention["similarity_error_px"]),
    ):
        columns += [
            ("similarity", loc, f"{metric}_{d}") for d in DIRECTIONS for loc in results.similarity_locations
        ]
        values.append(sim.reshape(len(sim), -1))  # (P, V·L)
    if results.layout is not None:
        cross = [results.layout.attn_locations[i] for i in results.layout.cross]
        for source in ("attention", "attention_compact"):
            acc = results.attention[source]  # (P, V, C, A, T)
            if np.isnan(acc).all():
                continue
            best = best_heads(acc, h)  # (V, C)
            for metric, per_head in (
                (key, acc[..., h]),
                ("mean_error_px", results.attention[f"{source}_error_px"]),
            ):
                picked = at_best_heads(per_head, best)  # (P, V, C)
                columns += [
                    (f"{source}_best_head", loc, f"{metric}_{d}") for d in DIRECTIONS for loc in cross
                ]
                values.append(picked.reshape(len(picked), -1))
        r = results.registers
        is_reg = pair_register_heads(results, params)
        counts = {"n_register_heads": is_reg.sum(-1), "n_sinks": r["sinks"].sum(-1)}  # (P, V, La) each
        for metric, c in counts.items():
            columns += [
                ("registers", loc, f"{metric}_view{v + 1}")
                for v in range(2)
                for loc in results.layout.attn_locations
            ]
            values.append(c.reshape(len(c), -1).astype(np.float64))
    return columns, np.concatenate(values, 1)


def write_binned(results: PairResults, params: EvaluateParams, out: Path) -> None:
    """plots/binned.csv: every per-pair metric by overlap and rotation bins, with bootstrap intervals."""
    columns, table = binned_columns(results, params)
    boot = {"n_boot": params.n_boot, "confidence": params.confidence, "seed": params.seed}
    rows = []
    for by, edges in (("overlap", params.overlap_bins), ("rotation_deg", params.rotation_bins)):
        for b in binned_means(table, results.info[by].astype(np.float64), edges, **boot):
            for k, (method, loc, metric) in enumerate(columns):
                rows.append(
                    [
                        by,
                        b["low_edge"],
                        b["high_edge"],
                        method,
                        loc,
                        metric,
                        b["n"][k],
                        b["mean"][k],
                        b["low"][k],
                        b["high"][k],
                    ]
                )
    header = ["bin_by", "low_edge", "high_edge", "method", "location", "metric", "n", "mean", "low", "high"]
    write_csv(out / "plots" / "binned.csv", header, rows)


def write_pair_tables(results: PairResults, params: EvaluateParams, out: Path) -> None:
    """pairs/pointmap.csv, pairs/correspondence.csv, pairs/registers.csv, pairs/tokens.csv."""
    info = [
        [int(p)] + [results.info[k][i] for k in ("scene_id", "split", "overlap", "rotation_deg")]
        for i, p in enumerate(results.pairs)
    ]
    lead = ["pair", "scene_id", "split", "overlap", "rotation_deg"]
    rows = [
        info[i] + [method, loc] + [m["values"][k][i, j] for k in METRICS]
        for method, m in results.methods.items()
        for i in range(len(info))
        for j, loc in enumerate(m["locations"])
    ]
    write_csv(out / "pairs" / "pointmap.csv", [*lead, "method", "location", *METRICS], rows)
    acc_cols = [f"accuracy_{t:g}px" for t in params.thresholds_px]
    sim, sim_err = results.attention["similarity"], results.attention["similarity_error_px"]
    rows = [
        info[i] + ["similarity", d, loc, "", sim_err[i, v, j]] + list(sim[i, v, j])
        for i in range(len(info))
        for v, d in enumerate(DIRECTIONS)
        for j, loc in enumerate(results.similarity_locations)
    ]
    if results.layout is not None:
        cross = [results.layout.attn_locations[c] for c in results.layout.cross]
        for source in ("attention", "attention_compact"):
            acc, err = results.attention[source], results.attention[f"{source}_error_px"]
            rows += [
                info[i] + [source, d, loc, a, err[i, v, c, a]] + list(acc[i, v, c, a])
                for i in range(len(info))
                if not np.isnan(acc[i]).all()
                for v, d in enumerate(DIRECTIONS)
                for c, loc in enumerate(cross)
                for a in range(acc.shape[3])
            ]
    write_csv(
        out / "pairs" / "correspondence.csv",
        [*lead, "source", "direction", "location", "head", "mean_error_px", *acc_cols],
        rows,
    )
    if results.layout is None:
        return
    r, names = results.registers, results.layout.attn_locations
    rows = [
        info[i] + [v + 1, loc, a, r["independence"][i, v, j, a], r["topk_mass"][i, v, j, a]]
        for i in range(len(info))
        for v in range(2)
        for j, loc in enumerate(names)
        for a in range(r["independence"].shape[3])
    ]
    write_csv(
        out / "pairs" / "registers.csv",
        [*lead, "view", "location", "head", "independence", "topk_mass"],
        rows,
    )
    rows = [
        info[i]
        + [
            v + 1,
            loc,
            " ".join(map(str, np.flatnonzero(r["sinks"][i, v, j]))),
            " ".join(map(str, np.flatnonzero(r["high_norm"][i, v, j]))),
        ]
        for i in range(len(info))
        for v in range(2)
        for j, loc in enumerate(names)
    ]
    write_csv(
        out / "pairs" / "tokens.csv", [*lead, "view", "location", "sink_tokens", "high_norm_key_tokens"], rows
    )


def write_tables(results: PairResults, metrics: dict[str, Any], params: EvaluateParams, out: Path) -> None:
    """Every CSV file of the report folder."""
    write_plots(results, metrics, params, out)
    write_binned(results, params, out)
    write_pair_tables(results, params, out)
