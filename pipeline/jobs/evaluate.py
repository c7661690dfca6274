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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from pipeline.cores import usable_cores
from pipeline.errors import ConfigError, SchemaError
from pipeline.jobs.eval_attention import (
    AttentionLayout,
    correspondence_accuracy,
    register_scores,
    similarity_accuracy,
)
from pipeline.jobs.eval_inputs import BatchReader, probe_set_names, select_pairs, store_layout
from pipeline.jobs.eval_params import EvaluateParams
from pipeline.jobs.eval_pointmaps import batch_targets, score_rows, score_targets
from pipeline.jobs.eval_report import write_report
from pipeline.jobs.extract_model import store_identity, store_model
from pipeline.jobs.train_probes import pick_device
from pipeline.jobs.workers import advance, run_in_workers
from pipeline.memory import keep_freed_memory
from pipeline.metrics.lens import head_lens_at_pixels
from pipeline.probes.files import load_probes
from pipeline.probes.store_source import StoreSource, prefetched
from pipeline.store.writer import open_store

log = logging.getLogger(__name__)

READ_AHEAD = 1  # batches read in a thread while the current one is scored
PAIR_INFO = ("scene_id", "split", "overlap", "rotation_deg")
# each worker holds the probes, the model and a batch's tensors: 3.4 GB peak on `small`, batches of 4
MAX_AUTO_WORKERS = 4
MIN_BATCHES_PER_WORKER = 4  # a worker's start (imports, probes, model: ~4 s) costs about one batch's scoring


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
class PairScores:
    """The per-pair values of a run of consecutive pairs (`score_pairs`), before they join
    the other runs' in `PairResults` (its `methods`, `attention`, `registers`, `timings`)."""

    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    attention: dict[str, np.ndarray] = field(default_factory=dict)
    registers: dict[str, np.ndarray] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=lambda: defaultdict(float))


