"""Read the evaluate stage's metrics.json (and plot CSVs) into the figure functions' inputs.

metrics.json (pipeline/jobs/eval_report.py) keeps each mean beside its bootstrap interval
as `<metric>`, `<metric>_lo`, `<metric>_hi`; sections are "pointmap" (method → location →
metrics), "contributions" (method → per_block/total), "correspondence" (source →
direction → "bXX.cross" → best head and accuracy; "similarity" → direction → location)
and "model". A missing section raises `SchemaError` naming it, so the report can say which
input is absent and still draw everything else.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import SchemaError, StoreNotFoundError
from pipeline.viz.figures import Stat, interval_text

QUERY_DIRECTION = "v2_to_v1"  # queries of view 2 attending to view 1, as in the paper


def stat(entry: Mapping[str, Any], metric: str) -> Stat | None:
    """The Stat of `metric` in a metrics.json entry, or None when it has no value."""
    mean = entry.get(metric)
    if mean is None:
        return None
    lo, hi = entry.get(f"{metric}_lo"), entry.get(f"{metric}_hi")
    return Stat(
        float(mean), float("nan") if lo is None else float(lo), float("nan") if hi is None else float(hi)
    )


def _section(metrics: Mapping[str, Any], *keys: str, where: str) -> Any:
    node: Any = metrics
    for i, key in enumerate(keys):
        if not isinstance(node, Mapping) or key not in node or node[key] in (None, {}):
            path = ".".join(keys[: i + 1])
            raise SchemaError(f"{where}: no '{path}' (did evaluate run with this probe set / these maps?)")
        node = node[key]
    return node


def per_location(metrics: Mapping[str, Any], method: str, metric: str, *, where: str) -> dict[str, Stat]:
    """location → Stat of `metric` for one method ("mlp", "linear", "lens", …)."""
    values = {
        loc: s
        for loc, entry in _section(metrics, "pointmap", method, where=where).items()
        if (s := stat(entry, metric))
    }
    if not values:
        raise SchemaError(f"{where}: pointmap.{method} has no '{metric}' at any location")
    return values


def aligned_error_inputs(
    metrics: Mapping[str, Any], method: str, *, where: str
) -> tuple[dict[str, Stat], dict[str, Stat], dict[str, Stat]]:
    """Fig. 4's inputs: Procrustes view-2 error per location, per-block contributions and their totals.

    Contributions keep their bootstrap intervals (`per_block_lo`, `per_block_hi`, …) where
    metrics.json has them (NaN bounds otherwise).
    """
    errors = per_location(metrics, method, "procrustes_v2_error", where=where)
    _section(metrics, "contributions", method, "per_block", where=where)
    contrib = metrics["contributions"][method]
    return (
        {k: v for k, v in errors.items() if not k.endswith(".out")},
        contribution_stats(contrib, "per_block"),
        contribution_stats(contrib, "total"),
    )


def contribution_stats(contrib: Mapping[str, Any], part: str) -> dict[str, Stat]:
    """key → Stat of metrics.json `contributions.<method>.<part>` with `<part>_lo`/`<part>_hi` bounds."""
    bounds = [contrib.get(f"{part}{s}", {}) for s in ("_lo", "_hi")]
    return {
        key: Stat(float(value), *(float("nan") if b.get(key) is None else float(b[key]) for b in bounds))
        for key, value in contrib.get(part, {}).items()
        if value is not None
    }


def ssi_inputs(
    metrics: Mapping[str, Any], methods: tuple[str, ...], *, where: str
) -> tuple[dict[str, dict[str, Stat]], dict[str, Stat] | None]:
    """Fig. 8's inputs: stream SSI error per probe set, and the first set's `.out` errors."""
    series, direct = {}, None
    for method in methods:
        try:
            values = per_location(metrics, method, "ssi_error", where=where)
        except SchemaError:
            continue
        series[method] = {k: v for k, v in values.items() if not k.endswith(".out")}
        outs = {k: v for k, v in values.items() if k.endswith(".out")}
        direct = direct or outs or None
    if not series:
        raise SchemaError(f"{where}: no SSI error for any of the probe sets {list(methods)}")
    return series, direct


def correspondence_inputs(metrics: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """Fig. 5's inputs: best-head accuracy per block, the similarity baseline, the threshold."""
    headline = float(_section(metrics, "headline_px", where=where))
    key = f"accuracy_{headline:g}px"
    corr = _section(metrics, "correspondence", where=where)
    source = next((s for s in ("attention", "attention_compact") if s in corr), None)
    if source is None:
        raise SchemaError(
            f"{where}: no 'correspondence.attention' (the features store kept no cross-attention)"
        )
    blocks = _section(corr, source, QUERY_DIRECTION, where=f"{where}: correspondence")
    best = {loc.split(".")[0]: s for loc, entry in blocks.items() if (s := stat(entry, key))}
    sim = corr.get("similarity", {}).get(QUERY_DIRECTION, {})
    baseline = {}
    for block in best:  # block b's cross-attention reads the other view's stream entering block b
        b = int(block[1:])
        before = "dec_in" if b == 0 else f"b{b - 1:02d}.mlp"
        if before in sim and (s := stat(sim[before], key)):
            baseline[block] = s
    heads = {loc.split(".")[0]: entry.get("best_head") for loc, entry in blocks.items()}
    return {"best": best, "baseline": baseline or None, "headline_px": headline, "best_heads": heads}


