"""The extract job end to end on the tiny model: values, resume, disjoint writers, refusals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from pipeline.errors import ConfigError, SchemaError
from pipeline.jobs import extract as extract_job
from pipeline.jobs.extract import DiskSpaceError, run_extract
from pipeline.jobs.extract_model import ModelRunner
from pipeline.store.attention_codec import UINT8_MAX_ABS_ERROR
from pipeline.store.features import STATUS_OK, STATUS_SKIPPED
from pipeline.store.validate import validate_store

from .conftest import make_renders, tiny_params

ROOT = Path(__file__).parents[2]
COMPARED = (
    "enc",
    "acts",
    "attn",
    "attn_argmax",
    "attn_full",
    "pts3d",
    "conf",
    "token_norm",
    "high_norm_token",
    "acts_sum",
    "acts_sumsq",
    "mean",
    "std",
    "norm_percentile",
    "status",
    "split",
)


def assert_same_store(a: Path, b: Path) -> None:
    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    for name in COMPARED:
        np.testing.assert_array_equal(ga[name][:], gb[name][:], err_msg=name)
    assert ga.attrs["complete"] and gb.attrs["complete"]


def test_stored_features_equal_the_captured_tensors(renders: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.zarr"
    summary = run_extract(renders, out, tiny_params())
    assert summary["complete"] and summary["model_weights"] == "random-init:tiny:0"
    assert validate_store(out) == []
    group = zarr.open_group(str(out), mode="r")
    assert group.attrs["model_weights"] == "random-init:tiny:0" and group.attrs["patch_grid"] == [4, 4]
    np.testing.assert_array_equal(group["status"][:], [1, 1, 1, STATUS_SKIPPED, 1, 1])
    runner = ModelRunner.from_params(tiny_params())
    rgb = zarr.open_group(str(renders), mode="r")["rgb"][:2]
    want = {k: v.numpy() for k, v in runner(rgb).items()}  # pairs 0 and 1, one batch as in the job
    np.testing.assert_array_equal(group["acts"][:2], want["acts"].astype(np.float16))
    np.testing.assert_array_equal(group["enc"][:2], want["enc"].astype(np.float16))
    np.testing.assert_allclose(group["pts3d"][:2], want["pts3d"], rtol=1e-6)
    # compact attention within its stated error; argmaxes kept; full maps only for test-split pairs
    p = want["attn"]
    decoded = group["attn"][:2].astype(np.float32) / 255
    assert np.abs(decoded - p).max() <= UINT8_MAX_ABS_ERROR + 1e-7
    np.testing.assert_array_equal(group["attn_argmax"][:2], p.argmax(-1))
    np.testing.assert_array_equal(group["has_full_attn"][:], [False, True, False, False, False, True])
    np.testing.assert_array_equal(group["attn_full"][1], p[1].astype(np.float16))
    assert np.isnan(group["attn_full"][0]).all() and np.isnan(group["acts"][3]).all()
    # statistics: mean over the extracted pairs and tokens
    acts = group["acts"][:][group["status"][:] == STATUS_OK].astype(np.float64)
    np.testing.assert_allclose(group["mean"][:], acts.mean(axis=(0, 3)), rtol=1e-3, atol=1e-3)


def test_rerun_does_nothing_and_mismatched_runs_are_refused(renders: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.zarr"
    run_extract(renders, out, tiny_params())
    assert run_extract(renders, out, tiny_params(batch_size=1))["shards_written"] == 0  # run-only option
    with pytest.raises(
        SchemaError,
        match=r"made by another model, renders store or parameters \(differ: model_weights, params\.seed\).*--overwrite",
    ):
        run_extract(renders, out, tiny_params(seed=1))
    other = make_renders(tmp_path / "other.zarr", seed=5)
    with pytest.raises(SchemaError, match=r"differ: renders\.params"):
        run_extract(other, out, tiny_params())
    assert run_extract(renders, out, tiny_params(seed=1), overwrite=True)["shards_written"] == 3


def test_disk_space_is_checked_before_anything_is_written(renders: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.zarr"
    with pytest.raises(
        DiskSpaceError, match=r"f\.zarr: this run writes up to 0\.00 GB .* only 0\.00 GB are free"
    ):
        run_extract(renders, out, tiny_params(), free_bytes=lambda path: 1000)
    assert zarr.open_group(str(out), mode="r")["status"][:].sum() == 0


def test_overwrite_is_refused_beside_other_shard_processes(renders: Path, tmp_path: Path) -> None:
    run_extract(renders, tmp_path / "f.zarr", tiny_params(), shard=(0, 2))
    with pytest.raises(ConfigError, match=r"--overwrite with --shard 1/2: delete .*f\.zarr once"):
        run_extract(renders, tmp_path / "f.zarr", tiny_params(), shard=(1, 2), overwrite=True)
    assert (zarr.open_group(str(tmp_path / "f.zarr"), mode="r")["status"][:2] != 0).all()  # shard 0 kept


def test_disjoint_shard_writers_give_the_same_store_as_one(renders: Path, tmp_path: Path) -> None:
    run_extract(renders, tmp_path / "one.zarr", tiny_params())
    two = tmp_path / "two.zarr"
    code = (
        "import sys; from pathlib import Path; from pipeline.jobs.extract import run_extract; "
        "from tests.extract.conftest import tiny_params; "
        "run_extract(Path(sys.argv[1]), Path(sys.argv[2]), tiny_params(), shard=(int(sys.argv[3]), 2))"
    )
    procs = [  # started together on a store that does not exist yet: both try to create it
        subprocess.Popen([sys.executable, "-c", code, str(renders), str(two), str(i)], cwd=ROOT)
        for i in (0, 1)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    run_extract(renders, two, tiny_params(), shard=(1, 2))  # nothing left: finalises
    assert_same_store(tmp_path / "one.zarr", two)


@pytest.mark.parametrize("overlap", [True, False])
def test_writer_thread_or_none_gives_the_same_store_and_surfaces_errors(
    renders: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overlap: bool
) -> None:
    run_extract(renders, tmp_path / "reference.zarr", tiny_params())
    monkeypatch.setattr(extract_job, "overlap_pays", lambda device: overlap)
    run_extract(renders, tmp_path / "f.zarr", tiny_params())
    assert_same_store(tmp_path / "reference.zarr", tmp_path / "f.zarr")

    def full_disk(*args: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(extract_job, "write_shard", full_disk)
    with pytest.raises(OSError, match="No space left"):  # raised in the writer thread, re-raised here
        run_extract(renders, tmp_path / "g.zarr", tiny_params())


def test_writer_thread_only_where_the_model_leaves_cores_free(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extract_job, "usable_cores", lambda: 4)
    monkeypatch.setattr(extract_job.torch, "get_num_threads", lambda: 4)
    assert extract_job.overlap_pays(torch.device("cuda"))
    assert not extract_job.overlap_pays(torch.device("cpu"))
    monkeypatch.setattr(extract_job.torch, "get_num_threads", lambda: 3)
    assert extract_job.overlap_pays(torch.device("cpu"))


def test_killed_run_resumes_to_the_same_store(tmp_path: Path) -> None:
    renders = make_renders(tmp_path / "r.zarr", n_pairs=16, failed=())
    run_extract(renders, tmp_path / "whole.zarr", tiny_params(pairs_per_shard=1, batch_size=1))
    killed = tmp_path / "killed.zarr"
    code = (
        "import sys, time; from pathlib import Path; from pipeline.jobs.extract_model import ModelRunner; "
        "from pipeline.jobs.extract import run_extract; from tests.extract.conftest import tiny_params; "
        "f = ModelRunner.__call__; ModelRunner.__call__ = lambda *a, **k: (time.sleep(0.3), f(*a, **k))[1]; "
        "run_extract(Path(sys.argv[1]), Path(sys.argv[2]), tiny_params(pairs_per_shard=1, batch_size=1))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(renders), str(killed)], cwd=ROOT, start_new_session=True
    )
    marker = killed / "status" / "c" / "0"
    deadline = time.time() + 60
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    status = zarr.open_group(str(killed), mode="r")["status"][:]
    assert 0 < (status == STATUS_OK).sum() < 16, status
    summary = run_extract(renders, killed, tiny_params(pairs_per_shard=1, batch_size=1))
    assert 0 < summary["shards_written"] < 16
    assert_same_store(tmp_path / "whole.zarr", killed)
