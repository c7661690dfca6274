"""extract.attention / extract.full_attention "none": attention arrays with attn_location = 0, or no full maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from pipeline.jobs.extract import run_extract
from pipeline.store.features import open_features
from pipeline.store.readers import FeatureDataset, attention_probabilities, open_features_xarray
from pipeline.store.validate import validate_store
from pipeline.viz.loaders import pair_attention

from .conftest import tiny_params


def test_attention_none_gives_size_zero_attention_arrays(renders: Path, tmp_path: Path) -> None:
    out = tmp_path / "none.zarr"
    summary = run_extract(renders, out, tiny_params(attention="none", full_attention="none"))
    assert summary["complete"] and validate_store(out) == []
    group = open_features(out)
    assert list(group["attn_location"][:]) == []
    assert group["attn"].shape == (6, 2, 0, 4, 16, 16)
    assert group["attn_argmax"].shape == (6, 2, 0, 4, 16)
    assert group["attn_full"].shape == (6, 2, 0, 4, 16, 16)
    assert not group["has_full_attn"][:].any()
    # the stream is stored as with attention maps, up to float16 rounding: captured attention
    # layers run an explicit softmax, the others scaled_dot_product_attention (about 1e-6 apart)
    run_extract(renders, tmp_path / "all.zarr", tiny_params())
    full = zarr.open_group(str(tmp_path / "all.zarr"), mode="r")
    for name in ("enc", "status", "split"):
        np.testing.assert_array_equal(group[name][:], full[name][:], err_msg=name)
    for name in ("acts", "pts3d", "conf", "token_norm", "mean", "std"):
        a, b = group[name][:].astype(np.float32), full[name][:].astype(np.float32)
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=4e-3, err_msg=name)
    # readers accept it
    ds = open_features_xarray(out)
    assert ds.sizes["attn_location"] == 0 and attention_probabilities(ds).shape == (6, 2, 0, 4, 16, 16)
    assert ds.acts.sel(location="b00.cross", view=1).shape == (6, 16, 64)
    assert len(list(FeatureDataset(out, "b00.cross", shuffle=False))) == 5
    assert pair_attention(out, 1) == {}
    # a resumed run with the same parameters finds nothing to do
    assert (
        run_extract(renders, out, tiny_params(attention="none", full_attention="none"))["shards_written"] == 0
    )


def test_full_attention_none_keeps_compact_maps_only(renders: Path, tmp_path: Path) -> None:
    out = tmp_path / "compact.zarr"
    run_extract(renders, out, tiny_params(full_attention="none"))
    assert validate_store(out) == []
    group = zarr.open_group(str(out), mode="r")
    assert group["attn"].shape == (6, 2, 8, 4, 16, 16)
    assert not group["has_full_attn"][:].any() and np.isnan(group["attn_full"][:]).all()
    assert (group["attn"][:2].astype(int).sum(-1) > 0).all()  # every compact row stored
    assert set(pair_attention(out, 1)) == {str(x) for x in group["attn_location"][:]}
