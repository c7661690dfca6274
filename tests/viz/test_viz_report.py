"""The report: every section drawn from stores + metrics, missing inputs named, the page renders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.jobs.report import ReportParams, run_report
from pipeline.probing.locations import residual_locations, sublayer_locations
from pipeline.viz.metrics_view import headline_numbers
from tests.viz.conftest import canvas_content

DEPTH = 4


def entry(**values: float) -> dict:
    return {
        k: v
        for name, x in values.items()
        for k, v in ((name, x), (f"{name}_lo", x * 0.9), (f"{name}_hi", x * 1.1))
    }


def fake_metrics() -> dict:
    """A metrics.json shaped like evaluate's (pipeline/jobs/eval_report.py) for the tiny model."""
    locs = residual_locations(DEPTH)
    err = {loc: 0.5 * np.exp(-i / 6) for i, loc in enumerate(locs)}
    point = {
        loc: entry(ssi_error=e, procrustes_v2_error=e, depth_abs_rel=e / 4, depth_delta1=1 - e / 3)
        for loc, e in err.items()
    }
    point |= {loc: entry(ssi_error=0.9) for loc in sublayer_locations(DEPTH)}
    blocks = {
        f"b{b:02d}.cross": {"best_head": b % 4, **entry(accuracy_16px=0.4 + 0.05 * b)} for b in range(DEPTH)
    }
    return {
        "n_pairs": 2,
        "headline_px": 16.0,
        "pointmap": {
            "mlp": point,
            "linear": {loc: entry(ssi_error=e * 1.3) for loc, e in err.items()},
            "depth-mlp": {loc: entry(depth_abs_rel=e / 3, depth_delta1=1 - e / 2) for loc, e in err.items()},
        },
        "model": entry(ssi_error=0.2),
        "contributions": {
            "mlp": {
                "per_block": {
                    f"b{b:02d}.{s}": -0.2 if s == "self" else 0.03
                    for b in range(DEPTH)
                    for s in ("self", "cross", "mlp")
                },
                "total": {"self": -0.8, "cross": 0.12, "mlp": 0.12},
                "total_lo": {"self": -0.9, "cross": 0.05, "mlp": None},
                "total_hi": {"self": -0.7, "cross": 0.2, "mlp": None},
            }
        },
        "correspondence": {
            "attention": {"v2_to_v1": blocks, "v1_to_v2": blocks},
            "similarity": {"v2_to_v1": {loc: entry(accuracy_16px=0.3) for loc in locs}},
        },
    }


@pytest.fixture
def params() -> ReportParams:
    return ReportParams(pairs=(1,), knockout_heads=(0, 3))


def test_report_without_metrics_names_the_missing_file(tiny_stores, params, tmp_path: Path) -> None:
    result = run_report(
        tiny_stores["renders"],
        tiny_stores["features"],
        tiny_stores["probes"],
        tmp_path / "nothing",
        tmp_path,
        params,
    )
    html = result["report"].read_text()
    assert len(result["missing"]) == 4 and all("Fig." in t or "Table" in t for t in result["missing"])
    assert html.count("metrics.json: not found") == 4
    assert "random-init" in html and "Fig. 3" in html and "Fig. 13" in html and "Fig. 15" in html
    assert html.count("data:image/png;base64,") == 4  # Fig. 3, 9, 15, 13
    assert {p.name for p in result["viewers"]} == {"pair_0001.html", "attention_0001.html"}


def test_report_with_metrics_draws_every_figure_and_renders(
    tiny_stores, params, screenshot, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "reports"
    metrics_dir.mkdir()
    (metrics_dir / "metrics.json").write_text(json.dumps(fake_metrics()))
    result = run_report(
        tiny_stores["renders"],
        tiny_stores["features"],
        tiny_stores["probes"],
        metrics_dir,
        metrics_dir,
        params,
    )
    assert result["missing"] == []
    html = result["report"].read_text()
    assert html.count("data:image/png;base64,") == 8
    assert "0.500 [0.450, 0.550]" in html  # SSI error at enc with its interval
    assert "self -80%" in html
    shot = screenshot(result["report"], size=(800, 1400))
    assert (
        np.abs(shot.astype(int) - 255).sum(-1) > 30
    ).mean() > 0.1  # figures, tables, text: not a blank page
    viewer = screenshot(result["viewers"][0])
    area, drawn = canvas_content(viewer)
    assert drawn > 0.01 * area


def test_headline_numbers_read_intervals_and_contributions() -> None:
    numbers = dict(headline_numbers(fake_metrics(), "mlp"))
    assert numbers["SSI pointmap error, mlp probe at enc"].low == pytest.approx(0.45)
    assert any("best head of b03" in label for label in numbers)
    change = next(v for k, v in numbers.items() if k.startswith("change of the aligned view-2 error"))
    assert change == "self -80% [-90, -70], cross +12% [+5, +20], mlp +12%"


def test_report_params_refuse_unknown_keys() -> None:
    with pytest.raises(ConfigError, match=r"report: unknown parameter\(s\) \['pair'\]"):
        ReportParams.from_dict({"pair": [0]})


def test_missing_probe_set_is_an_error(tiny_stores, tmp_path: Path) -> None:
    probes = tmp_path / "probes"
    shutil.copytree(tiny_stores["probes"] / "linear", probes / "linear")
    with pytest.raises(FileNotFoundError, match=r"no probes\.safetensors"):
        run_report(
            tiny_stores["renders"], tiny_stores["features"], probes, tmp_path, tmp_path, ReportParams()
        )
