"""The opt-in int8 feature encoding: its bound, an int8 store end to end, and every reader decoding it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from pipeline.jobs.extract import run_extract
from pipeline.jobs.extract_model import ModelRunner
from pipeline.jobs.extract_shard import encode_stream
from pipeline.probes.store_source import StoreSource
from pipeline.store.features import read_acts
from pipeline.store.int8 import MAX_ERROR_OF_CHANNEL_MAX, Int8NonFiniteError, decode_int8, encode_int8
from pipeline.store.readers import FeatureDataset, open_features_xarray
from pipeline.store.validate import validate_store
from pipeline.viz.loaders import pair_acts

from .conftest import make_renders, tiny_params


def test_codes_match_a_numpy_reference_and_stay_within_the_bound() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 2, 49, 16)) * np.logspace(-3, 2, 16)  # channels of very different sizes
    x[0, 1, :, 5] = 0.0  # an all-zero channel
    codes, scale = encode_int8(torch.from_numpy(x))
    ref_scale = np.abs(x).max(axis=-2) / 127
    np.testing.assert_allclose(scale, ref_scale, rtol=1e-6)
    safe = np.where(ref_scale > 0, ref_scale, 1)[..., None, :]
    np.testing.assert_array_equal(codes, np.clip(np.round(x / safe), -127, 127).astype(np.int8))
    err = np.abs(decode_int8(codes, scale) - x)
    bound = np.abs(x).max(axis=-2, keepdims=True) * MAX_ERROR_OF_CHANNEL_MAX
    assert (err <= bound * (1 + 1e-5) + 1e-12).all()
    assert (decode_int8(codes, scale)[0, 1, :, 5] == 0).all()


def test_non_finite_values_are_refused_or_clipped_without_poisoning_their_channel() -> None:
    x = torch.tensor([[1.0, 2.0], [float("inf"), 3.0], [0.5, float("nan")], [-4.0, -1.0]])[
        None, None
    ]  # (B, V, N, D)
    with pytest.raises(
        Int8NonFiniteError, match=r"pairs 0\.\.0, 'acts': 2 non-finite values .*overflow: clip"
    ):
        encode_stream(x, overflow="error", where="pairs 0..0, 'acts'", n_high_norm=1, int8=True)
    out = encode_stream(x, overflow="clip", where="x", n_high_norm=1, int8=True)
    assert out["clipped"].tolist() == [2] and np.isfinite(out["scale"]).all()
    decoded = decode_int8(out["values"], out["scale"])[0, 0]
    # inf takes its channel's largest finite magnitude (4), NaN becomes 0; the rest keep their values
    want = np.array([[1.0, 2.0], [4.0, 3.0], [0.5, 0.0], [-4.0, -1.0]])
    np.testing.assert_allclose(decoded, want, atol=4 * MAX_ERROR_OF_CHANNEL_MAX + 1e-7)


@pytest.fixture(scope="module")
def int8_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("int8")
    renders = make_renders(root / "renders.zarr", n_pairs=6, failed=(3,))
    run_extract(renders, root / "features.zarr", tiny_params(feature_encoding="int8"))
    return renders, root / "features.zarr"


def test_an_int8_store_validates_and_holds_the_models_features_within_the_bound(
    int8_store: tuple[Path, Path],
) -> None:
    renders, features = int8_store
    assert validate_store(features) == []
    group = zarr.open_group(str(features), mode="r")
    assert group["acts"].dtype == np.int8 and group.attrs["encodings"] == {"acts": "int8"}
    assert group.attrs["feature_encoding"]["name"] == "int8"
    rgb = zarr.open_group(str(renders), mode="r")["rgb"][:2]
    want = ModelRunner.from_params(tiny_params(feature_encoding="int8"))(rgb)["acts"].numpy()
    got = read_acts(group, (slice(0, 2),))
    bound = np.abs(want).max(axis=-2, keepdims=True) * MAX_ERROR_OF_CHANNEL_MAX
    assert got.dtype == np.float32 and (np.abs(got - want) <= bound * (1 + 1e-5) + 1e-7).all()
    assert np.abs(got - want).max() > 0  # lossy, as it says
    # statistics come from the model's float values, not the codes
    ok = group["status"][:] == 1
    exact_mean = ModelRunner.from_params(tiny_params())(zarr.open_group(str(renders))["rgb"][:][ok])["acts"]
    np.testing.assert_allclose(group["mean"][:], exact_mean.double().mean(dim=(0, 3)).numpy(), atol=1e-4)


def test_every_reader_decodes_int8_to_the_same_values(int8_store: tuple[Path, Path]) -> None:
    renders, features = int8_store
    group = zarr.open_group(str(features), mode="r")
    decoded = read_acts(group, (slice(None),))  # (P, V, L, N, D)
    loc = 2
    name = str(group["location"][loc])
    ds = open_features_xarray(features)
    np.testing.assert_allclose(ds.acts.isel(location=loc).values, decoded[:, :, loc], rtol=1e-6)
    assert ds.acts.dims == ("pair", "view", "location", "token", "channel")
    items = {item["pair"]: item["tokens"].numpy() for item in FeatureDataset(features, name)}
    for pair, tokens in items.items():
        np.testing.assert_array_equal(tokens, decoded[pair, :, loc])
    source = StoreSource(features, renders, [name], splits=("train", "test"), batch_size=2, prefetch=0)
    batch = source.read(np.array([0, 1]))
    np.testing.assert_array_equal(batch.acts[name].numpy(), decoded[:2, :, loc])
    np.testing.assert_array_equal(pair_acts(features, 1, [name])[name].numpy(), decoded[1:2, :, loc])


def test_int8_codes_in_a_store_that_does_not_declare_them_are_reported(int8_store: tuple[Path, Path]) -> None:
    _, features = int8_store
    group = zarr.open_group(str(features), mode="r+")
    group.attrs["encodings"] = {}
    try:
        problems = validate_store(features)
    finally:
        group.attrs["encodings"] = {"acts": "int8"}
    assert any(
        "array 'acts' has dtype int8 where store_schema.yaml (features.acts) expects float16" in p
        for p in problems
    )
    group.attrs["encodings"] = {"acts": "int4"}
    try:
        problems = validate_store(features)
    finally:
        group.attrs["encodings"] = {"acts": "int8"}
    assert any("Unknown encoding 'int4'" in p for p in problems)
