"""Evaluation throughput on the embedded default, beside extraction's (numbers go to docs/evaluate.md).

Builds real stores the way the pipeline does (procedural renders at 224x224, the `small`
random-init DUSt3R with every residual location and attention map, correspondences, and
mlp + linear pointmap probes trained 2 steps: training length does not change evaluation
cost), times extraction, then times `run_evaluate` over every pair with the full metric
suite and prints the split by part. The goal is evaluate pairs/s > extract pairs/s, i.e.
evaluating 1,000 pairs takes less time than extracting them.

    .venv/bin/python benchmarks/evaluate.py --n-pairs 16 --workdir /tmp/probe3r-eval-bench
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from pipeline.jobs.correspond import run_correspond
from pipeline.jobs.eval_params import EvaluateParams
from pipeline.jobs.evaluate import run_evaluate
from pipeline.jobs.extract import run_extract
from pipeline.jobs.extract_params import ExtractParams
from pipeline.jobs.render import RenderParams, run_render
from pipeline.jobs.train_probes import TrainProbesParams, run_train_probes


def build(root: Path, n_pairs: int, device: str) -> dict[str, float]:
    """Render, extract (timed), correspond and train probes under `root`, unless already there."""
    timings: dict[str, float] = {}
    if not (root / "renders.zarr").exists():
        render = {"n_pairs": n_pairs, "pairs_per_shard": 16, "split_fractions": [0.0, 0.0, 1.0]}
        run_render(root / "renders.zarr", RenderParams.from_dict(render), workers=1)
    if not (root / "features.zarr").exists():
        start = time.perf_counter()
        run_extract(
            root / "renders.zarr", root / "features.zarr", ExtractParams(model="small", device=device)
        )
        timings["extract_s"] = time.perf_counter() - start
    if not (root / "correspondences.zarr").exists():
        run_correspond(root / "renders.zarr", root / "correspondences.zarr")
    if not (root / "probes").exists():
        params = {
            "kinds": ["mlp", "linear"],
            "steps": 2,
            "batch_size": 2,
            "train_splits": ["test"],
            "device": device,
        }
        run_train_probes(
            root / "features.zarr",
            root / "renders.zarr",
            root / "probes",
            TrainProbesParams.from_dict(params),
            curves_dir=root / "curves",
            progress=False,
        )
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-pairs", type=int, default=16)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/probe3r-eval-bench"))
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.workdir.mkdir(parents=True, exist_ok=True)
    timings = build(args.workdir, args.n_pairs, args.device)
    root = args.workdir
    params = EvaluateParams(batch_size=args.batch_size, device=args.device)
    metrics = run_evaluate(
        root / "features.zarr",
        root / "renders.zarr",
        root / "correspondences.zarr",
        root / "probes",
        root / "reports",
        params,
        progress=False,
    )
    n = metrics["n_pairs"]
    t = metrics["timings"]
    report = {
        "n_pairs": n,
        "evaluate_pairs_per_s": n / t["total"],
        "evaluate_split_s": {k: round(v, 2) for k, v in sorted(t.items(), key=lambda kv: -kv[1])},
        "seconds_per_1000_pairs": 1000 * t["total"] / n,
    }
    if "extract_s" in timings:
        report["extract_pairs_per_s"] = n / timings["extract_s"]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
