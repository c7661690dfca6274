"""run_in_workers: results in task order, cores shared out, a task's failure raised in the parent."""

from __future__ import annotations

import os
from collections.abc import Callable

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


def run_on_two(fn: Callable[[int], object], n_tasks: int) -> list:
    """fn(0), ..., fn(n_tasks - 1) in two workers."""
    tasks = [(x,) for x in range(n_tasks)]
    return run_in_workers(fn, tasks, workers=2, total=n_tasks, desc="test", unit="task", progress=False)


def test_results_come_back_in_task_order_from_worker_processes() -> None:
    results = run_on_two(pid_threads_and_square, 5)
    assert [r[2] for r in results] == [0, 1, 4, 9, 16]
    pids = {r[0] for r in results}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert {r[1] for r in results} == {max(1, usable_cores() // 2)}


def test_a_failing_task_raises_its_error_in_the_parent() -> None:
    with pytest.raises(ValueError, match="task 3 cannot be done"):
        run_on_two(fail_on_three, 5)


def die_on_one(x: int) -> int:
    if x == 1:
        os._exit(3)  # as a worker killed by the kernel: no exception, the process is gone
    return x


def test_a_dead_worker_is_named_as_such() -> None:
    with pytest.raises(RuntimeError, match="a worker process died"):
        run_on_two(die_on_one, 3)


def test_no_tasks_start_no_workers() -> None:
    assert run_on_two(fail_on_three, 0) == []
