"""Evaluation throughput beside extraction's, in one run (numbers go to docs/evaluate.md).

Builds real stores the way the embedded default does (procedural renders at 224x224 in
the test split, so every pair is evaluated and has full attention maps; the params
file's `extract:` section, i.e. the `small` random-init DUSt3R with every residual
location and attention map; correspondences; the `train_probes:` section's probe sets and
architecture, trained 2 steps: training length does not change evaluation cost), times
extraction (every run: the features store is made again), then times `run_evaluate` with
the `evaluate:` section over every pair (`--workers`, default as the CLI's: one process
per core on a CPU once each gets 4 batches) and prints both rates, their ratio and the
split by part (seconds summed over the workers). The goal is evaluate pairs/s > extract
pairs/s: evaluating 1,000 pairs takes less time than extracting them.

    .venv/bin/python benchmarks/evaluate.py --n-pairs 16 --workdir /tmp/probe3r-eval-bench

16 pairs takes under a minute; --n-pairs 64 or 256 gives the steady rates (the first batch's page
faults and the one-off loading of model and probes weigh less).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.jobs.correspond import run_correspond
from pipeline.jobs.eval_params import EvaluateParams
from pipeline.jobs.evaluate import run_evaluate
from pipeline.jobs.extract import run_extract
from pipeline.jobs.extract_params import ExtractParams
from pipeline.jobs.render import RenderParams, run_render
from pipeline.jobs.train_probes import TrainProbesParams, run_train_probes
from pipeline.params import load_section

PROBE_KEYS = ("kinds", "locations", "head", "depth_kinds", "depth_beta", "hidden", "n_layers", "shared_views")


def cached(path: Path, key: dict[str, Any], make: Callable[[], object]) -> None:
    """Build `path` with `make` unless an earlier run built it from the same `key`.

    The key (the settings that decide the contents) is written beside the folder once the
    build has finished, so a cache made with other settings (say, probes of another width)
    or left half-built by a crash is rebuilt, never timed by mistake.
    """
    stamp = path.with_name(path.name + ".key.json")
    text = json.dumps(key, sort_keys=True)
    if path.exists() and stamp.exists() and stamp.read_text() == text:
        return
    stamp.unlink(missing_ok=True)
    shutil.rmtree(path, ignore_errors=True)
    make()
    stamp.write_text(text)


def build(root: Path, n_pairs: int, params_file: Path, device: str) -> float:
    """Render, extract, correspond and train probes under `root`; returns extract's seconds.

    Renders, correspondences and probes are reused when an earlier run built them with the
    same settings; the features store is always extracted again, so each run times it.
    """
    render = {"n_pairs": n_pairs, "pairs_per_shard": 16, "split_fractions": [0.0, 0.0, 1.0]}
    renders = root / "renders.zarr"
    cached(renders, render, lambda: run_render(renders, RenderParams.from_dict(render), workers=1))
    shutil.rmtree(root / "features.zarr", ignore_errors=True)
    extract_raw = load_section(params_file, "extract") | {"device": device}
    start = time.perf_counter()
    run_extract(renders, root / "features.zarr", ExtractParams.from_dict(extract_raw))
    extract_s = time.perf_counter() - start
    cached(
        root / "correspondences.zarr", render, lambda: run_correspond(renders, root / "correspondences.zarr")
    )
    section = load_section(params_file, "train_probes")
    probes = {k: section[k] for k in PROBE_KEYS if k in section}
    probes |= {"steps": 2, "batch_size": 2, "train_splits": ["test"], "val_splits": ["test"]}
    cached(
        root / "probes",
        {"render": render, "extract": extract_raw, "probes": probes},
        lambda: run_train_probes(
            root / "features.zarr",
            renders,
            root / "probes",
            TrainProbesParams.from_dict(probes | {"device": device, "prefetch": 0}),
            curves_dir=root / "curves",
            progress=False,
        ),
    )
    return extract_s


def summary(n_pairs: int, extract_s: float, timings: dict[str, float]) -> dict[str, Any]:
    """Both rates, evaluate/extract ratio (> 1: the goal is met) and evaluate's seconds by part."""
    evaluate_rate, extract_rate = n_pairs / timings["total"], n_pairs / extract_s
    return {
        "n_pairs": n_pairs,
        "extract_pairs_per_s": round(extract_rate, 3),
        "evaluate_pairs_per_s": round(evaluate_rate, 3),
        "evaluate_over_extract": round(evaluate_rate / extract_rate, 2),
        "s_per_1000_pairs": {
            "extract": round(1000 * extract_s / n_pairs),
            "evaluate": round(1000 * timings["total"] / n_pairs),
        },
        "evaluate_split_s": {k: round(v, 2) for k, v in sorted(timings.items(), key=lambda kv: -kv[1])},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-pairs", type=int, default=16)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/probe3r-eval-bench"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--workers", type=int, default=None, help="evaluate's worker processes (default: auto)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = args.workdir
    root.mkdir(parents=True, exist_ok=True)
    extract_s = build(root, args.n_pairs, args.params, args.device)
    raw = load_section(args.params, "evaluate", base_keys=("seed",))
    params = EvaluateParams.from_dict(raw | {"device": args.device})
    metrics = run_evaluate(
        root / "features.zarr",
        root / "renders.zarr",
        root / "correspondences.zarr",
        root / "probes",
        root / "reports",
        params,
        progress=False,
        workers=args.workers,
    )
    print(json.dumps(summary(metrics["n_pairs"], extract_s, metrics["timings"]), indent=2))


if __name__ == "__main__":
    main()
