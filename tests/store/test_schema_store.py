"""The renders schema creates conforming stores, and validation names each deviation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from pipeline.errors import SchemaError, StoreNotFoundError
from pipeline.store.schema import load_schema
from pipeline.store.validate import ensure_valid, store_info, validate_store
from pipeline.store.writer import (
    StoreExistsError,
    create_store,
    open_store,
    publish,
    schema_array,
    shard_slices,
)

RENDER_ATTRS = {
    "params": {"seed": 0},
    "n_pairs": 6,
    "pairs_per_shard": 4,
    "image_size": [8, 12],
    "camera_convention": "opencv",
    "complete": False,
    "failed_scenes": [],
}


def make_renders(path: Path, **kw) -> zarr.Group:
    return create_store(
        path,
        "renders",
        sizes={"pair": 6, "y": 8, "x": 12},
        pairs_per_shard=4,
        attrs=RENDER_ATTRS,
        coords={"view": np.array([1, 2])},
        **kw,
    )


def test_every_schema_array_is_created_with_its_dims_dtype_and_chunks(tmp_path: Path) -> None:
    group = make_renders(tmp_path / "r.zarr")
    spec = load_schema().store("renders")
    assert {name for name, _ in group.arrays()} == set(spec.arrays)
    rgb = group["rgb"]
    assert rgb.shape == (6, 2, 8, 12, 3)
    assert rgb.metadata.dimension_names == ("pair", "view", "y", "x", "rgb")
    assert rgb.chunks == (1, 2, 8, 12, 3)
    assert rgb.shards == (4, 2, 8, 12, 3)
    assert group["status"].chunks == (4,)
    assert np.isnan(group["corr"][0, 0, 0, 0, 0])  # NaN fill: "no correspondence"
    assert validate_store(tmp_path / "r.zarr") == []


def test_round_trip_values_and_plain_xarray_open(tmp_path: Path) -> None:
    group = make_renders(tmp_path / "r.zarr")
    rng = np.random.default_rng(0)
    depth = rng.random((4, 2, 8, 12)).astype(np.float32)
    group["depth"][0:4] = depth
    group["scene_id"][0:4] = np.array(["a", "b", "c", "d"], dtype=np.dtypes.StringDType())
    np.testing.assert_array_equal(open_store(tmp_path / "r.zarr", "renders")["depth"][0:4], depth)
    ds = xr.open_zarr(tmp_path / "r.zarr", consolidated=False)
    np.testing.assert_array_equal(ds["depth"].sel(view=2).isel(pair=slice(0, 4)).values, depth[:, 1])
    assert list(ds["view"].values) == [1, 2]


def test_existing_store_is_refused_without_overwrite(tmp_path: Path) -> None:
    make_renders(tmp_path / "r.zarr")
    with pytest.raises(SchemaError, match=r"r\.zarr: a store already exists there; pass --overwrite"):
        make_renders(tmp_path / "r.zarr")
    make_renders(tmp_path / "r.zarr", overwrite=True)


def test_open_store_errors_name_the_path_and_kind(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match=r"nope\.zarr: no store there \(expected a renders store\)"):
        open_store(tmp_path / "nope.zarr", "renders")
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w").attrs["store_kind"] = "features"
    with pytest.raises(SchemaError, match=r"store_kind is 'features', expected 'renders'"):
        open_store(tmp_path / "other.zarr", "renders")


def _rewrite_metadata(path: Path, array: str, edit) -> None:
    meta_path = path / array / "zarr.json"
    meta = json.loads(meta_path.read_text())
    edit(meta)
    meta_path.write_text(json.dumps(meta))


def test_validation_reports_wrong_dtype(tmp_path: Path) -> None:
    path = tmp_path / "r.zarr"
    make_renders(path)
    group = zarr.open_group(str(path), mode="r+")
    del group["depth"]
    group.create_array(
        "depth", shape=(6, 2, 8, 12), dtype="float64", dimension_names=("pair", "view", "y", "x")
    )
    problems = validate_store(path)
    assert any(
        "array 'depth' has dtype float64 where store_schema.yaml (renders.depth) expects float32" in p
        for p in problems
    )


def test_validation_reports_wrong_dim_name(tmp_path: Path) -> None:
    path = tmp_path / "r.zarr"
    make_renders(path)
    _rewrite_metadata(path, "valid", lambda m: m.update(dimension_names=["pair", "view", "row", "x"]))
    problems = validate_store(path)
    assert problems == [
        f"{path}: array 'valid' has dims ('pair', 'view', 'row', 'x') where store_schema.yaml (renders.valid) "
        "expects ('pair', 'view', 'y', 'x')"
    ]


def test_validation_reports_missing_and_mistyped_attributes(tmp_path: Path) -> None:
    path = tmp_path / "r.zarr"
    group = make_renders(path)
    del group.attrs["camera_convention"]
    group.attrs["n_pairs"] = "six"
    problems = validate_store(path)
    assert (
        f"{path}: missing attribute 'camera_convention' (str) required by store_schema.yaml (renders)"
        in problems
    )
    assert f"{path}: attribute 'n_pairs' is str where store_schema.yaml (renders) expects int" in problems
    with pytest.raises(SchemaError, match="does not match the schema"):
        ensure_valid(path)


def test_validation_reports_missing_and_extra_arrays(tmp_path: Path) -> None:
    path = tmp_path / "r.zarr"
    group = make_renders(path)
    del group["corr"]
    group.create_array("junk", shape=(3,), dtype="int8")
    problems = validate_store(path)
    assert f"{path}: missing array 'corr' listed in store_schema.yaml (renders.corr)" in problems
    assert f"{path}: array 'junk' is not listed in store_schema.yaml (renders)" in problems


def test_store_info_lists_arrays_with_dims(tmp_path: Path) -> None:
    make_renders(tmp_path / "r.zarr")
    text = store_info(tmp_path / "r.zarr")
    assert "store_kind='renders'" in text
    assert "rgb" in text and "(pair: 6, view: 2, y: 8, x: 12, rgb: 3)" in text


def test_shard_slices_cover_all_pairs_without_overlap() -> None:
    slices = list(shard_slices(10, 4))
    assert [(s.start, s.stop) for s in slices] == [(0, 4), (4, 8), (8, 10)]


def test_unknown_store_kind_and_array_suggest_names() -> None:
    schema = load_schema()
    with pytest.raises(SchemaError, match=r"Unknown store kind 'render'. Did you mean 'renders'\?"):
        schema.store("render")
    with pytest.raises(SchemaError, match=r"Unknown array of store 'renders' 'dpth'. Did you mean 'depth'\?"):
        schema.array("renders", "dpth")


def test_a_store_is_published_whole_and_a_second_creator_loses_cleanly(tmp_path: Path) -> None:
    first = make_renders(tmp_path / "r.zarr")
    first["depth"][0] = 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["r.zarr"]  # no staging folder left behind
    staging = tmp_path / ".r.zarr.creating-other"
    make_renders(staging)  # another process's finished store, about to be moved into place
    with pytest.raises(StoreExistsError, match=r"r\.zarr: another process created the store first"):
        publish(staging, tmp_path / "r.zarr")
    assert (open_store(tmp_path / "r.zarr", "renders")["depth"][0] == 1.0).all()  # the winner's data kept


def test_unknown_encodings_are_refused_when_creating(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=r"renders\.depth: Unknown encoding 'int8'"):
        make_renders(tmp_path / "r.zarr", encodings={"depth": "int8"})
    with pytest.raises(SchemaError, match=r"Unknown array of store 'renders' 'dpeth'"):
        make_renders(tmp_path / "r.zarr", encodings={"dpeth": "int8"})
    assert not (tmp_path / "r.zarr").exists()


def test_reopened_arrays_write_as_the_schema_says(tmp_path: Path) -> None:
    make_renders(tmp_path / "r.zarr")
    reopened = open_store(tmp_path / "r.zarr", "renders", mode="r+")
    assert load_schema().array("renders", "depth").write_empty_chunks
    assert not reopened["depth"].config.write_empty_chunks  # zarr forgets the creation config
    empty = np.full((1, *reopened["depth"].shape[1:]), reopened["depth"].fill_value, np.float32)  # fill only
    metadata_only = reopened["depth"].nbytes_stored()
    reopened["depth"][:1] = empty
    assert reopened["depth"].nbytes_stored() == metadata_only  # zarr's default skipped the chunk
    schema_array(reopened, "renders", "depth")[:1] = empty
    assert reopened["depth"].nbytes_stored() > metadata_only  # the schema's choice: every chunk is stored
    np.testing.assert_array_equal(reopened["depth"][:1], empty)
