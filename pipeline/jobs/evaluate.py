"""The evaluate job: stores + probes → reports/metrics.json, reports/plots/*.csv, reports/pairs/*.csv.

One pass over the evaluated pairs, a batch at a time: each batch's features are read once
and feed every probe set, the head lens, the token-similarity baseline and, from the
attention maps, correspondence and register scores. Every metric is reduced to one value
per pair here; `eval_report` then aggregates over pairs (bootstrap intervals, bins) and
writes the files.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr
from tqdm.auto import tqdm

from pipeline.errors import ConfigError, SchemaError, unknown_name_message
from pipeline.jobs.eval_attention import (
    AttentionLayout,
    correspondence_accuracy,
    register_scores,
    similarity_accuracy,
)
from pipeline.jobs.eval_params import EvaluateParams
from pipeline.jobs.eval_pointmaps import batch_targets, score_rows, score_targets
from pipeline.jobs.eval_report import write_report
from pipeline.jobs.extract_model import store_identity, store_model
from pipeline.jobs.train_probes import pick_device
from pipeline.memory import keep_freed_memory
from pipeline.metrics.lens import head_lens_at_pixels
from pipeline.probes.batches import Batch
from pipeline.probes.files import load_probes
from pipeline.probes.store_source import StoreSource, prefetched
from pipeline.store.writer import open_store

log = logging.getLogger(__name__)

STATUS_OK = 1
READ_AHEAD = 1  # batches read in a thread while the current one is scored
PAIR_INFO = ("scene_id", "split", "overlap", "rotation_deg")


@dataclass
class PairResults:
    """Every per-pair value of one evaluation, before aggregation.

    Attributes:
        pairs: (P,) pair indices.
        info: PAIR_INFO name -> (P,) the renders' per-pair properties.
        methods: method ("mlp", "linear", "depth-mlp", "lens", "model") -> {"head": str,
            "locations": [str], "values": metric -> (P, L)}; "model" has the one location "".
        attention: "attention", "attention_compact" -> (P, V, C, A, T) accuracy curves and
            "<source>_error_px" -> (P, V, C, A) mean pixel errors; "similarity" -> (P, V, L, T)
            over `similarity_locations`, "similarity_error_px" -> (P, V, L).
        registers: "independence", "topk_mass" (P, V, La, A); "sinks", "high_norm" (P, V, La, K).
        layout: the store's attention layout; None when it holds no attention maps.
        dec_depth: decoder blocks of the model.
        timings: seconds spent per part of the pass.
    """

    pairs: np.ndarray
    info: dict[str, np.ndarray]
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    attention: dict[str, np.ndarray] = field(default_factory=dict)
    registers: dict[str, np.ndarray] = field(default_factory=dict)
    similarity_locations: list[str] = field(default_factory=list)
    layout: AttentionLayout | None = None
    dec_depth: int = 0
    timings: dict[str, float] = field(default_factory=lambda: defaultdict(float))


def read_rows(array: zarr.Array, idx: np.ndarray, locations: Sequence[int] | None = None) -> np.ndarray:
    """array[idx] for sorted idx, as slice reads of consecutive runs (index arrays are far slower).

    `locations` picks entries of the third axis (e.g. the cross-attention maps) so that only
    their chunks are read and decompressed.
    """
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    runs = [slice(int(r[0]), int(r[-1]) + 1) for r in np.split(idx, breaks) if len(r)]
    if locations is None:
        return np.concatenate([array[r] for r in runs])
    # one slice per location: zarr's orthogonal selection on sharded arrays is ~100x slower
    return np.concatenate([np.concatenate([array[r, :, k : k + 1] for k in locations], axis=2) for r in runs])


def select_pairs(group: zarr.Group, cgroup: zarr.Group, params: EvaluateParams) -> np.ndarray:
    """Extracted pairs of the chosen splits that have correspondences, the first max_pairs of them."""
    ok = (group["status"][:] == STATUS_OK) & (cgroup["status"][:] == STATUS_OK)
    pairs = np.flatnonzero(ok & np.isin(group["split"][:], list(params.splits)))
    return pairs if params.max_pairs is None else pairs[: params.max_pairs]


def probe_set_names(probes: Path, choice: str | tuple[str, ...]) -> list[str]:
    """The probe sets to score: every folder holding a config.json, or the named ones."""
    found = (
        sorted(p.name for p in probes.iterdir() if (p / "config.json").is_file()) if probes.is_dir() else []
    )
    if choice == "all":
        return found
    for name in choice:
        if name not in found:
            raise ConfigError(f"{probes}: {unknown_name_message('probe set', name, found)}")
    return list(choice)


class _Timer:
    def __init__(self, results: PairResults, key: str) -> None:
        self.results, self.key = results, key

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.results.timings[self.key] += time.perf_counter() - self.start


def _append(store: dict[str, list], values: dict[str, np.ndarray]) -> None:
    for key, value in values.items():
        store.setdefault(key, []).append(value)


@dataclass
class EvalBatch:
    """Everything evaluate reads for one batch of pairs (see `BatchReader.read`).

    Attributes:
        batch: features of every needed location and the renders' ground truth.
        own: {"": {"pred", "conf"}} the model's stored output.
        gt_match: (B, V, Q) ground-truth patch matches.
        codes, argmax, norms: compact attention maps, their row argmaxes and token norms
            (None without attention maps).
        full: the full float16 maps of the cross-attention locations, or None.
    """

    batch: Batch
    own: dict[str, dict[str, torch.Tensor]]
    gt_match: np.ndarray
    codes: np.ndarray | None = None
    argmax: np.ndarray | None = None
    norms: np.ndarray | None = None
    full: np.ndarray | None = None


class BatchReader:
    """Reads a batch's every input from the three stores, so a thread can run it ahead of scoring."""

    def __init__(
        self, source: StoreSource, group: zarr.Group, cgroup: zarr.Group, layout: AttentionLayout | None
    ) -> None:
        self.source, self.group, self.cgroup, self.layout = source, group, cgroup, layout

    def read(self, idx: np.ndarray) -> EvalBatch:
        """The inputs of the pairs `idx` (sorted)."""
        group = self.group
        out = EvalBatch(
            batch=self.source.read(idx),
            own={
                "": {
                    "pred": torch.from_numpy(read_rows(group["pts3d"], idx)),
                    "conf": torch.from_numpy(read_rows(group["conf"], idx)),
                }
            },
            gt_match=read_rows(self.cgroup["patch_match"], idx),
        )
        if self.layout is not None:
            out.codes = read_rows(group["attn"], idx)
            out.argmax = read_rows(group["attn_argmax"], idx)
            out.norms = read_rows(group["token_norm"], idx)
            if group["has_full_attn"].get_orthogonal_selection((idx,)).any():
                # the cross-attention maps only: correspondence reads no others
                out.full = read_rows(group["attn_full"], idx, self.layout.cross)
        return out