def score_pairs(
    features: Path,
    renders: Path,
    correspondences: Path,
    probes: Path,
    params: EvaluateParams,
    pairs: np.ndarray,
    on_batch: Callable[[int], object] = lambda n: None,
) -> PairScores:
    """Every per-pair value of `pairs` (sorted), a batch of params.batch_size at a time.

    A top-level function of paths, so a worker process can run it on its share of the
    pairs (`evaluate_pairs`); it loads the probes and the model itself.

    Args:
        features, renders, correspondences, probes: as `evaluate_pairs`.
        params: the evaluate parameters.
        pairs: the pairs to score, in batches of consecutive entries.
        on_batch: called with each batch's pair count when it is scored (progress).
    """
    keep_freed_memory()  # every batch allocates the same large tensors: reuse them, skip the page faults
    group = open_store(features, "features")
    cgroup = open_store(correspondences, "correspondences")
    layout = store_layout(group)
    device = pick_device(params.device)
    sets = {
        name: load_probes(probes / name, device=device) for name in probe_set_names(probes, params.probe_sets)
    }
    residual = layout.residual
    probe_locs = [loc for s in sets.values() for loc in s.spec.locations]
    needed = list(dict.fromkeys([*layout.similarity, *probe_locs]))
    source = StoreSource(
        features, renders, needed, splits=params.splits, batch_size=params.batch_size, prefetch=0
    )
    model = store_model(group, device=params.device, where=str(features)) if params.lens else None
    scores = PairScores()
    per_method: dict[str, dict[str, list]] = defaultdict(dict)
    attention: dict[str, list] = {}
    registers: dict[str, list] = {}
    reader = BatchReader(source, group, cgroup, layout.attention)
    reads = (
        reader.read(pairs[start : start + params.batch_size])
        for start in range(0, len(pairs), params.batch_size)
    )
    batches = prefetched(reads, READ_AHEAD)
    for _ in range(-(-len(pairs) // params.batch_size)):
        with _Timer(scores, "read"):  # what reading ahead did not hide
            read = next(batches)
        batch = read.batch
        with _Timer(scores, "pointmap_metrics"):
            targets = batch_targets(batch.pts3d, batch.depth[..., 0], batch.valid, device, layout.patch_size)
        pixels = [t.pixels for t in targets]  # predictions are made at the valid pixels only
        for name, s in sets.items():
            acts = {loc: batch.acts[loc].to(device) for loc in s.spec.locations}
            with _Timer(scores, "probes"):
                if s.spec.head.name == "depth":  # scored on view 1's depth only (`score_pair`)
                    view1 = [pix[: t.n_view[0]] for pix, t in zip(pixels, targets, strict=True)]
                    rows = [(depth, None) for depth in s.view1_depth_at_pixels(acts, view1)]
                else:
                    rows = s.at_pixels(acts, pixels)
            with _Timer(scores, "pointmap_metrics"):
                values = score_rows(
                    rows, targets, head=s.spec.head.name, procrustes_scale=params.procrustes_scale
                )
            _append(per_method[name], values)
        if model is not None:
            with _Timer(scores, "lens"):
                rows = head_lens_at_pixels(
                    model, {loc: batch.acts[loc] for loc in residual}, pixels, layout.image_size
                )
            with _Timer(scores, "pointmap_metrics"):
                values = score_rows(rows, targets, head="pointmap", procrustes_scale=params.procrustes_scale)
            _append(per_method["lens"], values)
        with _Timer(scores, "pointmap_metrics"):
            values = score_targets(
                read.own, targets, head="pointmap", procrustes_scale=params.procrustes_scale
            )
        _append(per_method["model"], values)
        with _Timer(scores, "similarity"):
            sim = similarity_accuracy(
                {loc: batch.acts[loc] for loc in layout.similarity},
                read.gt_match,
                layout.grid,
                layout.patch_size,
                params.thresholds_px,
            )
        _append(attention, sim)
        if layout.attention is not None:
            with _Timer(scores, "correspondence"):
                _append(
                    attention,
                    correspondence_accuracy(
                        read.argmax, read.full, read.gt_match, layout.attention, params.thresholds_px
                    ),
                )
            with _Timer(scores, "registers"):
                _append(registers, register_scores(read.codes, read.norms, layout.attention, params))
        on_batch(len(batch.valid))
    heads = {name: s.spec.head.name for name in sets} | {"lens": "pointmap", "model": "pointmap"}
    locations = {name: list(s.spec.locations) for name, s in sets.items()} | {"lens": residual, "model": [""]}
    for name, values in per_method.items():
        scores.methods[name] = {
            "head": heads[name],
            "locations": locations[name],
            "values": {k: np.concatenate(v) for k, v in values.items()},
        }
    scores.attention = {k: np.concatenate(v) for k, v in attention.items()}
    scores.registers = {k: np.concatenate(v) for k, v in registers.items()}
    return scores


def _score_pairs_in_worker(*args: Any) -> PairScores:
    """`score_pairs` in a worker process, counting its batches on the parent's bar."""
    return score_pairs(*args, on_batch=advance)


def _concatenated(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Each key's arrays of the parts joined along the pair axis, in the parts' order."""
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def join_scores(parts: Sequence[PairScores]) -> PairScores:
    """Runs of pairs' scores as one, pairs in the order of the parts; timings summed over them."""
    joined = PairScores(
        methods={
            name: method | {"values": _concatenated([p.methods[name]["values"] for p in parts])}
            for name, method in parts[0].methods.items()
        },
        attention=_concatenated([p.attention for p in parts]),
        registers=_concatenated([p.registers for p in parts]),
    )
    for part in parts:
        for key, seconds in part.timings.items():
            joined.timings[key] += seconds
    return joined


def default_workers(device: torch.device, n_batches: int) -> int:
    """Worker processes when none are asked for.

    On a CPU one per usable core (at most MAX_AUTO_WORKERS), as long as each gets
    MIN_BATCHES_PER_WORKER batches to pay for its start; on a GPU one (it is one device,
    the processes would queue on it).
    """
    if device.type != "cpu":
        return 1
    return max(1, min(usable_cores(), MAX_AUTO_WORKERS, n_batches // MIN_BATCHES_PER_WORKER))


def evaluate_pairs(
    features: Path,
    renders: Path,
    correspondences: Path,
    probes: Path,
    params: EvaluateParams,
    *,
    progress: bool = True,
    workers: int | None = None,
) -> PairResults:
    """Every per-pair metric of the evaluated pairs (see `PairResults`).

    With several workers, each process scores a contiguous share of whole batches, so every
    batch holds the same pairs as in one process; values agree to float rounding (torch's
    sums split over another number of threads).

    Args:
        features, renders, correspondences, probes: the stores and the probe sets' folder.
        params: the evaluate parameters.
        progress: show a progress bar.
        workers: processes scoring shares of the pairs (`pipeline.jobs.workers`); None: one
            per core on a CPU, one on a GPU (`default_workers`).

    Raises:
        SchemaError: the stores do not belong together (pair counts or patch grids differ).
        ConfigError: no pair to evaluate, an unknown probe set, or workers < 1.
    """
    group = open_store(features, "features")
    cgroup = open_store(correspondences, "correspondences")
    rgroup = open_store(renders, "renders")
    layout = store_layout(group)
    if tuple(cgroup.attrs["grid"]) != layout.grid or cgroup.attrs["n_pairs"] != group.attrs["n_pairs"]:
        raise SchemaError(
            f"{correspondences}: grid {cgroup.attrs['grid']} and {cgroup.attrs['n_pairs']} pairs, but {features} "
            f"has grid {list(layout.grid)} and {group.attrs['n_pairs']} pairs"
        )
    pairs = select_pairs(group, cgroup, params)
    if len(pairs) == 0:
        raise ConfigError(
            f"{features}: no extracted pair with correspondences in splits {list(params.splits)}"
        )
    probe_set_names(probes, params.probe_sets)  # an unknown probe set fails here, before any worker starts
    n_batches = -(-len(pairs) // params.batch_size)
    if workers is None:
        workers = default_workers(pick_device(params.device), n_batches)
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    shares = [
        len(b) * params.batch_size for b in np.array_split(np.arange(n_batches), min(workers, n_batches))
    ]
    runs = np.split(pairs, np.cumsum(shares)[:-1])
    args = [(features, renders, correspondences, probes, params, run) for run in runs]
    if len(runs) == 1:
        with tqdm(total=len(pairs), desc="evaluate", unit="pair", disable=not progress) as bar:
            scores = score_pairs(*args[0], on_batch=bar.update)
    else:
        log.info("%d pairs in %d worker processes", len(pairs), len(runs))
        parts = run_in_workers(
            _score_pairs_in_worker,
            args,
            workers=len(runs),
            total=len(pairs),
            desc="evaluate",
            unit="pair",
            progress=progress,
        )
        scores = join_scores(parts)
    return PairResults(
        pairs=pairs,
        info={name: rgroup[name].get_orthogonal_selection((pairs,)) for name in PAIR_INFO},
        methods=scores.methods,
        attention=scores.attention,
        registers=scores.registers,
        similarity_locations=layout.similarity,
        layout=layout.attention,
        dec_depth=int(group.attrs["model_config"]["dec_depth"]),
        timings=scores.timings,
    )


def run_evaluate(
    features: Path,
    renders: Path,
    correspondences: Path,
    probes: Path,
    out: Path,
    params: EvaluateParams,
    *,
    progress: bool = True,
    workers: int | None = None,
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
        workers: processes scoring shares of the pairs; None: one per core on a CPU, one
            on a GPU (see `evaluate_pairs`).

    Returns:
        the metrics.json content, plus "timings": seconds per part of the pass (summed over
        the workers, so with several they add up to more than "total", the wall time).
    """
    started = time.perf_counter()
    results = evaluate_pairs(
        features, renders, correspondences, probes, params, progress=progress, workers=workers
    )
    with _Timer(results, "aggregate_and_write"):
        metrics = write_report(results, params, out, store_identity(features))
    timings = dict(results.timings) | {"total": time.perf_counter() - started}
    log.info("%s: %d pairs evaluated in %.1f s", out, len(results.pairs), timings["total"])
    return {**metrics, "timings": timings}
