"""run_in_workers: results in task order, cores shared out, a task's failure raised in the parent."""

from __future__ import annotations

import os

import pytest
import torch

from pipeline.cores import usable_cores
from pipeline.jobs.workers import advance, run_in_workers


def pid_threads_and_square(x: int) -> tuple[int, int, int]:
    """A task: which process ran it, with how many torch threads, and x squared."""
    advance(1)
    return os.getpid(), torch.get_num_threads(), x * x


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"task {x} cannot be done")
    return x


def test_results_come_back_in_task_order_from_worker_processes() -> None:
    results = run_in_workers(
        pid_threads_and_square,
        [(x,) for x in range(5)],
        workers=2,
        total=5,
        desc="test",
        unit="task",
        progress=False,
    )
    assert [r[2] for r in results] == [0, 1, 4, 9, 16]
    pids = {r[0] for r in results}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert {r[1] for r in results} == {max(1, usable_cores() // 2)}


def test_a_failing_task_raises_its_error_in_the_parent() -> None:
    with pytest.raises(ValueError, match="task 3 cannot be done"):
        run_in_workers(
            fail_on_three,
            [(x,) for x in range(5)],
            workers=2,
            total=5,
            desc="test",
            unit="task",
            progress=False,
        )


def die_on_one(x: int) -> int:
    if x == 1:
        os._exit(3)  # as a worker killed by the kernel: no exception, the process is gone
    return x


def test_a_dead_worker_is_named_as_such() -> None:
    with pytest.raises(RuntimeError, match="a worker process died"):
        run_in_workers(
            die_on_one, [(x,) for x in range(3)], workers=2, total=3, desc="test", unit="task", progress=False
        )


def test_no_tasks_start_no_workers() -> None:
    assert (
        run_in_workers(fail_on_three, [], workers=2, total=0, desc="test", unit="task", progress=False) == []
    )