def evaluate_pairs(
    features: Path,
    renders: Path,
    correspondences: Path,
    probes: Path,
    params: EvaluateParams,
    *,
    progress: bool = True,
) -> PairResults:
    """Every per-pair metric of the evaluated pairs (see `PairResults`).

    Raises:
        SchemaError: the stores do not belong together (pair counts or patch grids differ).
        ConfigError: no pair to evaluate, or an unknown probe set.
    """
    group = open_store(features, "features")
    cgroup = open_store(correspondences, "correspondences")
    rgroup = open_store(renders, "renders")
    grid = tuple(int(x) for x in group.attrs["patch_grid"])
    if tuple(cgroup.attrs["grid"]) != grid or cgroup.attrs["n_pairs"] != group.attrs["n_pairs"]:
        raise SchemaError(
            f"{correspondences}: grid {cgroup.attrs['grid']} and {cgroup.attrs['n_pairs']} pairs, but {features} "
            f"has grid {list(grid)} and {group.attrs['n_pairs']} pairs"
        )
    pairs = select_pairs(group, cgroup, params)
    if len(pairs) == 0:
        raise ConfigError(
            f"{features}: no extracted pair with correspondences in splits {list(params.splits)}"
        )
    device = pick_device(params.device)
    sets = {
        name: load_probes(probes / name, device=device) for name in probe_set_names(probes, params.probe_sets)
    }
    store_locs = [str(x) for x in group["location"][:]]
    residual = [loc for loc in store_locs if not loc.endswith(".out")]
    probe_locs = [loc for s in sets.values() for loc in s.spec.locations]
    needed = list(dict.fromkeys(["enc", *residual, *probe_locs]))
    source = StoreSource(
        features, renders, needed, splits=params.splits, batch_size=params.batch_size, prefetch=0
    )
    model = store_model(group, device=params.device, where=str(features)) if params.lens else None
    image_size = tuple(int(x) for x in group.attrs["image_size"])
    attn_locs = tuple(str(x) for x in group["attn_location"][:])
    has_attention = attn_locs not in ((), ("none",))  # stores before size-0 dims said "none"
    patch_size = image_size[0] // grid[0]
    results = PairResults(
        pairs=pairs,
        info={name: rgroup[name].get_orthogonal_selection((pairs,)) for name in PAIR_INFO},
        similarity_locations=["enc", *residual],
        layout=AttentionLayout(attn_locs, tuple(store_locs), grid, patch_size) if has_attention else None,
        dec_depth=int(group.attrs["model_config"]["dec_depth"]),
    )
    per_method: dict[str, dict[str, list]] = defaultdict(dict)
    attention: dict[str, list] = {}
    registers: dict[str, list] = {}
    reader = BatchReader(source, group, cgroup, results.layout)
    reads = (
        reader.read(pairs[start : start + params.batch_size])
        for start in range(0, len(pairs), params.batch_size)
    )
    batches = prefetched(reads, READ_AHEAD)
    n_batches = -(-len(pairs) // params.batch_size)
    for _ in tqdm(range(n_batches), desc="evaluate", unit="batch", disable=not progress):
        with _Timer(results, "read"):  # what reading ahead did not hide
            read = next(batches)
        batch = read.batch
        with _Timer(results, "pointmap_metrics"):
            targets = batch_targets(batch.pts3d, batch.depth[..., 0], batch.valid, device, patch_size)
        pixels = [t.pixels for t in targets]  # predictions are made at the valid pixels only
        for name, s in sets.items():
            with _Timer(results, "probes"):
                rows = s.at_pixels({loc: batch.acts[loc].to(device) for loc in s.spec.locations}, pixels)
            with _Timer(results, "pointmap_metrics"):
                scores = score_rows(
                    rows, targets, head=s.spec.head.name, procrustes_scale=params.procrustes_scale
                )
            _append(per_method[name], scores)
        if model is not None:
            with _Timer(results, "lens"):
                rows = head_lens_at_pixels(
                    model, {loc: batch.acts[loc] for loc in residual}, pixels, image_size
                )
            with _Timer(results, "pointmap_metrics"):
                scores = score_rows(rows, targets, head="pointmap", procrustes_scale=params.procrustes_scale)
            _append(per_method["lens"], scores)
        with _Timer(results, "pointmap_metrics"):
            scores = score_targets(
                read.own, targets, head="pointmap", procrustes_scale=params.procrustes_scale
            )
        _append(per_method["model"], scores)
        with _Timer(results, "similarity"):
            sim = similarity_accuracy(
                {loc: batch.acts[loc] for loc in results.similarity_locations},
                read.gt_match,
                grid,
                patch_size,
                params.thresholds_px,
            )
        _append(attention, sim)
        if results.layout is not None:
            with _Timer(results, "correspondence"):
                _append(
                    attention,
                    correspondence_accuracy(
                        read.argmax, read.full, read.gt_match, results.layout, params.thresholds_px
                    ),
                )
            with _Timer(results, "registers"):
                _append(registers, register_scores(read.codes, read.norms, results.layout, params))
    heads = {name: s.spec.head.name for name in sets} | {"lens": "pointmap", "model": "pointmap"}
    locations = {name: list(s.spec.locations) for name, s in sets.items()} | {"lens": residual, "model": [""]}
    for name, values in per_method.items():
        results.methods[name] = {
            "head": heads[name],
            "locations": locations[name],
            "values": {k: np.concatenate(v) for k, v in values.items()},
        }
    results.attention = {k: np.concatenate(v) for k, v in attention.items()}
    results.registers = {k: np.concatenate(v) for k, v in registers.items()}
    return results


def run_evaluate(
    features: Path,
    renders: Path,
    correspondences: Path,
    probes: Path,
    out: Path,
    params: EvaluateParams,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate and write `out/metrics.json`, `out/plots/*.csv` and `out/pairs/*.csv`.

    Args:
        features: the features store (`probe3r extract`).
        renders: the renders store it was extracted from (ground truth, overlap, rotation).
        correspondences: the correspondences store of those renders.
        probes: the folder of probe sets (`probe3r train-probes`); may hold none.
        out: the reports folder.
        params: the evaluate parameters.
        progress: show a progress bar.

    Returns:
        the metrics.json content, plus "timings" (seconds per part of the pass).
    """
    started = time.perf_counter()
    keep_freed_memory()  # every batch allocates the same large tensors: reuse them, skip the page faults
    results = evaluate_pairs(features, renders, correspondences, probes, params, progress=progress)
    with _Timer(results, "aggregate_and_write"):
        metrics = write_report(results, params, out, store_identity(features))
    timings = dict(results.timings) | {"total": time.perf_counter() - started}
    log.info("%s: %d pairs evaluated in %.1f s", out, len(results.pairs), timings["total"])
    return {**metrics, "timings": timings}
