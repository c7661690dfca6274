"""usable_cores counts the cores a process is pinned to, not the machine's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cores import usable_cores

ROOT = Path(__file__).parents[1]


def test_usable_cores_is_the_affinity_mask_of_a_pinned_process() -> None:
    if shutil.which("taskset") is None or not hasattr(os, "sched_getaffinity"):
        pytest.skip("needs taskset and CPU affinity (Linux)")
    first = min(os.sched_getaffinity(0))
    code = "from pipeline.cores import usable_cores; print(usable_cores())"
    out = subprocess.run(
        ["taskset", "-c", str(first), sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "1"
    assert usable_cores() == len(os.sched_getaffinity(0))
