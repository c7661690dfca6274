"""Readers: the lazy xarray view, the streaming dataset (with DataLoader workers), the docs snippet."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from torch.utils.data import DataLoader

from pipeline.errors import SchemaError
from pipeline.jobs.extract import run_extract
from pipeline.store.readers import FeatureDataset, attention_probabilities, open_features_xarray

from .conftest import make_renders, tiny_params

DOCS = Path(__file__).parents[2] / "docs" / "store.md"


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("readers")
    renders = make_renders(root / "renders.zarr", n_pairs=8, failed=(3,))
    run_extract(renders, root / "features.zarr", tiny_params())
    return renders, root / "features.zarr"


def test_xarray_view_is_lazy_upcast_and_decodes_attention(stores: tuple[Path, Path]) -> None:
    _, features = stores
    ds = open_features_xarray(features)
    acts = ds.acts.sel(location="b01.cross", view=2)
    assert acts.dims == ("pair", "token", "channel") and acts.dtype == np.float32
    assert acts.chunks is not None  # dask-backed
    raw = zarr.open_group(str(features), mode="r")
    index = list(raw["location"][:]).index("b01.cross")
    np.testing.assert_array_equal(acts.values, raw["acts"][:, 1, index].astype(np.float32))
    p = attention_probabilities(ds).sel(attn_location="b00.cross").isel(pair=0).values
    np.testing.assert_allclose(p.sum(-1), 1, atol=0.02)


def test_dataset_yields_every_extracted_pair_once_across_workers(stores: tuple[Path, Path]) -> None:
    renders, features = stores
    data = FeatureDataset(features, "b01.mlp", renders=renders, buffer_size=3, seed=1)
    loader = DataLoader(data, batch_size=2, num_workers=2, multiprocessing_context="spawn")
    batches = list(loader)
    pairs = sorted(int(p) for b in batches for p in b["pair"])
    assert pairs == [0, 1, 2, 4, 5, 6, 7]  # pair 3 failed to render
    first = batches[0]
    assert first["tokens"].shape == (2, 2, 16, 64) and first["tokens"].dtype == torch.float32
    assert first["pts3d_view1"].shape == (2, 2, 64, 64, 3)
    raw = zarr.open_group(str(features), mode="r")
    index = list(raw["location"][:]).index("b01.mlp")
    k = int(first["pair"][0])
    np.testing.assert_array_equal(first["tokens"][0].numpy(), raw["acts"][k, :, index].astype(np.float32))


def test_dataset_filters_splits_reads_enc_and_reshuffles_per_epoch(stores: tuple[Path, Path]) -> None:
    _, features = stores
    data = FeatureDataset(features, "enc", splits=["test"], buffer_size=2)
    assert sorted(item["pair"] for item in data) == [1, 5, 7]
    assert next(iter(data))["tokens"].shape == (2, 16, 64)
    data = FeatureDataset(features, "dec_in", buffer_size=8)
    first = [item["pair"] for item in data]
    data.set_epoch(1)
    assert sorted(first) == sorted(item["pair"] for item in data)
    with pytest.raises(SchemaError, match=r"Unknown location 'b1.cross'\. Did you mean 'b01.cross'\?"):
        FeatureDataset(features, "b1.cross")


def test_the_plain_zarr_and_xarray_snippet_in_the_docs_runs(stores: tuple[Path, Path]) -> None:
    _, features = stores
    snippet = re.search(r"<!-- snippet: plain-read -->\n```python\n(.*?)```", DOCS.read_text(), re.S)
    assert snippet, "docs/store.md lost its plain-read snippet"
    code = snippet.group(1).replace('"data/features.zarr"', repr(str(features)))
    assert "pipeline" not in code  # no project code
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "random-init:tiny:0 [4, 4]" in result.stdout
    assert "(8, 2, 16, 64) (2, 13, 16, 64)" in result.stdout
    assert "('head', 'query', 'key') (4, 16) rows sum to 1.0" in result.stdout
