"""Run one task per shard with dask, on this machine or on a dask-distributed cluster.

Work is always assigned by whole shards: zarr 3 rewrites a whole shard file on every
write to it, so two processes writing pairs of one shard lose data silently.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import dask
from dask.callbacks import Callback
from tqdm.auto import tqdm

log = logging.getLogger(__name__)


class _TaskProgress(Callback):
    """Advance a progress bar each time one of our named shard tasks finishes."""

    def __init__(self, bar: tqdm, prefix: str) -> None:
        super().__init__()
        self._bar, self._prefix = bar, prefix

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        name = key[0] if isinstance(key, tuple) else key
        if str(name).startswith(self._prefix):
            self._bar.update(1)


def run_shard_tasks(
    fn: Callable[..., Any],
    args_per_task: Sequence[tuple],
    *,
    workers: int,
    scheduler: str | None = None,
    desc: str = "shards",
) -> list[Any]:
    """Call `fn(*args)` for every args tuple, in parallel, and return results in order.

    Args:
        fn: a picklable top-level function doing one shard's work.
        args_per_task: one tuple of arguments per shard.
        workers: processes on this machine (1 runs in this process, easiest to debug).
        scheduler: address of a dask-distributed scheduler (e.g. "tcp://10.0.0.5:8786");
            when given, tasks run on that cluster and `workers` is ignored.
        desc: progress bar label.
    """
    prefix = f"{getattr(fn, '__name__', 'task')}-shard"
    tasks = [
        dask.delayed(fn, pure=False)(*args, dask_key_name=f"{prefix}-{i}")
        for i, args in enumerate(args_per_task)
    ]
    if not tasks:
        return []
    if scheduler:
        from distributed import Client, progress  # optional dependency: pip install probe3r[distributed]

        with Client(scheduler) as client:
            log.info("running %d tasks on %s", len(tasks), scheduler)
            futures = client.compute(tasks)
            progress(futures)
            return client.gather(futures)
    with tqdm(total=len(tasks), desc=desc, unit="shard") as bar, _TaskProgress(bar, prefix):
        if workers <= 1:
            return list(dask.compute(*tasks, scheduler="synchronous"))
        return list(dask.compute(*tasks, scheduler="processes", num_workers=workers))
