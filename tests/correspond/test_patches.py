"""Patch correspondences against plain-loop counting, and the correspond job on a tiny store."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pipeline.correspond.patches import patch_centres, patch_correspondences, pixel_to_patch
from pipeline.errors import SchemaError, ShapeError
from pipeline.jobs.correspond import run_correspond
from pipeline.store.validate import validate_store
from pipeline.store.writer import open_store


def _brute_force(corr: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    B, V, H, W, _ = corr.shape
    w = W // p
    n = (H // p) * w
    match = np.full((B, V, n), -1)
    count = np.zeros((B, V, n), int)
    for b in range(B):
        for v in range(V):
            counts = [[0] * n for _ in range(n)]
            for y in range(H):
                for x in range(W):
                    u, vv = float(corr[b, v, y, x, 0]), float(corr[b, v, y, x, 1])
                    if math.isnan(u) or math.isnan(vv):
                        continue
                    col, row = min(int(u), W - 1), min(int(vv), H - 1)
                    counts[(y // p) * w + x // p][(row // p) * w + col // p] += 1
            for s in range(n):
                best = max(counts[s])
                if best > 0:
                    match[b, v, s] = counts[s].index(best)  # first maximum
                    count[b, v, s] = best
    return match, count


class TestPatchCorrespondences:
    def test_matches_brute_force_count(self, corr_factory: Callable[..., np.ndarray]) -> None:
        corr = corr_factory(np.random.default_rng(0), B=2, H=24, W=32)
        got = patch_correspondences(corr, patch_size=8)
        match, count = _brute_force(corr, 8)
        np.testing.assert_array_equal(got.patch_match, match)
        np.testing.assert_array_equal(got.patch_count, count)
        np.testing.assert_array_equal(
            got.patch_support,
            (~np.isnan(corr[..., 0])).reshape(2, 2, 3, 8, 4, 8).sum((3, 5)).reshape(2, 2, 12),
        )

    def test_translated_view_maps_each_patch_to_its_shifted_patch(self) -> None:
        H = W = 32
        v, u = np.mgrid[0:H, 0:W] + 0.5
        corr = np.stack([u + 8.0, v], -1)[None, None].repeat(2, 1).astype(np.float32)
        corr[0, :, :, W - 8 :] = np.nan  # these pixels fall outside the other view
        got = patch_correspondences(corr, patch_size=8)
        expected = np.arange(16).reshape(4, 4) + 1
        expected[:, 3] = -1
        np.testing.assert_array_equal(got.patch_match[0, 0], expected.ravel())
        assert set(got.patch_count[0, 0][expected.ravel() >= 0]) == {64}

    def test_no_overlap_means_no_match(self) -> None:
        corr = np.full((1, 2, 16, 16, 2), np.nan, np.float32)
        got = patch_correspondences(corr, patch_size=8)
        assert (got.patch_match == -1).all() and (got.patch_count == 0).all()
        assert (got.pixel_patch == -1).all()

    def test_pixel_to_patch_border_and_shape_errors(self) -> None:
        corr = np.full((1, 2, 16, 16, 2), np.nan, np.float32)
        corr[0, 0, 0, 0] = (16.0, 16.0)
        corr[0, 0, 0, 1] = (7.99, 8.0)
        got = pixel_to_patch(corr, 8)
        assert got[0, 0, 0, 0] == 3 and got[0, 0, 0, 1] == 2
        with pytest.raises(ShapeError, match="multiple of patch_size 5"):
            pixel_to_patch(corr, 5)
        with pytest.raises(ShapeError, match=r"expected \(B, V=2, H, W, 2\)"):
            pixel_to_patch(corr[0], 8)

    def test_patch_centres_row_major(self) -> None:
        np.testing.assert_array_equal(patch_centres((2, 3), 16)[4], [24.0, 24.0])


class TestCorrespondJob:
    def test_writes_a_valid_store_and_resumes(
        self, tmp_path: Path, tiny_renders: tuple[Path, np.ndarray]
    ) -> None:
        _, corr = tiny_renders
        out = tmp_path / "corr.zarr"
        summary = run_correspond(tmp_path / "renders.zarr", out, patch_size=8)
        assert summary == {"n_pairs": 6, "n_ok": 4, "n_pending": 1, "shards_computed": 2}
        assert validate_store(out) == []
        group = open_store(out, "correspondences")
        expected = patch_correspondences(corr, 8)
        np.testing.assert_array_equal(group["status"][:], [1, 1, 2, 1, 1, 0])
        np.testing.assert_array_equal(group["patch_match"][:2], expected.patch_match[:2])
        np.testing.assert_array_equal(group["pixel_patch"][3:5], expected.pixel_patch[3:5])
        assert (group["patch_match"][2] == -1).all() and group.attrs["complete"] is False
        # the pending pair gets rendered: a rerun computes only its shard
        open_store(tmp_path / "renders.zarr", "renders", mode="r+")["status"][5] = 1
        again = run_correspond(tmp_path / "renders.zarr", out, patch_size=8)
        assert again["shards_computed"] == 1 and again["n_pending"] == 0
        assert open_store(out, "correspondences").attrs["complete"] is True

    def test_refuses_other_parameters_without_overwrite(
        self, tmp_path: Path, tiny_renders: tuple[Path, np.ndarray]
    ) -> None:
        run_correspond(tmp_path / "renders.zarr", tmp_path / "c.zarr", patch_size=8)
        with pytest.raises(SchemaError, match=r"c\.zarr: made from other .*patch_size.*--overwrite"):
            run_correspond(tmp_path / "renders.zarr", tmp_path / "c.zarr", patch_size=4)
        assert run_correspond(tmp_path / "renders.zarr", tmp_path / "c.zarr", patch_size=4, overwrite=True)
