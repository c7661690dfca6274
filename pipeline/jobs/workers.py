"""Run a job's tasks in worker processes on this machine, each with its share of the cores.

Why processes and not threads: evaluation is many mid-sized torch and numpy operations
with Python between them. One process using both cores of the 2-core VM ran a batch in
2.9 s; two single-threaded processes ran two batches in 4.4 s (1.3x), while two
threads of one process gained nothing (the interpreter lock serialises the Python in
between). Workers are started with "spawn": forking a process whose OpenMP pool is
already running can hang the child.

A task reports progress by calling `advance(n)`; the parent's bar counts it.
"""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import torch
from tqdm.auto import tqdm

from pipeline.cores import usable_cores

POLL_S = 0.2  # how often the parent moves the bar while tasks run

_progress: Any = None  # in a worker: the queue to the parent's progress bar


def _start_worker(threads: int, progress: Any) -> None:
    """Each worker's first call: its share of the cores, and where `advance` reports."""
    global _progress
    torch.set_num_threads(threads)
    _progress = progress


def advance(n: int) -> None:
    """Count n units of work done on the parent's progress bar (nothing outside a worker)."""
    if _progress is not None:
        _progress.put(n)


def _drain(progress: Any, bar: tqdm) -> None:
    while True:
        try:
            bar.update(progress.get_nowait())
        except queue.Empty:
            return


def run_in_workers(
    fn: Callable[..., Any],
    args_per_task: Sequence[tuple],
    *,
    workers: int,
    total: int,
    desc: str,
    unit: str,
    progress: bool = True,
) -> list[Any]:
    """`[fn(*args) for args in args_per_task]` in `workers` processes, results in task order.

    Each worker runs torch on usable_cores() // workers threads (at least one). The first
    task to fail stops the rest and its exception is raised here.

    Args:
        fn: a top-level function (spawned workers import it by name); it may call `advance`.
        args_per_task: the arguments of each task, picklable.
        workers: processes to start (at most one per task is used).
        total: units the tasks' `advance` calls add up to, for the bar.
        desc, unit: the bar's label and unit.
        progress: show the bar.

    Raises:
        RuntimeError: a worker process died (killed, out of memory, a crash in native code).
    """
    if not args_per_task:
        return []
    context = multiprocessing.get_context("spawn")
    reports = context.Queue()
    n = min(workers, len(args_per_task))
    threads = max(1, usable_cores() // n)
    with (
        ProcessPoolExecutor(
            n, mp_context=context, initializer=_start_worker, initargs=(threads, reports)
        ) as pool,
        tqdm(total=total, desc=desc, unit=unit, disable=not progress) as bar,
    ):
        futures = [pool.submit(fn, *args) for args in args_per_task]
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=POLL_S, return_when=FIRST_EXCEPTION)
            _drain(reports, bar)
            failed = next((f for f in done if f.exception() is not None), None)
            if failed is not None:
                pool.shutdown(wait=True, cancel_futures=True)
                error = failed.exception()
                if isinstance(error, BrokenProcessPool):
                    raise RuntimeError(
                        f"{desc}: a worker process died without an error of its own (killed, out of "
                        f"memory?); fewer workers need less memory ({n} were running)"
                    ) from error
                raise error
        _drain(reports, bar)
        return [f.result() for f in futures]
