"""The extract job: data/renders.zarr → the model, captured → data/features.zarr, shard by shard.

Every shard is computed whole and written whole by one writer, `status` last, while the
next shard is computed (a writer thread overlaps compute and I/O where that pays). So a
killed run resumed with the same parameters recomputes only shards with a pending status
and ends with the same store, and `shard=(i, n)` lets n processes (or GPUs, or dask
workers) fill disjoint shards of one store. A store made by another model, renders store
or parameters is refused; the bytes to write are estimated before starting and checked
against free space.
"""

from __future__ import annotations

import functools
import logging
import queue
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr
from tqdm.auto import tqdm

from pipeline.cores import usable_cores
from pipeline.errors import ConfigError, Probe3rError, SchemaError
from pipeline.jobs.extract_model import ModelRunner
from pipeline.jobs.extract_params import ExtractParams
from pipeline.jobs.extract_shard import ShardEncoder, ShardInput
from pipeline.jobs.parallel import run_shard_tasks
from pipeline.store.attention_codec import UINT8_ARGMAX, UINT8_MAX_ABS_ERROR
from pipeline.store.features import (
    STATUS_PENDING,
    FeatureLayout,
    create_features_store,
    finalise_statistics,
    open_features,
    write_shard,
)
from pipeline.store.float16 import mantissa_max_rel_error
from pipeline.store.int8 import MAX_ERROR_OF_CHANNEL_MAX
from pipeline.store.location import StoreLocation, exists, is_url, store_location
from pipeline.store.writer import StoreExistsError, open_store, shard_slices

log = logging.getLogger(__name__)
# Captured batches waiting for the encoding thread: enough to keep both threads busy; each
# holds a batch's float32 activations and attention maps (hundreds of MB on a CPU).
CAPTURED_BATCHES_IN_FLIGHT = 2

FreeBytes = Callable[[Path], int]
SHARDS_PER_REMOTE_TASK = 8


class DiskSpaceError(Probe3rError, OSError):
    """The features store would not fit on the disk that holds it."""


