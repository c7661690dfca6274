"""The correspond job: data/renders.zarr → data/correspondences.zarr, shard by shard.

Shards follow the renders store's shards, each written whole by one task with its `status`
last, so a killed run resumes where it stopped. A pair whose render is still pending stays
pending here too; a pair whose render failed is marked skipped.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.correspond.patches import patch_correspondences
from pipeline.errors import ConfigError, SchemaError
from pipeline.jobs.parallel import run_shard_tasks
from pipeline.store.writer import create_store, open_store, schema_array, shard_slices

log = logging.getLogger(__name__)

STATUS_PENDING, STATUS_OK, STATUS_SKIPPED = 0, 1, 2
RENDER_OK, RENDER_PENDING = 1, 0


def correspond_shard(renders: str, out: str, start: int, stop: int, patch_size: int) -> int:
    """Compute and write the correspondences of pairs start … stop-1; returns pairs computed."""
    src = open_store(Path(renders), "renders")
    sl = slice(start, stop)
    render_status = src["status"][sl]
    result = patch_correspondences(src["corr"][sl], patch_size)
    ok = render_status == RENDER_OK
    status = np.where(
        ok, STATUS_OK, np.where(render_status == RENDER_PENDING, STATUS_PENDING, STATUS_SKIPPED)
    )
    group = open_store(Path(out), "correspondences", mode="r+")
    values = {
        "pixel_patch": np.where(ok[:, None, None, None], result.pixel_patch, -1),
        "patch_match": np.where(ok[:, None, None], result.patch_match, -1),
        "patch_count": np.where(ok[:, None, None], result.patch_count, 0),
        "patch_support": np.where(ok[:, None, None], result.patch_support, 0),
        "status": status.astype(np.uint8),  # last: marks the shard done
    }
    for name, value in values.items():
        schema_array(group, "correspondences", name)[sl] = value
    return int(ok.sum())


def _open_or_create(renders: Path, out: Path, patch_size: int, overwrite: bool) -> tuple[Any, Any]:
    src = open_store(renders, "renders")
    H, W = (int(s) for s in src.attrs["image_size"])
    if H % patch_size or W % patch_size:
        raise ConfigError(
            f"correspond.patch_size {patch_size} does not divide {renders}'s image size ({H}, {W})"
        )
    identity = {"renders_params": src.attrs.get("params"), "patch_size": patch_size}
    if out.exists() and not overwrite:
        group = open_store(out, "correspondences", mode="r+")
        found = {k: group.attrs.get(k) for k in identity}
        if found != identity:
            diff = sorted(k for k in identity if found[k] != identity[k])
            raise SchemaError(
                f"{out}: made from other renders or parameters (differ: {', '.join(diff)}); "
                "pass --overwrite to replace it"
            )
        return src, group
    n_pairs, per_shard = int(src.attrs["n_pairs"]), int(src.attrs["pairs_per_shard"])
    group = create_store(
        out,
        "correspondences",
        sizes={"pair": n_pairs, "y": H, "x": W, "token": (H // patch_size) * (W // patch_size)},
        pairs_per_shard=per_shard,
        attrs={
            **identity,
            "renders": str(renders),
            "grid": [H // patch_size, W // patch_size],
            "n_pairs": n_pairs,
            "pairs_per_shard": per_shard,
            "complete": False,
        },
        coords={"view": np.array([1, 2])},
        overwrite=overwrite,
    )
    return src, group


def run_correspond(
    renders: Path, out: Path, *, patch_size: int = 16, workers: int = 1, overwrite: bool = False
) -> dict[str, int]:
    """Write the patch correspondences of every rendered pair of `renders` to `out`.

    Args:
        renders: a renders store (`probe3r render`).
        out: the correspondences store to create or resume.
        patch_size: side of a patch in pixels; the patch grid is row-major (h, w).
        workers: processes on this machine, one shard each at a time.
        overwrite: replace an existing store instead of resuming it.

    Returns:
        n_pairs, n_ok (pairs with correspondences), n_pending and shards_computed.
    """
    if patch_size < 1:
        raise ConfigError(f"correspond.patch_size must be >= 1, got {patch_size}")
    _, group = _open_or_create(renders, out, patch_size, overwrite)
    n_pairs, per_shard = int(group.attrs["n_pairs"]), int(group.attrs["pairs_per_shard"])
    status = group["status"][:]
    tasks = [
        (str(renders), str(out), sl.start, sl.stop, patch_size)
        for sl in shard_slices(n_pairs, per_shard)
        if (status[sl] == STATUS_PENDING).any()
    ]
    log.info("%s: %d shards to compute", out, len(tasks))
    run_shard_tasks(correspond_shard, tasks, workers=workers, desc="correspond")
    status = group["status"][:]
    group.attrs["complete"] = bool((status != STATUS_PENDING).all())
    return {
        "n_pairs": n_pairs,
        "n_ok": int((status == STATUS_OK).sum()),
        "n_pending": int((status == STATUS_PENDING).sum()),
        "shards_computed": len(tasks),
    }
