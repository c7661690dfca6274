"""Every figure function draws a non-trivial PNG from small fixtures, and refuses bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from pipeline.errors import ConfigError, ShapeError
from pipeline.probing.locations import residual_locations, sublayer_locations
from pipeline.viz.figures import (
    Stat,
    fig_aligned_error,
    fig_correspondence,
    fig_depth_table,
    fig_ssi_error,
    save_figure,
)
from pipeline.viz.figures_maps import fig_attention, fig_knockout, fig_pointmap_sequence

DEPTH = 4
RESIDUAL = residual_locations(DEPTH)


def stats(names: list[str], start: float, *, ci: bool = True) -> dict[str, Stat]:
    values = start * np.exp(-np.linspace(0, 1.5, len(names)))
    return {n: Stat(v, v * 0.9, v * 1.1) if ci else Stat(v) for n, v in zip(names, values, strict=True)}


def assert_picture(path: Path) -> None:
    """The PNG exists and holds a picture: many colours, not one flat fill."""
    image = np.asarray(PIL.Image.open(path).convert("RGB"))
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20, f"{path.name} is nearly a single colour"
    assert (image.reshape(-1, 3) != 255).any(-1).mean() > 0.02, f"{path.name} is nearly blank"


def test_aligned_error_and_contributions(tmp_path: Path) -> None:
    contributions = {
        f"b{b:02d}.{s}": Stat(-0.3, -0.35, -0.2) if s == "self" else Stat(0.04)
        for b in range(DEPTH)
        for s in ("self", "cross", "mlp")
    }
    fig = fig_aligned_error(stats(RESIDUAL[1:], 0.5), contributions)
    assert_picture(save_figure(fig, tmp_path / "fig4.png"))
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert "total -120%)" in legend[0]  # summed per block: no interval for a sum
    whiskers = [c for c in fig.axes[1].containers if getattr(c, "has_yerr", False)]
    segments = whiskers[0].lines[2][0].get_segments()  # self-attention bars: -35% to -20%
    assert len(segments) == DEPTH and all(tuple(np.round(seg[:, 1], 6)) == (-35.0, -20.0) for seg in segments)
    totals = {"self": Stat(-1.2, -1.3, -1.1), "cross": Stat(0.16), "mlp": Stat(0.16)}
    legend = [
        t.get_text()
        for t in fig_aligned_error(stats(RESIDUAL[1:], 0.5), contributions, totals)
        .axes[1]
        .get_legend()
        .get_texts()
    ]
    assert "total -120% [-130, -110])" in legend[0] and "total +16%)" in legend[1]
    with pytest.raises(ConfigError, match="no aligned error"):
        fig_aligned_error({}, contributions)


def test_correspondence_with_curves_and_baseline(tmp_path: Path) -> None:
    blocks = [f"b{b:02d}" for b in range(DEPTH)]
    thresholds = np.arange(0, 65, 8.0)
    curves = {b: 1 - np.exp(-thresholds / (20 - 3 * i)) for i, b in enumerate(blocks)}
    best = {b: Stat(float(c[2]), float(c[2]) - 0.05, float(c[2]) + 0.05) for b, c in curves.items()}
    fig = fig_correspondence(
        best, headline_px=16, curves=curves, thresholds_px=thresholds, baseline=stats(blocks, 0.3, ci=False)
    )
    assert_picture(save_figure(fig, tmp_path / "fig5.png"))
    assert_picture(save_figure(fig_correspondence(best, headline_px=16), tmp_path / "fig5_single.png"))
    partial = fig_correspondence(
        best, headline_px=16, baseline=stats(blocks[1:], 0.3, ci=False)
    )  # b00 missing
    dashed = [line for line in partial.axes[0].get_lines() if line.get_linestyle() == "--"]
    assert dashed[0].get_xdata().tolist() == list(range(1, DEPTH))
    with pytest.raises(ConfigError, match="curves need thresholds_px"):
        fig_correspondence(best, headline_px=16, curves=curves)


def test_ssi_error_mlp_linear_and_direct_outputs(tmp_path: Path) -> None:
    fig = fig_ssi_error(
        {"mlp": stats(RESIDUAL, 1.0), "linear": stats(RESIDUAL, 1.4)},
        direct=stats(sublayer_locations(DEPTH), 2.0),
    )
    assert_picture(save_figure(fig, tmp_path / "fig8.png"))
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["mlp probe", "linear probe"]
    lens = fig_ssi_error({"mlp": stats(RESIDUAL, 1.0), "lens": stats(RESIDUAL, 3.0)})
    assert [t.get_text() for t in lens.axes[0].get_legend().get_texts()] == [
        "mlp probe",
        "head lens (no training)",
    ]
    with pytest.raises(ConfigError, match="no SSI error"):
        fig_ssi_error({"mlp": {}})


def test_depth_table(tmp_path: Path) -> None:
    rows = {
        loc: {
            "depth": {"delta1": Stat(0.8), "abs_rel": Stat(0.14)},
            "pointmap": {"delta1": Stat(0.93), "abs_rel": Stat(0.08)},
        }
        for loc in ("b00.mlp", "b02.mlp", "b03.mlp")
    }
    assert_picture(save_figure(fig_depth_table(rows), tmp_path / "table1.png"))


def test_pointmap_sequence(pair_and_probes, tmp_path: Path) -> None:
    pair, probed, _ = pair_and_probes
    fig = fig_pointmap_sequence(pair, probed, stride=2, cols=3)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == [*probed, "model output", "ground truth"]
    assert_picture(save_figure(fig, tmp_path / "fig3.png"))


def test_attention_grid(pair_and_probes, tmp_path: Path) -> None:
    pair, _, _ = pair_and_probes
    grid = (4, 4)
    rng = np.random.default_rng(0)
    maps = rng.dirichlet(np.ones(16), size=(3, 4))  # 3 blocks x 4 heads
    fig = fig_attention(
        pair.rgb[1],
        pair.rgb[0],
        maps,
        grid=grid,
        query=5,
        row_labels=["b00", "b01", "b02"],
        col_labels=list("0123"),
    )
    assert_picture(save_figure(fig, tmp_path / "fig9.png"))
    with pytest.raises(ShapeError, match=r"maps: expected \(R=3, C=4, K=16\)"):
        fig_attention(
            pair.rgb[1],
            pair.rgb[0],
            maps[:, :2],
            grid=grid,
            query=5,
            row_labels=["a", "b", "c"],
            col_labels=list("0123"),
        )


def test_knockout(pair_and_probes, tmp_path: Path) -> None:
    pair, probed, _ = pair_and_probes
    before = probed["b03.mlp"]
    fig = fig_knockout(pair, before, before * 1.01, label="b02.self heads 0, 3")
    assert_picture(save_figure(fig, tmp_path / "fig13.png"))
    with pytest.raises(ShapeError, match="like before"):
        fig_knockout(pair, before, before[:1])