def correspondence_curves(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """plots/correspondence_curve.csv → (thresholds (T,), block → (T,) best-head accuracy, view 2 queries)."""
    if not path.is_file():
        raise StoreNotFoundError(f"{path}: not found (written by `probe3r evaluate`)")
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    suffix = f".cross_{QUERY_DIRECTION}"
    thresholds = np.array([float(r["threshold_px"]) for r in rows])
    curves = {
        col.removesuffix(suffix): np.array([float(r[col]) if r[col] else np.nan for r in rows])
        for col in (rows[0] if rows else {})
        if col.endswith(suffix)
    }
    return thresholds, curves


def depth_table_rows(
    metrics: Mapping[str, Any], *, pointmap: str, depth: str, where: str
) -> dict[str, dict[str, dict[str, Stat]]]:
    """Table 1: location → {"depth", "pointmap"} → {"delta1", "abs_rel"}, at locations both probed."""
    pm = _section(metrics, "pointmap", where=where)
    for method in (pointmap, depth):
        _section(pm, method, where=f"{where}: pointmap")
    rows = {}
    for loc in pm[pointmap]:
        if loc not in pm[depth] or loc.endswith(".out") or loc.endswith((".self", ".cross")):
            continue
        rows[loc] = {
            name: {m: s for m in ("delta1", "abs_rel") if (s := stat(pm[method][loc], f"depth_{m}"))}
            for name, method in (("depth", depth), ("pointmap", pointmap))
        }
    if not rows:
        raise SchemaError(f"{where}: no location has both '{pointmap}' and '{depth}' depth metrics")
    return rows


def headline_numbers(metrics: Mapping[str, Any], method: str) -> list[tuple[str, Stat | str]]:
    """The report's headline: each (label, Stat or text) that metrics.json holds."""
    out: list[tuple[str, Stat | str]] = []
    pm = metrics.get("pointmap", {}).get(method, {})
    stream = [loc for loc in pm if not loc.endswith(".out")]
    for loc in (stream[:1] + stream[-1:]) if stream else []:
        if s := stat(pm[loc], "ssi_error"):
            out.append((f"SSI pointmap error, {method} probe at {loc}", s))
    if s := stat(metrics.get("model", {}), "ssi_error"):
        out.append(("SSI pointmap error of the model's own output", s))
    totals = contribution_stats(metrics.get("contributions", {}).get(method, {}), "total")
    if totals:
        text = ", ".join(f"{k} {100 * s.mean:+.0f}%{interval_text(s)}" for k, s in totals.items())
        out.append(
            (
                "change of the aligned view-2 error per sublayer type (paper: self −94%, cross +11%, MLP +7%)",
                text,
            )
        )
    try:
        corr = correspondence_inputs(metrics, where="metrics.json")
    except SchemaError:
        return out
    for block, s in list(corr["best"].items())[:1] + list(corr["best"].items())[-1:]:
        out.append((f"correspondence accuracy within {corr['headline_px']:g} px, best head of {block}", s))
    return out
