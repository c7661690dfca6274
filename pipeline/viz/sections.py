"""Each report section from its inputs, with a missing input turned into a note.

`guarded` runs one section's builder and, if it raises a `Probe3rError` (a missing file, a
metrics key evaluate did not write, a store without attention maps), returns a section
that says so; every other section still gets drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import Probe3rError, SchemaError
from pipeline.viz.figures import fig_aligned_error, fig_correspondence, fig_depth_table, fig_ssi_error
from pipeline.viz.figures_maps import fig_attention, fig_knockout, fig_pointmap_sequence
from pipeline.viz.metrics_view import (
    aligned_error_inputs,
    correspondence_curves,
    correspondence_inputs,
    depth_table_rows,
    ssi_inputs,
)
from pipeline.viz.pair import PairView
from pipeline.viz.report import Section, figure_png

CAPTIONS = {
    "fig3": "Both views' pointmaps decoded by the probes at each location (view 1's frame, each "
    "pointmap at its own scale), then the model's output and the ground truth.",
    "fig4": "(a) View-2 error after weighted Procrustes alignment to the GT at each location; "
    "(b) change across each sublayer relative to the error at dec_in (paper: self-attention -94%); "
    "shaded band and whiskers: bootstrap intervals over pairs.",
    "fig5": "Share of view-2 query patches whose cross-attention argmax (best head of each block) "
    "lands within the threshold of the GT corresponding patch; dashed: cosine similarity of tokens.",
    "fig8": "Scale-shift invariant pointmap error per location: (a) MLP vs linear probe; (b) probing "
    "after the skip connection vs the sublayer's direct output.",
    "fig9": "Cross-attention of every head for one view-2 query patch (red) across blocks; keys are view 1's patches.",
    "fig15": "Self- and cross-attention of every head in the chosen maps for the same query.",
    "fig13": "Probed pointmap with and without knocking out the register tokens (top keys) in chosen self-attention heads.",
    "table1": "Relative depth of view 1 after least-squares scale and shift: delta1 (higher is better) / absrel.",
}


def guarded(title: str, build: Callable[[], Section]) -> Section:
    """`build()`, or a section naming the missing input when it raises a Probe3rError."""
    try:
        return build()
    except Probe3rError as err:
        return Section(title, missing=str(err))


def metrics_sections(
    metrics: Mapping[str, Any] | None, missing: str, *, method: str, plots: Path
) -> list[Section]:
    """Fig. 4, 5, 8 and Table 1 from metrics.json (None: every one says `missing`)."""
    titles = {
        "fig4": "Fig. 4 · aligned second-view error and sublayer contributions",
        "fig5": "Fig. 5 · correspondence accuracy per block (best head)",
        "fig8": "Fig. 8 · SSI error: MLP vs linear, skip vs direct output",
        "table1": "Table 1 · depth probe vs pointmap probe",
    }
    if metrics is None:
        return [Section(title, missing=missing) for title in titles.values()]
    where = "metrics.json"

    def fig4() -> Section:
        errors, contributions, totals = aligned_error_inputs(metrics, method, where=where)
        fig = fig_aligned_error(errors, contributions, totals)
        return Section(titles["fig4"], CAPTIONS["fig4"], figure_png(fig))

    def fig5() -> Section:
        corr = correspondence_inputs(metrics, where=where)
        try:
            thresholds, curves = correspondence_curves(plots / "correspondence_curve.csv")
        except Probe3rError:
            thresholds, curves = None, None
        fig = fig_correspondence(
            corr["best"],
            headline_px=corr["headline_px"],
            curves=curves or None,
            thresholds_px=thresholds,
            baseline=corr["baseline"],
        )
        heads = ", ".join(f"{b}: head {h}" for b, h in corr["best_heads"].items())
        return Section(titles["fig5"], f"{CAPTIONS['fig5']} Best heads: {heads}.", figure_png(fig))

    def fig8() -> Section:
        series, direct = ssi_inputs(metrics, (method, "linear", "lens"), where=where)
        return Section(titles["fig8"], CAPTIONS["fig8"], figure_png(fig_ssi_error(series, direct)))

    def table1() -> Section:
        rows = depth_table_rows(metrics, pointmap=method, depth=f"depth-{method}", where=where)
        return Section(titles["table1"], CAPTIONS["table1"], figure_png(fig_depth_table(rows)))

    return [
        guarded(titles[k], f) for k, f in (("fig4", fig4), ("fig5", fig5), ("fig8", fig8), ("table1", table1))
    ]


def sequence_section(
    pair: PairView, points: Mapping[str, np.ndarray], *, stride: int, viewer: str
) -> Section:
    """Fig. 3 for one pair: enc, dec_in and every block's output, linking to its 4D viewer."""
    shown = [loc for loc in points if not loc.startswith("b") or loc.endswith(".mlp")]
    fig = fig_pointmap_sequence(pair, points, locations=shown, stride=stride)
    link = (
        f'<p><a href="{viewer}">Open the 4D viewer of this pair</a> (every location, orbit, GT overlay).</p>'
    )
    return Section(
        f"Fig. 3 · pointmaps at every location · {pair.title}", CAPTIONS["fig3"], figure_png(fig), link
    )


def attention_sections(
    pair: PairView,
    attention: Mapping[str, np.ndarray],
    *,
    grid: tuple[int, int],
    query: int,
    fig15_maps: Sequence[str],
    viewer: str,
) -> list[Section]:
    """Fig. 9 (cross-attention, blocks x heads) and Fig. 15 (chosen maps x heads) for one query."""
    link = f'<p><a href="{viewer}">Open the attention viewer</a> (click any query patch).</p>'

    def grid_fig(names: list[str], title: str, caption: str, extra: str = "") -> Section:
        if not names:
            raise SchemaError(f"{title}: the features store holds none of these attention maps")
        maps = np.stack([attention[n][:, query] for n in names])  # (R, A, K)
        keys = np.stack([pair.rgb[0] if n.endswith(".cross") else pair.rgb[1] for n in names])
        fig = fig_attention(
            pair.rgb[1],
            keys,
            maps,
            grid=grid,
            query=query,
            row_labels=names,
            col_labels=[f"h{a}" for a in range(maps.shape[1])],
        )
        return Section(title, caption, figure_png(fig), extra)

    cross = [n for n in attention if n.endswith(".cross")]
    chosen = [n for n in fig15_maps if n in attention]
    t9 = f"Fig. 9 · cross-attention across blocks · {pair.title}"
    t15 = f"Fig. 15 · attention of chosen maps ({', '.join(fig15_maps)}) · {pair.title}"
    return [
        guarded(t9, lambda: grid_fig(cross, t9, CAPTIONS["fig9"], link)),
        guarded(t15, lambda: grid_fig(chosen, t15, CAPTIONS["fig15"])),
    ]


def knockout_section(pair: PairView, before: np.ndarray, after: np.ndarray, *, label: str) -> Section:
    """Fig. 13 for one pair: the probed pointmap without and with the knockout."""
    title = f"Fig. 13 · attention knockout · {pair.title}"
    return Section(title, CAPTIONS["fig13"], figure_png(fig_knockout(pair, before, after, label=label)))
