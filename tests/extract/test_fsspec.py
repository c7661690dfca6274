"""Extract to stores behind fsspec URLs (memory:// here, s3:// and the like for users): the same store as on a local folder."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
import zarr
from typer.testing import CliRunner

from cli import app
from pipeline.errors import ConfigError, SchemaError
from pipeline.jobs.extract import run_extract
from pipeline.store.features import open_features
from pipeline.store.location import exists, remove, store_location
from pipeline.store.validate import validate_store

from .conftest import make_renders, tiny_params

COMPARED = ("enc", "acts", "attn", "attn_argmax", "pts3d", "conf", "token_norm", "status", "mean", "std")


@pytest.fixture(scope="module")
def local_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:

    root = tmp_path_factory.mktemp("fsspec")
    renders = make_renders(root / "renders.zarr")
    run_extract(renders, root / "local.zarr", tiny_params())
    return renders, root / "local.zarr"


@pytest.fixture
def memory_url() -> str:
    url = f"memory://probe3r-test-{uuid.uuid4().hex[:8]}/features.zarr"
    yield url
    if exists(url):
        remove(url)


def assert_same(a: zarr.Group, b: zarr.Group) -> None:
    for name in COMPARED:
        np.testing.assert_array_equal(a[name][:], b[name][:], err_msg=name)


def test_store_location_keeps_urls_and_makes_paths() -> None:
    assert store_location("s3://bucket/f.zarr") == "s3://bucket/f.zarr"
    assert store_location("data/f.zarr") == Path("data/f.zarr")
    assert store_location("file:///tmp/f.zarr") == Path("/tmp/f.zarr")
    assert store_location("file://localhost/tmp/f.zarr") == Path("/tmp/f.zarr")
    with pytest.raises(ConfigError, match=r"file://nas/f\.zarr: a file:// URL must name a local path.*'nas'"):
        store_location("file://nas/f.zarr")  # not the relative folder nas/f.zarr


def test_extract_to_a_memory_url_gives_the_local_store_and_resumes(
    local_store: tuple[Path, Path], memory_url: str
) -> None:
    renders, local = local_store
    summary = run_extract(renders, memory_url, tiny_params())
    assert summary["complete"] and validate_store(memory_url) == []
    assert_same(zarr.open_group(memory_url, mode="r"), zarr.open_group(str(local), mode="r"))
    assert run_extract(renders, memory_url, tiny_params())["shards_written"] == 0  # resumed: nothing left
    with pytest.raises(SchemaError, match=r"made by another model, renders store or parameters"):
        run_extract(renders, memory_url, tiny_params(seed=1))
    ds = xr.open_zarr(memory_url, consolidated=False)  # plain xarray reads it too
    assert ds.acts.dims == ("pair", "view", "location", "token", "channel")


def test_the_extract_command_takes_a_url(
    local_store: tuple[Path, Path], memory_url: str, tmp_path: Path
) -> None:
    renders, local = local_store
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "base": {"seed": 0, "device": "cpu"},
                "extract": {"model": "tiny", "pairs_per_shard": 2, "batch_size": 2},
            }
        )
    )
    result = CliRunner().invoke(
        app, ["extract", "--params", str(params), "--renders", str(renders), "--out", memory_url]
    )
    assert result.exit_code == 0, result.output + str(result.exception)
    assert_same(open_features(memory_url), zarr.open_group(str(local), mode="r"))
