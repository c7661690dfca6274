"""Aggregate an evaluation's per-pair values and write metrics.json (headline numbers for `dvc metrics`).

Means come with percentile bootstrap intervals over pairs (`<metric>_lo`, `<metric>_hi`).
Metric keys use the location spelling of `pipeline/probing/locations.py`; view directions
are "v2_to_v1" (queries of view 2 attending to view 1's tokens) and "v1_to_v2".
The CSV files (curves, binned tables, per-pair tables) are written by `eval_tables`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.jobs.eval_params import EvaluateParams
from pipeline.jobs.eval_tables import pair_register_heads, summarise, write_tables
from pipeline.metrics.correspondence import best_heads, correspondence_heads
from pipeline.metrics.procrustes import bootstrap_contributions, contribution_locations
from pipeline.metrics.registers import sink_norm_overlap, sink_stability

if TYPE_CHECKING:
    from pipeline.jobs.evaluate import PairResults

DIRECTIONS = ("v1_to_v2", "v2_to_v1")  # index = the query view's index


def jsonable(value: Any) -> Any:
    """Nested numpy values → JSON types; NaN → None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [jsonable(v) for v in value]
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else float(value)
    return value


def with_interval(stats: dict[str, np.ndarray], name: str, index: tuple = ()) -> dict[str, float]:
    """{name: mean, name_lo: low, name_hi: high} at `index`."""
    return {name: stats["mean"][index], f"{name}_lo": stats["low"][index], f"{name}_hi": stats["high"][index]}


def pointmap_metrics(results: PairResults, params: EvaluateParams) -> dict[str, Any]:
    """metrics.json "pointmap", "model" and "contributions" sections."""
    pointmap: dict[str, dict[str, dict[str, float]]] = {}
    for method, m in results.methods.items():
        per_loc: dict[str, dict[str, float]] = {loc: {} for loc in m["locations"]}
        for metric, values in m["values"].items():
            if np.isnan(values).all():
                continue
            stats = summarise(values, params)
            for j, loc in enumerate(m["locations"]):
                per_loc[loc].update(with_interval(stats, metric, (j,)))
        pointmap[method] = per_loc
    model = pointmap.pop("model", {}).get("", {})
    return {"pointmap": pointmap, "model": model, "contributions": contribution_metrics(results, params)}


def contribution_metrics(results: PairResults, params: EvaluateParams) -> dict[str, Any]:
    """metrics.json "contributions": per method probed at dec_in and every block, with bootstrap intervals."""
    wanted = contribution_locations(results.dec_depth)
    out = {}
    for method, m in results.methods.items():
        errors = m["values"]["procrustes_v2_error"]
        if np.isnan(errors).all() or not set(wanted) <= set(m["locations"]):
            continue
        cols = [m["locations"].index(loc) for loc in wanted]
        out[method] = bootstrap_contributions(
            errors[:, cols],
            results.dec_depth,
            n_boot=params.n_boot,
            confidence=params.confidence,
            seed=params.seed,
        )
    return out


