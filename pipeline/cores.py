"""How many cores this process may use, for sizing thread pools and choosing to overlap work.

`os.cpu_count()` counts the machine's cores, but a process pinned by `taskset`, a batch
scheduler or a container's cpuset may run on fewer; threads beyond those only take turns.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores in this process's CPU affinity mask (the machine's count where there is no mask)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1
