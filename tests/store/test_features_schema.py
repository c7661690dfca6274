"""The features schema: a created store conforms, and each deviation is named precisely."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import zarr

from pipeline.errors import SchemaError
from pipeline.store.features import FeatureLayout, create_features_store, open_features
from pipeline.store.validate import validate_store

LAYOUT = FeatureLayout(
    n_pairs=5,
    pairs_per_shard=2,
    locations=("dec_in", "b00.self", "b00.cross", "b00.mlp"),
    attn_locations=("b00.self", "b00.cross"),
    image_size=(32, 32),
    patch_grid=(2, 2),
    enc_dim=8,
    dec_dim=4,
    n_heads=2,
)
ATTRS = {
    "model_name": "tiny",
    "model_weights": "random-init:tiny:0",
    "model_config": {},
    "renders": {"path": "r.zarr"},
    "params": {},
    "feature_encoding": {"name": "fp16", "max_rel_error": 2**-11},
    "attention_encoding": {"name": "rowmax-uint8", "max_abs_error": 0.002},
}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    create_features_store(tmp_path / "f.zarr", LAYOUT, attrs=ATTRS)
    return tmp_path / "f.zarr"


def test_created_store_conforms_with_the_chosen_layout(store: Path) -> None:
    assert validate_store(store) == []
    group = open_features(store)
    acts = group["acts"]
    assert acts.metadata.dimension_names == ("pair", "view", "location", "token", "channel")
    assert acts.shape == (5, 2, 4, 4, 4) and acts.chunks == (1, 2, 1, 4, 4) and acts.shards == (2, 2, 4, 4, 4)
    assert group["attn"].shape == (5, 2, 2, 2, 4, 4) and str(group["attn"].dtype) == "uint8"
    assert list(group["location"][:]) == list(LAYOUT.locations)
    assert group.attrs["token_order"] == "row-major" and group.attrs["patch_grid"] == [2, 2]


def _edit(path: Path, array: str, **changes) -> None:
    meta_path = path / array / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta.update(changes)
    meta_path.write_text(json.dumps(meta))


def test_wrong_dtype_is_named(store: Path) -> None:
    _edit(store, "acts", data_type="float32", fill_value="NaN")
    assert (
        f"{store}: array 'acts' has dtype float32 where store_schema.yaml (features.acts) expects float16"
        in validate_store(store)
    )


def test_wrong_dim_name_is_named(store: Path) -> None:
    _edit(store, "attn", dimension_names=["pair", "view", "attn_location", "head", "query", "patch"])
    assert validate_store(store) == [
        f"{store}: array 'attn' has dims ('pair', 'view', 'attn_location', 'head', 'query', 'patch') where "
        "store_schema.yaml (features.attn) expects ('pair', 'view', 'attn_location', 'head', 'query', 'key')"
    ]


def test_missing_attribute_is_named_and_open_refuses(store: Path) -> None:
    group = zarr.open_group(str(store), mode="r+")
    del group.attrs["model_weights"]
    assert validate_store(store) == [
        f"{store}: missing attribute 'model_weights' (str) required by store_schema.yaml (features)"
    ]
    with pytest.raises(
        SchemaError, match=r"f\.zarr does not match the schema:\n  .*missing attribute 'model_weights'"
    ):
        open_features(store)


def test_wrong_chunks_are_named(tmp_path: Path, store: Path) -> None:
    group = zarr.open_group(str(store), mode="r+")
    del group["token_norm"]
    group.create_array(
        "token_norm",
        shape=(5, 2, 4, 4),
        chunks=(1, 2, 4, 4),
        dtype="float32",
        dimension_names=("pair", "view", "location", "token"),
        compressors=zarr.codecs.BloscCodec(cname="zstd", clevel=1, shuffle="shuffle", blocksize=262144),
    )
    assert validate_store(store) == [
        f"{store}: array 'token_norm' has chunks (1, 2, 4, 4) where store_schema.yaml (features.token_norm) "
        "expects (2, 2, 4, 4)"
    ]
