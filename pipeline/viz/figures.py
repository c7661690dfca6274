"""The paper's number figures (Fig. 4, 5, 8 and Table 1) from plain dicts of statistics.

Every function takes values already reduced to a `Stat` (mean with its bootstrap
interval) keyed by location or block, and returns a matplotlib `Figure` built without
pyplot (no global state, Agg when saved), so tests can draw them from small fixtures and
the report from metrics.json. Locations use the one spelling of pipeline/probing/locations.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from matplotlib.figure import Figure

from pipeline.errors import ConfigError

SUBLAYER_COLOURS = {"self": "#1f77b4", "cross": "#d62728", "mlp": "#2ca02c"}
SUBLAYER_NAMES = {"self": "self-attention", "cross": "cross-attention", "mlp": "MLP"}


class Stat(NamedTuple):
    """A mean over pairs and its confidence interval (NaN bounds when there is none)."""

    mean: float
    low: float = float("nan")
    high: float = float("nan")


def save_figure(fig: Figure, path: Path, *, dpi: int = 110) -> Path:
    """Write `fig` as PNG (parents created); returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight", facecolor="white")
    return path


def _series(
    values: Mapping[str, Stat], order: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    names = [name for name in order if name in values]
    arr = np.array([tuple(values[name]) for name in names], dtype=np.float64).reshape(-1, 3)
    return arr[:, 0], arr[:, 1], arr[:, 2], names


def _location_axis(ax, names: Sequence[str]) -> None:
    """Tick every block's output (bXX.mlp) and the stream's entry points; grid at block ends."""
    ticks = [i for i, n in enumerate(names) if not n.startswith("b") or n.endswith(".mlp")]
    ax.set_xticks(ticks, [names[i].removesuffix(".mlp") for i in ticks], rotation=60, fontsize=8)
    ax.set_xlim(-0.5, len(names) - 0.5)
    ax.grid(True, axis="y", alpha=0.3)


def _plot_series(
    ax, x: np.ndarray, s: tuple[np.ndarray, np.ndarray, np.ndarray], label: str, **style
) -> None:
    mean, low, high = s
    (line,) = ax.plot(x, mean, marker="o", markersize=3, label=label, **style)
    if np.isfinite(low).any():
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)


def interval_text(s: Stat, scale: float = 100) -> str:
    """A Stat's interval as " [lo, hi]" (times `scale`: percent), or "" when it has none."""
    return f" [{scale * s.low:+.0f}, {scale * s.high:+.0f}]" if np.isfinite([s.low, s.high]).all() else ""