def correspondence_metrics(results: PairResults, params: EvaluateParams) -> dict[str, Any]:
    """metrics.json "correspondence": best head per block (chosen on headline accuracy), its accuracy and
    mean pixel error, every head's, correspondence heads, and the similarity baseline; all with intervals."""
    key = f"accuracy_{params.headline_px:g}px"
    h = params.headline_index
    out: dict[str, Any] = {}
    layout = results.layout
    if layout is not None:
        cross = [layout.attn_locations[i] for i in layout.cross]
        for source in ("attention", "attention_compact"):
            acc = results.attention[source]  # (P, V, C, A, T)
            if np.isnan(acc).all():
                continue
            stats = summarise(acc[..., h], params)  # (V, C, A)
            err = summarise(results.attention[f"{source}_error_px"], params)  # (V, C, A)
            best = best_heads(acc, h)  # (V, C)
            rule = correspondence_heads(
                stats["mean"],
                min_accuracy=params.corr_head_min_accuracy,
                min_ratio_to_best=params.corr_head_min_ratio,
            )
            out[source] = {
                d: {
                    loc: {
                        "best_head": int(best[v, c]),
                        **with_interval(stats, key, (v, c, int(best[v, c]))),
                        **with_interval(stats, "head_" + key, (v, c)),
                        **with_interval(err, "mean_error_px", (v, c, int(best[v, c]))),
                        **with_interval(err, "head_mean_error_px", (v, c)),
                        "correspondence_heads": np.flatnonzero(rule[v, c]),
                    }
                    for c, loc in enumerate(cross)
                }
                for v, d in enumerate(DIRECTIONS)
            }
    sim = summarise(results.attention["similarity"][..., h], params)  # (V, L)
    sim_err = summarise(results.attention["similarity_error_px"], params)  # (V, L)
    out["similarity"] = {
        d: {
            loc: with_interval(sim, key, (v, j)) | with_interval(sim_err, "mean_error_px", (v, j))
            for j, loc in enumerate(results.similarity_locations)
        }
        for v, d in enumerate(DIRECTIONS)
    }
    return out


def register_metrics(results: PairResults, params: EvaluateParams) -> dict[str, Any]:
    """metrics.json "registers": register heads and sink tokens per map and view, with bootstrap intervals.

    Per head (lists over heads): the share of pairs in which it is a register head, its
    query independence and top-k mass. Per map: the sink statistics of `sink_stability`
    and the share of sinks that are high-norm tokens (a ratio of two means over pairs, so
    its interval resamples both together). The most frequent sink token is chosen on all
    pairs; its share's interval holds that choice fixed.
    """
    if results.layout is None:
        return {}
    r = results.registers
    is_reg = pair_register_heads(results, params)
    stab = sink_stability(r["sinks"])
    top = np.maximum(stab["top_token"], 0)  # (V, La); its share is 0 where no token ever sinks
    per_pair = {
        "register_head_share": is_reg,  # (P, V, La, A)
        "independence": r["independence"],
        "topk_mass": r["topk_mass"],
        "pairs_with_sinks": r["sinks"].any(-1),  # (P, V, La)
        "sinks_per_pair": r["sinks"].sum(-1),
        "top_token_share": np.take_along_axis(r["sinks"], top[None, ..., None], -1)[..., 0],
    }
    stats = {name: summarise(v.astype(np.float64), params) for name, v in per_pair.items()}
    overlap = sink_norm_overlap(
        r["sinks"], r["high_norm"], n_boot=params.n_boot, confidence=params.confidence, seed=params.seed
    )
    share = stats["register_head_share"]["mean"]  # (V, La, A)
    out: dict[str, Any] = {}
    for v in range(2):
        out[f"view{v + 1}"] = {}
        for j, loc in enumerate(results.layout.attn_locations):
            entry: dict[str, Any] = {
                "register_heads": np.flatnonzero(share[v, j] >= params.register_min_pair_share),
                "top_token": stab["top_token"][v, j],
            }
            for name, st in stats.items():
                entry.update(with_interval(st, name, (v, j)))
            entry.update(with_interval(overlap, "sink_high_norm_overlap", (v, j)))
            out[f"view{v + 1}"][loc] = entry
    return out


def write_report(
    results: PairResults, params: EvaluateParams, out: Path, identity: dict[str, str]
) -> dict[str, Any]:
    """Write out/metrics.json and the CSV files; returns the metrics (JSON types).

    `identity` (model name and weights id of the features store) leads the file.
    """
    metrics = {
        **identity,
        "n_pairs": len(results.pairs),
        "splits": list(params.splits),
        "headline_px": params.headline_px,
        **pointmap_metrics(results, params),
        "correspondence": correspondence_metrics(results, params),
        "registers": register_metrics(results, params),
    }
    metrics = jsonable(metrics)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_tables(results, metrics, params, out)
    return metrics
