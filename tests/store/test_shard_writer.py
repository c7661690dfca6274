"""Whole shards written by shard_writer read back through zarr exactly as zarr's own writes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

from pipeline.errors import ShapeError
from pipeline.store import shard_writer

CODECS = {
    "blosc-shuffle": BloscCodec(cname="zstd", clevel=1, shuffle="shuffle", blocksize=262144),
    "zstd": ZstdCodec(level=3),
    "none": None,
}


def make(
    group: zarr.Group, name: str, dtype: str, codec: str, *, fill: object, write_empty: bool
) -> zarr.Array:
    return group.create_array(
        name,
        shape=(10, 2, 3, 40),
        chunks=(1, 2, 1, 40),
        shards=(4, 2, 3, 40),
        dtype=dtype,
        compressors=[CODECS[codec]] if CODECS[codec] else None,
        fill_value=fill,
        config={"write_empty_chunks": write_empty},
    )


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize(
    ("dtype", "fill"), [("float16", np.nan), ("uint8", 0), ("int32", -1), ("bool", False)]
)
def test_shards_read_back_as_zarr_writes_them(tmp_path: Path, codec: str, dtype: str, fill: object) -> None:
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    by_zarr = make(group, "by_zarr", dtype, codec, fill=fill, write_empty=True)
    ours = make(group, "ours", dtype, codec, fill=fill, write_empty=True)
    assert shard_writer.supports(ours)
    x = (np.random.default_rng(0).normal(size=(10, 2, 3, 40)) * 50).astype(dtype)
    with ThreadPoolExecutor(2) as pool:
        for k, sl in enumerate((slice(0, 4), slice(4, 8), slice(8, 10))):  # the last shard is short
            by_zarr[sl] = x[sl]
            shard_writer.write_shard(ours, (k, 0, 0, 0), x[sl], pool)
    np.testing.assert_array_equal(ours[:], x)
    np.testing.assert_array_equal(ours[:], by_zarr[:])
    assert ours.nbytes_stored() == by_zarr.nbytes_stored()  # same compressed sizes, same index


def test_empty_chunks_are_left_out_and_an_empty_shard_is_deleted(tmp_path: Path) -> None:
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    by_zarr = make(group, "by_zarr", "float16", "blosc-shuffle", fill=np.nan, write_empty=False)
    ours = make(group, "ours", "float16", "blosc-shuffle", fill=np.nan, write_empty=False)
    x = np.full((10, 2, 3, 40), np.nan, np.float16)
    x[1] = 1.5  # one pair of shard 0 holds values; shard 1 holds none
    with ThreadPoolExecutor(2) as pool:
        shard_writer.write_shard(ours, (1, 0, 0, 0), np.ones((4, 2, 3, 40), np.float16), pool)
        for k, sl in enumerate((slice(0, 4), slice(4, 8))):
            by_zarr[sl] = x[sl]
            shard_writer.write_shard(ours, (k, 0, 0, 0), x[sl], pool)
    np.testing.assert_array_equal(ours[:8], x[:8])
    assert ours.nbytes_stored() == by_zarr.nbytes_stored()
    assert not (tmp_path / "s.zarr" / "ours" / "c" / "1" / "0" / "0" / "0").exists()


def test_a_wrong_shape_and_unsupported_arrays_are_refused(tmp_path: Path) -> None:
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    ours = make(group, "ours", "float16", "zstd", fill=np.nan, write_empty=True)
    with (
        ThreadPoolExecutor(1) as pool,
        pytest.raises(ShapeError, match=r"ours: shard \(2, 0, 0, 0\) covers \(2, 2, 3, 40\)"),
    ):
        shard_writer.write_shard(ours, (2, 0, 0, 0), np.zeros((4, 2, 3, 40), np.float16), pool)
    strings = group.create_array("s", shape=(4,), chunks=(1,), shards=(4,), dtype=np.dtypes.StringDType())
    unsharded = group.create_array("u", shape=(4,), chunks=(2,), dtype="float32")
    assert not shard_writer.supports(strings) and not shard_writer.supports(unsharded)


def test_an_array_at_the_store_root_is_written_inside_its_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a stray key "/c/0/..." would land outside: under / or here
    root = zarr.create_array(
        str(tmp_path / "a.zarr"), shape=(8, 4), chunks=(1, 4), shards=(4, 4), dtype="float32", fill_value=0.0
    )
    x = np.arange(32, dtype=np.float32).reshape(8, 4) + 1
    with ThreadPoolExecutor(2) as pool:
        for k in (0, 1):
            shard_writer.write_shard(root, (k, 0), x[4 * k : 4 * k + 4], pool)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "a.zarr"), mode="r")[:], x)
    assert (tmp_path / "a.zarr" / "c" / "1" / "0").is_file() and not Path("/c/0/0").exists()
