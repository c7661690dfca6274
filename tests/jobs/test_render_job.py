"""The render job end to end: determinism, resume after a killed run, refusals, skips."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import trimesh
import yaml
import zarr
from typer.testing import CliRunner

from cli import app
from pipeline.errors import ConfigError, SchemaError
from pipeline.jobs.render import STATUS_FAILED, STATUS_OK, RenderParams, run_render
from pipeline.store.validate import validate_store

ARRAYS = (
    "rgb",
    "depth",
    "valid",
    "pts3d_world",
    "pts3d_view1",
    "corr",
    "intrinsics",
    "cam_to_world",
    "overlap",
)
SMALL = {"height": 24, "width": 32, "overlap": [0.1, 1.0], "min_clearance": 0.2}


def small_params(**kw) -> RenderParams:
    return RenderParams.from_dict({"n_pairs": 4, "pairs_per_scene": 2, "pairs_per_shard": 2, **SMALL, **kw})


def read_all(path: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(str(path), mode="r")
    return {name: group[name][:] for name in (*ARRAYS, "scene_id", "split", "status")}


def assert_same_store(a: Path, b: Path) -> None:
    ra, rb = read_all(a), read_all(b)
    for name in ra:
        np.testing.assert_array_equal(ra[name], rb[name], err_msg=name)


def test_store_is_valid_complete_and_independent_of_worker_count(tmp_path: Path) -> None:
    params = small_params()
    one = run_render(tmp_path / "one.zarr", params, workers=1)
    assert one["n_ok"] == 4 and one["n_failed"] == 0
    run_render(tmp_path / "two.zarr", params, workers=2)
    assert validate_store(tmp_path / "one.zarr") == []
    assert zarr.open_group(str(tmp_path / "one.zarr"), mode="r").attrs["complete"] is True
    assert_same_store(tmp_path / "one.zarr", tmp_path / "two.zarr")
    data = read_all(tmp_path / "one.zarr")
    assert (data["status"] == STATUS_OK).all()
    assert data["valid"].mean() > 0.9  # indoor rooms: nearly every ray hits something
    # the stored view-1 pointmap of view 1 has z equal to its stored depth
    z = data["pts3d_view1"][:, 0, ..., 2]
    np.testing.assert_allclose(z[data["valid"][:, 0]], data["depth"][:, 0][data["valid"][:, 0]], rtol=1e-6)
    # pairs_per_scene=2: pairs 0,1 share a scene, 2,3 share another
    assert data["scene_id"][0] == data["scene_id"][1] != data["scene_id"][2] == data["scene_id"][3]


def test_rerun_of_a_complete_store_renders_nothing_and_other_params_are_refused(tmp_path: Path) -> None:
    params = small_params()
    run_render(tmp_path / "r.zarr", params)
    assert run_render(tmp_path / "r.zarr", params)["shards_rendered"] == 0
    with pytest.raises(SchemaError, match=r"made with other render parameters \(differ: seed\).*--overwrite"):
        run_render(tmp_path / "r.zarr", small_params(seed=1))
    assert run_render(tmp_path / "r.zarr", small_params(seed=1), overwrite=True)["shards_rendered"] == 2


def _write_params(path: Path, **render) -> Path:
    path.write_text(yaml.safe_dump({"base": {"seed": 3}, "render": {**SMALL, **render}}))
    return path


def test_killed_run_resumes_to_the_same_arrays_as_an_uninterrupted_run(tmp_path: Path) -> None:
    params_file = _write_params(tmp_path / "params.yaml", n_pairs=10, pairs_per_scene=1, pairs_per_shard=2)
    cmd = [sys.executable, "-m", "cli", "render", "--params", str(params_file), "--workers", "1"]
    killed = tmp_path / "killed.zarr"
    proc = subprocess.Popen(
        [*cmd, "--out", str(killed)], start_new_session=True, cwd=Path(__file__).parents[2]
    )
    status_chunks = killed / "status" / "c"  # a shard's status chunk appears when the shard is complete
    deadline = time.monotonic() + 120
    while not any(status_chunks.glob("*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    status = zarr.open_group(str(killed), mode="r")["status"][:]
    assert 0 < (status != 0).sum() < len(status), f"kill landed outside the run: status {status}"
    assert subprocess.run([*cmd, "--out", str(killed)], cwd=Path(__file__).parents[2]).returncode == 0
    full = tmp_path / "full.zarr"
    assert subprocess.run([*cmd, "--out", str(full)], cwd=Path(__file__).parents[2]).returncode == 0
    assert_same_store(killed, full)


def test_missing_scene_folder_is_a_clear_cli_error(tmp_path: Path) -> None:
    params_file = _write_params(tmp_path / "params.yaml", n_pairs=2)
    result = CliRunner().invoke(
        app,
        [
            "render",
            "--params",
            str(params_file),
            "--source",
            str(tmp_path / "no_such_dir"),
            "--out",
            str(tmp_path / "r.zarr"),
        ],
    )
    assert result.exit_code != 0
    assert "no_such_dir" in str(result.exception) + result.output


def _box(path: Path, size: float) -> None:
    """A closed box room of edge `size` metres, normals pointing inward."""
    mesh = trimesh.creation.box(extents=(size, size, size))
    mesh.invert()
    mesh.visual = trimesh.visual.ColorVisuals(
        mesh, vertex_colors=np.tile([200, 120, 40, 255], (len(mesh.vertices), 1))
    )
    mesh.export(path)


def folder_params(scenes: Path, n_pairs: int, **kw) -> RenderParams:
    """Small renders of a scene folder: two pairs per scene and per shard."""
    return RenderParams.from_dict(
        {"source": str(scenes), "n_pairs": n_pairs, "pairs_per_scene": 2, "pairs_per_shard": 2, **SMALL, **kw}
    )


def test_unreadable_mesh_and_impossible_sampling_are_recorded_skips(tmp_path: Path) -> None:
    root = tmp_path / "scenes" / "train"
    root.mkdir(parents=True)
    (root / "broken.ply").write_bytes(b"ply\nthis is not a mesh\x00\x01")
    _box(root / "tiny.ply", 0.2)  # no camera fits 0.2 m from every wall
    _box(root / "room.ply", 4.0)
    params = folder_params(tmp_path / "scenes", 6, max_tries=20)
    summary = run_render(tmp_path / "r.zarr", params)
    group = zarr.open_group(str(tmp_path / "r.zarr"), mode="r")
    status, errors, scenes = group["status"][:], group["error"][:], group["scene_id"][:]
    by_scene = {str(s): (int(st), str(e)) for s, st, e in zip(scenes, status, errors, strict=True)}
    broken = next(k for k in by_scene if "broken" in k)
    tiny = next(k for k in by_scene if "tiny" in k)
    room = next(k for k in by_scene if "room" in k)
    assert by_scene[broken][0] == STATUS_FAILED and "broken.ply" in by_scene[broken][1]
    assert by_scene[tiny][0] == STATUS_FAILED and by_scene[tiny][1].startswith(f"sampling in {tiny}")
    assert by_scene[room][0] == STATUS_OK
    assert summary["n_ok"] == 2 and summary["n_failed"] == 4
    assert [f["scene_id"] for f in group.attrs["failed_scenes"]] == [broken]
    assert group.attrs["complete"] is True


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seed": -1}, r"render\.seed must be >= 0, got -1"),
        ({"n_scenes": 3}, r"render\.n_scenes \(3\) caps scenes of a folder source; procedural rooms number"),
    ],
)
def test_bad_render_params_are_named(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        small_params(**changes)


def test_resume_refuses_a_scene_folder_that_changed(tmp_path: Path) -> None:
    root = tmp_path / "scenes" / "train"
    root.mkdir(parents=True)
    _box(root / "m_room.ply", 4.0)
    _box(root / "n_room.ply", 4.0)
    params = folder_params(tmp_path / "scenes", 4)
    run_render(tmp_path / "r.zarr", params)
    group = zarr.open_group(str(tmp_path / "r.zarr"), mode="r+")
    group["status"][2:] = 0  # as if killed before the second shard
    _box(root / "a_room.ply", 4.0)  # a scene added since: it sorts first, so the plan shifts
    with pytest.raises(
        SchemaError, match=r"r\.zarr: 2 rendered pairs came from other scenes .*pair 0: '.*m_room"
    ):
        run_render(tmp_path / "r.zarr", params)
    (root / "a_room.ply").unlink()
    assert run_render(tmp_path / "r.zarr", params)["shards_rendered"] == 1  # the same folder resumes
