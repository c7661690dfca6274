"""keep_freed_memory: a loop that reallocates large tensors stops faulting in fresh pages."""

from __future__ import annotations

import subprocess
import sys

import pytest

FAULTS = """
import resource, sys, torch
from pipeline.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
x = torch.ones(10, 2**20)
def step():  # three 40 MiB temporaries: above glibc's largest mmap threshold, so by default each is a fresh mapping
    a = x.clone()
    b = x * 2
    return (a + b).sum()
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    """Minor page faults of 20 steps that allocate three 40 MiB tensors each, in a fresh interpreter."""
    run = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
    return int(run.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_freed_blocks_are_reused() -> None:
    pages = 20 * 3 * 40 * 2**20 // 4096
    assert page_faults("default") > pages / 2  # most temporaries land on fresh pages
    assert page_faults("keep") < pages / 6  # freed blocks are reused
