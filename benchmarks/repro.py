"""Time `dvc repro` of the embedded default, stage by stage.

Runs each stage of dvc.yaml in pipeline order with `dvc repro --force --single-item`, so
every stage really executes, and prints seconds per stage, the share of the total and the
total. Run from the repository root with the venv active: `python benchmarks/repro.py`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="*", help="subset of stages (default: all, in dvc.yaml order)")
    args = parser.parse_args()
    stages = args.stages or list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    times: dict[str, float] = {}
    for stage in stages:
        start = time.perf_counter()
        subprocess.run(
            ["dvc", "repro", "--force", "--single-item", stage],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        times[stage] = time.perf_counter() - start
        print(f"{stage:<14} {times[stage]:7.1f} s", flush=True)
    total = sum(times.values())
    print(f"{'total':<14} {total:7.1f} s  ({total / 60:.1f} min) on {os.cpu_count()} cores")
    for stage, seconds in times.items():
        print(f"  {stage:<12} {100 * seconds / total:5.1f} %")


if __name__ == "__main__":
    main()
