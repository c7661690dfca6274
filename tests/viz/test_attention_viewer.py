"""The attention viewer: row-relative codes, refusals, and Chromium draws the heads' maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import ConfigError, ShapeError
from pipeline.viz.attention_viewer import (
    attention_data,
    query_patch,
    row_normalised_codes,
    write_attention_viewer,
)
from pipeline.viz.loaders import load_pair, pair_attention

PAGE_BACKGROUND = np.array([250, 250, 250])


def test_codes_put_each_row_maximum_at_255() -> None:
    maps = np.array([[[0.1, 0.2, 0.7], [np.nan, np.nan, np.nan]]])
    codes = row_normalised_codes(maps)
    np.testing.assert_array_equal(codes[0, 0], [36, 73, 255])
    np.testing.assert_array_equal(codes[0, 1], [0, 0, 0])


def test_data_lists_blocks_and_kinds_and_refuses_bad_maps(pair_and_probes) -> None:
    pair, _, _ = pair_and_probes
    att = {name: np.full((2, 16, 16), 1 / 16) for name in ("b00.self", "b00.cross", "b01.cross")}
    data = attention_data(pair.rgb, att, grid=(4, 4))
    assert data["blocks"] == ["b00", "b00", "b01"] and data["kinds"] == ["self", "cross", "cross"]
    assert data["query"] == 10  # the centre patch of a 4 x 4 grid
    with pytest.raises(ConfigError, match="at least one attention map"):
        attention_data(pair.rgb, {}, grid=(4, 4))
    with pytest.raises(ShapeError, match=r"attention\['b01.cross'\]: expected \(A=2, Q=16, K=16\)"):
        attention_data(pair.rgb, {**att, "b01.cross": np.zeros((2, 16, 9))}, grid=(4, 4))


def test_query_patch_is_the_centre_or_a_checked_patch() -> None:
    assert query_patch(None, (3, 4)) == 6  # row 1, column 2 of 3 x 4
    assert query_patch(None, (14, 14)) == 7 * 14 + 7
    assert query_patch(11, (3, 4)) == 11
    for bad in (12, -1):
        with pytest.raises(ConfigError, match=rf"query patch {bad}: expected 0 <= query < 12 \(3x4 patches"):
            query_patch(bad, (3, 4))


def test_chromium_draws_every_head_of_a_stored_pair(tiny_stores, screenshot, tmp_path: Path) -> None:
    pair = load_pair(tiny_stores["renders"], 0, features=tiny_stores["features"])
    att = pair_attention(tiny_stores["features"], 0)
    assert set(att) == {f"b{b:02d}.{k}" for b in range(4) for k in ("self", "cross")}
    np.testing.assert_allclose(att["b01.cross"].sum(-1), 1, atol=1e-2)
    page = write_attention_viewer(tmp_path / "attention.html", pair.rgb, att, grid=(4, 4), title=pair.title)
    shot = screenshot(page)
    cells = shot[110:, 320:]  # right of the 280-px query image: only script-drawn canvases
    drawn = (np.abs(cells.astype(int) - PAGE_BACKGROUND).sum(-1) > 30).mean()
    assert drawn > 0.05, f"only {drawn:.1%} of the cell area was drawn"