def disk_free_bytes(path: Path) -> int:
    """Free bytes on the filesystem that holds `path` (or its nearest existing parent)."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free


def _renders_identity(renders: StoreLocation, group: zarr.Group) -> dict[str, Any]:
    attrs = group.attrs
    return {
        "path": str(renders),
        "params": attrs.get("params"),
        "n_pairs": attrs.get("n_pairs"),
        "image_size": attrs.get("image_size"),
    }


def _store_attrs(runner: ModelRunner, params: ExtractParams, renders_id: dict[str, Any]) -> dict[str, Any]:
    bits = params.mantissa_bits()
    return {
        "model_name": params.model,
        "model_weights": runner.weights_id,
        "model_config": runner.config_dict,
        "renders": renders_id,
        "params": params.identity(),
        "feature_encoding": _feature_encoding(params.feature_encoding, bits),
        "attention_encoding": {"name": UINT8_ARGMAX, "max_abs_error": UINT8_MAX_ABS_ERROR},
    }


def _feature_encoding(name: str, bits: int) -> dict[str, Any]:
    """The `feature_encoding` attribute: the encoding and its error bound."""
    if name == "int8":
        return {
            "name": name,
            "max_error_of_channel_max": MAX_ERROR_OF_CHANNEL_MAX,
            "decode": "acts * acts_scale[..., None, :]",
        }
    return {"name": name, "max_rel_error": 2.0**-11 if bits == 10 else mantissa_max_rel_error(bits)}


def _check_same(out: StoreLocation, stored: dict[str, Any], wanted: dict[str, Any]) -> None:
    """Refuse to append to a store whose model, renders or parameters differ (naming what differs)."""
    diff = [key for key in ("model_name", "model_weights") if stored.get(key) != wanted[key]]
    stored_params = stored.get("params") or {}
    diff += [f"params.{k}" for k in wanted["params"] if stored_params.get(k) != wanted["params"][k]]
    stored_renders = stored.get("renders") or {}
    diff += [
        f"renders.{k}"
        for k in ("params", "n_pairs", "image_size")
        if stored_renders.get(k) != wanted["renders"][k]
    ]
    if diff:
        raise SchemaError(
            f"{out}: made by another model, renders store or parameters (differ: {', '.join(diff)}); "
            "pass --overwrite to replace it or choose another --out"
        )


def bytes_per_pair(layout: FeatureLayout, n_full_locations: int) -> tuple[int, int]:
    """Uncompressed bytes one pair adds: (without full attention, extra with full attention)."""
    V, N, H, W = 2, layout.n_tokens, *layout.image_size
    L, La, A = len(layout.locations), len(layout.attn_locations), layout.n_heads
    base = V * N * layout.enc_dim * 2  # enc, float16
    if layout.acts_encoding == "int8":
        base += V * L * (N + 4) * layout.dec_dim  # int8 codes + float32 scales
    else:
        base += V * L * N * layout.dec_dim * 2
    base += V * La * A * N * (N + 2)  # attn uint8 + attn_argmax uint16
    base += V * H * W * 4 * 4 + V * (L + 1) * N * 4  # pts3d + conf, token norms
    return base, V * n_full_locations * A * N * N * 2


def _space_check(out: StoreLocation, needed: int, free_bytes: FreeBytes) -> None:
    if is_url(out):  # an object store has no free-space figure to check against
        log.info("%s: about %.2f GB to write (uncompressed upper bound)", out, needed / 1e9)
        return
    free = free_bytes(out.parent if not out.exists() else out)
    log.info(
        "%s: about %.2f GB to write (uncompressed upper bound), %.2f GB free", out, needed / 1e9, free / 1e9
    )
    if needed > free:
        raise DiskSpaceError(
            f"{out}: this run writes up to {needed / 1e9:.2f} GB (uncompressed estimate) but only "
            f"{free / 1e9:.2f} GB are free there; free space, choose another --out, or extract fewer "
            "locations/attention maps"
        )


def _open_or_create(
    renders: StoreLocation, out: StoreLocation, params: ExtractParams, runner: ModelRunner, overwrite: bool
) -> tuple[zarr.Group, zarr.Group, FeatureLayout]:
    rgroup = open_store(renders, "renders")
    pending = int((rgroup["status"][:] == STATUS_PENDING).sum())
    if pending:
        raise SchemaError(f"{renders}: {pending} pairs are not rendered yet; finish `probe3r render` first")
    H, W = rgroup.attrs["image_size"]
    layout = runner.layout(n_pairs=int(rgroup.attrs["n_pairs"]), image_size=(H, W))
    attrs = _store_attrs(runner, params, _renders_identity(renders, rgroup))
    if not exists(out) or overwrite:
        try:
            return rgroup, create_features_store(out, layout, attrs=attrs, overwrite=overwrite), layout
        except StoreExistsError:  # a process started beside this one created it first
            log.info("%s: created by another process; joining it", out)
    group = open_features(out, mode="r+")
    _check_same(out, dict(group.attrs), attrs)
    return rgroup, group, layout


def _run_job(group: zarr.Group, job: tuple) -> None:
    """Encode one captured batch ("batch", encoder, idx, captured) or write one finished shard
    ("shard", encoder, shard_index, start)."""
    kind, encoder, *rest = job
    if kind == "batch":
        encoder.add(*rest)
    else:
        write_shard(group, *rest, encoder.result())


def _encode_and_write(group: zarr.Group, jobs: queue.Queue, errors: list[BaseException]) -> None:
    """The second thread of extraction: run each job of `jobs` until None ends it."""
    while (job := jobs.get()) is not None:
        if errors:
            continue  # drain the queue so the model thread never blocks on a dead consumer
        try:
            _run_job(group, job)
        except BaseException as err:  # handed to the model thread, which re-raises it
            errors.append(err)


def overlap_pays(device: torch.device) -> bool:
    """Whether encoding and writing should run in a second thread beside the forward pass.

    A GPU forward pass leaves the CPU free, and so does a CPU model held to fewer threads
    than there are cores. A CPU model on every core gains nothing from a second busy
    thread and loses to the oversubscription: on the 2-core VM, extract ran at 1.75 pairs/s
    overlapped and 1.97 with encoding and writing done in turn (docs/store.md).
    """
    return device.type != "cpu" or torch.get_num_threads() < usable_cores()


def extract_shards(
    renders: str,
    out: str,
    params: ExtractParams,
    shard_ids: Sequence[int],
    runner: ModelRunner | None = None,
    progress: bool = False,
) -> int:
    """Compute and write the given shards of an existing features store; returns shards written.

    A top-level function so dask can ship it to another process or machine; the model is
    built once per call (or `runner` is reused in-process). The model runs in this thread;
    where that pays (`overlap_pays`), a second thread encodes each batch and writes each
    finished shard, so the forward pass of batch i+1 overlaps the encoding of batch i and
    the writing of the previous shard; otherwise they take turns in this thread.
    `progress` shows a bar of pairs (the dask path has its own bar).
    """
    if not shard_ids:
        return 0
    runner = runner or ModelRunner.from_params(params)
    rgroup = open_store(store_location(renders), "renders")
    group = open_features(store_location(out), mode="r+")
    layout = runner.layout(n_pairs=int(group.attrs["n_pairs"]), image_size=tuple(group.attrs["image_size"]))
    full_locs = np.isin(np.array(layout.attn_locations), runner.full_attention_locations)
    slices = list(shard_slices(layout.n_pairs, layout.pairs_per_shard))
    errors: list[BaseException] = []  # filled by the writer thread, if there is one
    consumer = jobs = None
    submit: Callable[[tuple], None] = functools.partial(_run_job, group)
    if overlap_pays(runner.device):
        jobs = queue.Queue(maxsize=CAPTURED_BATCHES_IN_FLIGHT)
        consumer = threading.Thread(target=_encode_and_write, args=(group, jobs, errors), daemon=True)
        consumer.start()
        submit = jobs.put
    bar = tqdm(
        total=sum(slices[k].stop - slices[k].start for k in shard_ids),
        desc="extract",
        unit="pair",
        disable=not progress,
    )
    try:
        for k in shard_ids:
            sl = slices[k]
            split = rgroup["split"][sl]
            shard = ShardInput(
                shard_index=k,
                start=sl.start,
                rgb=rgroup["rgb"][sl],
                rendered=rgroup["status"][sl] == 1,
                scene_id=rgroup["scene_id"][sl],
                split=split,
                full_attn=np.isin(split, list(params.full_attention_splits)),
            )
            encoder = ShardEncoder(
                shard,
                layout,
                overflow=params.overflow,
                mantissa_bits=params.mantissa_bits(),
                full_attn_locations=full_locs,
            )
            for idx in encoder.batches(params.batch_size):
                if errors:
                    break
                submit(("batch", encoder, idx, runner(shard.rgb[idx])))
                bar.update(len(idx))
            if errors:
                break
            submit(("shard", encoder, k, sl.start))
            bar.update(int((~shard.rendered).sum()))
            log.debug("shard %d computed", k)
    finally:
        if consumer is not None and jobs is not None:
            jobs.put(None)
            consumer.join()
        bar.close()
    if errors:
        raise errors[0]
    return len(shard_ids)


def run_extract(
    renders: StoreLocation,
    out: StoreLocation,
    params: ExtractParams,
    *,
    shard: tuple[int, int] = (0, 1),
    workers: int = 1,
    scheduler: str | None = None,
    overwrite: bool = False,
    free_bytes: FreeBytes = disk_free_bytes,
) -> dict[str, Any]:
    """Fill every pending shard of `out` that belongs to this process, then finalise if all are done.

    Args:
        renders: the renders store to read (must be complete): a folder or an fsspec URL.
        out: the features store to create or resume: a folder or an fsspec URL (s3://...).
        params: the extract parameters.
        shard: (i, n): this process fills shards k with k % n == i (whole shards, never pairs).
        workers: dask worker processes on this machine (each builds its own model).
        scheduler: a dask-distributed scheduler address; shards then run on that cluster.
        overwrite: replace an existing store instead of resuming it.
        free_bytes: returns the free bytes at a path (tests pass a fake one).

    Returns:
        summary: n_pairs, shards_written, complete, model_weights, bytes_estimate.

    Raises:
        SchemaError: the store differs from the schema or was made by another model, renders or params.
        DiskSpaceError: the estimated bytes exceed the free space.
    """
    i, n = shard
    if not 0 <= i < n:
        raise ConfigError(f"--shard {i}/{n}: expected 0 <= i < n")
    if overwrite and n > 1:  # each of the n processes would delete what the others have written
        raise ConfigError(
            f"--overwrite with --shard {i}/{n}: delete {out} once, then start the {n} processes without --overwrite"
        )
    runner = ModelRunner.from_params(params)
    if runner.weights_id.startswith("random-init:"):
        log.warning(
            "model %s has RANDOM weights (%s): features describe an untrained network",
            params.model,
            runner.weights_id,
        )
    rgroup, group, layout = _open_or_create(renders, out, params, runner, overwrite)
    status = group["status"][:]
    slices = list(shard_slices(layout.n_pairs, layout.pairs_per_shard))
    todo = [k for k, sl in enumerate(slices) if k % n == i and (status[sl] == STATUS_PENDING).any()]
    split = rgroup["split"][:]
    base, full = bytes_per_pair(layout, len(runner.full_attention_locations))
    n_todo = sum(slices[k].stop - slices[k].start for k in todo)
    n_full = sum(int(np.isin(split[slices[k]], list(params.full_attention_splits)).sum()) for k in todo)
    estimate = n_todo * base + n_full * full
    _space_check(out, estimate, free_bytes)
    log.info(
        "%s: %d of %d shards to extract in this process (shard %d/%d)", out, len(todo), len(slices), i, n
    )
    if scheduler:  # a few shards per task: each task builds (loads) the model once
        groups = [todo[s : s + SHARDS_PER_REMOTE_TASK] for s in range(0, len(todo), SHARDS_PER_REMOTE_TASK)]
    else:
        groups = [todo[w :: max(1, workers)] for w in range(max(1, workers))]
    tasks = [(str(renders), str(out), params, g) for g in groups if g]
    if scheduler or workers > 1:
        run_shard_tasks(extract_shards, tasks, workers=workers, scheduler=scheduler, desc="extract")
    else:
        for task in tasks:
            extract_shards(*task, runner=runner, progress=True)
    complete = bool((group["status"][:] != STATUS_PENDING).all())
    if complete and not group.attrs.get("complete"):
        finalise_statistics(group)
        group.attrs["complete"] = True
    return {
        "n_pairs": layout.n_pairs,
        "shards_written": len(todo),
        "complete": complete,
        "model_weights": runner.weights_id,
        "bytes_estimate": estimate,
    }