def fig_aligned_error(
    errors: Mapping[str, Stat], contributions: Mapping[str, Stat], totals: Mapping[str, Stat] | None = None
) -> Figure:
    """Fig. 4: Procrustes-aligned view-2 error per location, and each sublayer's change.

    Args:
        errors: location → aligned view-2 error (dec_in, bXX.self/cross/mlp, optionally enc).
        contributions: "bXX.self"/"bXX.cross"/"bXX.mlp" → (error after - error before) /
            error at dec_in, as `pipeline.metrics.procrustes.sublayer_contributions` gives,
            with its bootstrap interval (drawn as whiskers where finite).
        totals: "self"/"cross"/"mlp" → the sum per type with its interval, shown in the
            legend; without it the legend sums the per-block values (no interval: the
            interval of a sum is not the sum of intervals).

    Raises:
        ConfigError: no error at any location.
    """
    order = _forward_order(errors)
    mean, low, high, names = _series(errors, order)
    if not names:
        raise ConfigError("fig_aligned_error: no aligned error at any location")
    fig = Figure(figsize=(11, 3.6))
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    _plot_series(ax1, np.arange(len(names)), (mean, low, high), "aligned view-2 error", color="#455a64")
    _location_axis(ax1, names)
    ax1.set_ylabel("aligned view-2 error (SSI)")
    ax1.set_title("(a) second-view error after Procrustes alignment")
    blocks = sorted({k.split(".")[0] for k in contributions})
    width = 0.27
    for j, sub in enumerate(SUBLAYER_COLOURS):
        bars = [contributions.get(f"{b}.{sub}", Stat(np.nan)) for b in blocks]
        vals = 100 * np.array(bars, dtype=np.float64).reshape(-1, 3)  # (blocks, mean/low/high)
        whiskers = np.abs(vals[:, 1:].T - vals[:, 0])  # (2, blocks); NaN (no whisker) without an interval
        total = (totals or {}).get(sub, Stat(float(np.nansum(vals[:, 0])) / 100))
        ax2.bar(
            np.arange(len(blocks)) + (j - 1) * width,
            vals[:, 0],
            width,
            yerr=whiskers,
            error_kw={"elinewidth": 0.8, "capsize": 1.5},
            color=SUBLAYER_COLOURS[sub],
            label=f"{SUBLAYER_NAMES[sub]} (total {100 * total.mean:+.0f}%{interval_text(total)})",
        )
    ax2.axhline(0, color="black", linewidth=0.6)
    ax2.set_xticks(range(len(blocks)), blocks, rotation=60, fontsize=8)
    ax2.set_ylabel("change, % of error at dec_in")
    ax2.set_title("(b) per-sublayer contribution")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def fig_correspondence(
    best: Mapping[str, Stat],
    *,
    headline_px: float,
    curves: Mapping[str, np.ndarray] | None = None,
    thresholds_px: Sequence[float] | None = None,
    baseline: Mapping[str, Stat] | None = None,
) -> Figure:
    """Fig. 5: correspondence accuracy per block from the best cross-attention head.

    Args:
        best: block ("b00" … "b11") → accuracy at `headline_px` of that block's best head.
        headline_px: the threshold of `best`, pixels.
        curves: block → (T,) accuracy of the best head at each of `thresholds_px` (optional panel).
        thresholds_px: (T,) pixels, required with `curves`.
        baseline: block → accuracy of another estimator (e.g. token cosine similarity), drawn dashed.
    """
    blocks = sorted(best)
    fig = Figure(figsize=(11 if curves else 6, 3.6))
    axes = fig.subplots(1, 2 if curves else 1, squeeze=False)[0]
    ax = axes[0]
    x = np.arange(len(blocks))
    _plot_series(ax, x, _series(best, blocks)[:3], "best head (cross-attention argmax)", color="#6a1b9a")
    if baseline:  # it may lack blocks (a location not stored, a null value): plot those it has
        mean, low, high, names = _series(baseline, blocks)
        at = np.array([blocks.index(n) for n in names])
        _plot_series(ax, at, (mean, low, high), "token cosine similarity", color="#9e9e9e", linestyle="--")
    ax.set_xticks(x, blocks, rotation=60, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"share of matches within {headline_px:g} px")
    ax.set_title("(a) correspondence accuracy per block")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    if curves:
        if thresholds_px is None:
            raise ConfigError("fig_correspondence: curves need thresholds_px")
        colours = _ramp(len(curves))
        for colour, block in zip(colours, sorted(curves), strict=True):
            axes[1].plot(thresholds_px, curves[block], color=colour, label=block)
        axes[1].axvline(headline_px, color="black", linewidth=0.6, linestyle=":")
        axes[1].set_xlabel("distance threshold (px)")
        axes[1].set_ylabel("accuracy")
        axes[1].set_ylim(0, 1)
        axes[1].set_title("(b) accuracy vs threshold, best head")
        axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def fig_ssi_error(
    probes: Mapping[str, Mapping[str, Stat]], direct: Mapping[str, Stat] | None = None
) -> Figure:
    """Fig. 8: scale-shift invariant error per location: MLP vs linear, stream vs direct output.

    Args:
        probes: probe set name ("mlp", "linear") → location → SSI error on the residual stream.
        direct: "bXX.<sublayer>.out" → SSI error of the MLP probe on that sublayer's direct
            output (drawn at the stream location it is added to), or None.

    Raises:
        ConfigError: no probe set has any value.
    """
    order = _forward_order({loc: s for values in probes.values() for loc, s in values.items()})
    if not order:
        raise ConfigError("fig_ssi_error: no SSI error at any location")
    fig = Figure(figsize=(11 if direct else 6.5, 3.6))
    axes = fig.subplots(1, 2 if direct else 1, squeeze=False)[0]
    for colour, (name, values) in zip(
        ("#1565c0", "#ef6c00", "#2e7d32", "#6d4c41"), probes.items(), strict=False
    ):
        mean, low, high, names = _series(values, order)
        _plot_series(
            axes[0],
            np.array([order.index(n) for n in names]),
            (mean, low, high),
            "head lens (no training)" if name == "lens" else f"{name} probe",
            color=colour,
        )
    _location_axis(axes[0], order)
    axes[0].set_ylabel("SSI pointmap error")
    axes[0].set_title("(a) probe capacity")
    axes[0].legend(fontsize=8)
    if direct:
        stream = next(iter(probes.values()))
        mean, low, high, names = _series(stream, order)
        _plot_series(
            axes[1], np.array([order.index(n) for n in names]), (mean, low, high), "after skip connection"
        )
        at = {loc.removesuffix(".out"): s for loc, s in direct.items()}
        mean, low, high, names = _series(at, order)
        _plot_series(
            axes[1], np.array([order.index(n) for n in names]), (mean, low, high), "direct sublayer output"
        )
        _location_axis(axes[1], order)
        axes[1].set_title("(b) skip connection vs direct output")
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def fig_depth_table(rows: Mapping[str, Mapping[str, Mapping[str, Stat]]]) -> Figure:
    """Table 1 as a picture: delta1 and absrel of the depth and the pointmap probe per location.

    Args:
        rows: location → probe ("depth", "pointmap") → metric ("delta1", "abs_rel") → Stat.
    """
    probes = sorted({p for r in rows.values() for p in r})
    header = ["location"] + [f"{p} δ1 ↑ / absrel ↓" for p in probes]
    cells = [
        [loc] + [_cell(rows[loc].get(p, {})) for p in probes] for loc in _forward_order(rows) or sorted(rows)
    ]
    fig = Figure(figsize=(2.2 + 2.6 * len(probes), 0.45 * (len(cells) + 1) + 0.4))
    ax = fig.subplots()
    ax.axis("off")
    table = ax.table(cellText=cells, colLabels=header, loc="center", cellLoc="center")
    table.scale(1, 1.3)
    ax.set_title("Table 1: depth probe vs pointmap probe", fontsize=10)
    return fig


def _cell(metrics: Mapping[str, Stat]) -> str:
    d, a = metrics.get("delta1"), metrics.get("abs_rel")
    return "–" if d is None or a is None else f"{d.mean:.3f} / {a.mean:.3f}"


def _forward_order(values: Mapping[str, object]) -> list[str]:
    """The locations of `values` in forward order: enc, dec_in, then blocks by number and sublayer."""
    rank = {"self": 0, "cross": 1, "mlp": 2}

    def key(loc: str) -> tuple[int, int, int]:
        if loc == "enc":
            return (0, 0, 0)
        if loc == "dec_in":
            return (1, 0, 0)
        block, _, sub = loc.partition(".")
        return (2, int(block[1:]) if block[1:].isdigit() else 99, rank.get(sub.removesuffix(".out"), 3))

    return sorted((loc for loc in values if loc == "enc" or loc == "dec_in" or loc[:1] == "b"), key=key)


def _ramp(n: int) -> list[tuple[float, float, float]]:
    """n colours from light to dark purple: early blocks light, late blocks dark."""
    t = np.linspace(0.25, 1.0, max(n, 1))
    return [(0.9 - 0.6 * x, 0.85 - 0.75 * x, 0.95 - 0.4 * x) for x in t]
