"""How many CPU threads torch should use here, decided once, at a run's first training step.

torch's intra-op threads (OpenMP) wait for one another at the end of every parallel
operation, spinning. On a machine where other processes hold some of the cores, a thread
that has lost its core holds up every other one until the scheduler gives it a time slice
back: measured on a 2-core machine with one core busy, two threads trained the headline
DCGAN at 94-126 images/s and one thread at 223-234, and the MLP at 600 against 2,600. So
``threads = "auto"`` (the default) uses the cores that are free when the run starts training: it
reads how busy each CPU was over a tenth of a second (``/proc/stat``), and leaves out
the cores other processes use. A quiet machine gets torch's own default (every physical
core). The count is kept in the checkpoints and used again on resume, because the thread
count changes the order of float sums and a resumed run must end as the uninterrupted one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

WINDOW = 0.1
"""Seconds over which the other processes' CPU use is measured."""
MARGIN = 0.2
"""A core counts as free when no more than this much of it is used by others."""


def allowed_cpus() -> set[int] | None:
    """The CPUs this process may run on, where the platform says."""
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None


def cpu_jiffies(stat: Path = Path("/proc/stat")) -> dict[int, tuple[int, int]] | None:
    """Each CPU's (busy, total) jiffies since boot, or None where /proc/stat is missing."""
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return None
    counts = {}
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            values = [int(value) for value in fields[:8]]
            idle = values[3] + values[4]  # idle and iowait
            counts[int(name[3:])] = (sum(values) - idle, sum(values))
    return counts


def free_cpus(window: float = WINDOW, stat: Path = Path("/proc/stat")) -> float | None:
    """How many of this process's CPUs other processes left free over ``window`` seconds
    (this process's own use is not counted against them), or None where it cannot be read."""
    allowed = allowed_cpus()
    before, own_before = cpu_jiffies(stat), time.process_time()
    if before is None:
        return None
    time.sleep(window)
    after, own = cpu_jiffies(stat), time.process_time() - own_before
    cpus = [cpu for cpu in before if cpu in after and (allowed is None or cpu in allowed)]
    busy = 0.0
    for cpu in cpus:
        total = after[cpu][1] - before[cpu][1]
        busy += (after[cpu][0] - before[cpu][0]) / total if total > 0 else 0.0
    others = max(0.0, busy - own / window)
    return max(0.0, len(cpus) - others)


def auto_threads(default: int, logical: int, free: float | None) -> int:
    """torch's ``default`` thread count (its physical cores), scaled down to the share of
    the ``logical`` CPUs that are ``free``; at least one."""
    if free is None or logical <= 0:
        return default
    share = min(1.0, free / logical)
    return max(1, min(default, int(default * share + MARGIN)))


def choose_threads(default: int) -> int:
    """``auto_threads`` for this process's CPUs as they are now."""
    allowed = allowed_cpus()
    logical = len(allowed) if allowed is not None else (os.cpu_count() or default)
    return auto_threads(default, logical, free_cpus())
