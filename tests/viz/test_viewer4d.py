"""The 4D pointmap viewer: its data round-trips, it works offline, and Chromium draws points."""

from __future__ import annotations

import base64
import gzip
import re
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import ConfigError, ShapeError
from pipeline.probes.files import load_probes
from pipeline.viz.loaders import apply_probes, load_pair, pair_acts
from pipeline.viz.pair import pointmap_scale
from pipeline.viz.viewer4d import viewer4d_data, write_viewer4d
from tests.viz.conftest import canvas_content


def decode(entry: dict) -> np.ndarray:
    raw = gzip.decompress(base64.b64decode(entry["b64"]))
    return np.frombuffer(raw, dtype=np.dtype(entry["dtype"]).newbyteorder("<")).reshape(entry["shape"])


def test_frames_are_probes_then_model_then_gt_and_points_round_trip(pair_and_probes) -> None:
    pair, probed, conf = pair_and_probes
    data = viewer4d_data(pair, probed, conf, stride=2)
    assert data["names"] == [*probed, "model output", "ground truth"]
    assert data["kinds"] == ["probe"] * len(probed) + ["model", "gt"]
    assert data["gt_index"] == len(probed) + 1
    q = decode(data["points"]["q"]).astype(np.float64)
    lo, hi = np.array(data["points"]["lo"]), np.array(data["points"]["hi"])
    points = lo[:, None, None] + q / 65535 * (hi - lo)[:, None, None]  # (F, V, M, 3)
    gt = pair.gt[:, ::2, ::2]
    expected = (gt / pointmap_scale(gt, np.ones(gt.shape[:-1], bool))).reshape(2, -1, 3)
    np.testing.assert_allclose(points[-1], expected, atol=1e-4 * (hi[-1] - lo[-1]).max())
    assert decode(data["conf"]).shape == (len(data["names"]), 2, 16 * 16)
    assert decode(data["rgb"]).shape == (2, 16 * 16, 3)
    assert np.array(data["frusta"]).shape == (2, 8, 2, 3)


def test_refuses_bad_stride_and_mismatched_pointmaps(pair_and_probes) -> None:
    pair, probed, _ = pair_and_probes
    with pytest.raises(ConfigError, match="stride must be >= 1"):
        viewer4d_data(pair, probed, stride=0)
    with pytest.raises(ShapeError, match=r"pointmap 'bad': expected \(2, 32, 32, 3\)"):
        viewer4d_data(pair, {"bad": np.zeros((2, 16, 16, 3))})


def test_page_is_self_contained(pair_and_probes, tmp_path: Path) -> None:
    html = write_viewer4d(tmp_path / "v.html", *pair_and_probes).read_text()
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", html), (
        "the page must not load anything from the network"
    )
    assert "DecompressionStream" in html and "{{" not in html


def test_chromium_draws_the_point_cloud(pair_and_probes, screenshot, tmp_path: Path) -> None:
    pair, probed, conf = pair_and_probes
    shot = screenshot(write_viewer4d(tmp_path / "viewer.html", pair, probed, conf, stride=1))
    area, drawn = canvas_content(shot)
    assert area > 100_000, "the 3D canvas is not on the page"
    assert drawn > 0.015 * area, f"only {drawn} of {area} canvas pixels were drawn"


def test_viewer_of_a_real_pair_from_the_stores(tiny_stores, screenshot, tmp_path: Path) -> None:
    pair = load_pair(tiny_stores["renders"], 0, features=tiny_stores["features"])
    probes = load_probes(tiny_stores["probes"] / "mlp")
    points, conf = apply_probes(probes, pair_acts(tiny_stores["features"], 0, probes.spec.locations))
    assert list(points)[:3] == ["enc", "dec_in", "b00.self"]
    assert points["b03.mlp"].shape == (2, 64, 64, 3)
    html = write_viewer4d(tmp_path / "pair0.html", pair, points, conf, stride=1)
    assert "random-init" in html.read_text()
    area, drawn = canvas_content(screenshot(html))
    assert drawn > 0.01 * area, f"only {drawn} of {area} canvas pixels were drawn"
