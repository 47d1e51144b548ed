"""How many CPU threads fusebench should use: the cores it may run on and that nobody else is using.

torch starts one intra-op thread per core it can see. On a shared workstation or a cluster node that is too
many: a CPU quota (cgroups), an affinity mask (``taskset``, Slurm) or another busy process leaves fewer cores,
and torch's threads then wait on each other at every operation (measured: 0.37 s per pair with one thread,
4-6 s with two while another process kept one of the two cores busy). :func:`usable_cores` counts the cores
that are really free; :func:`configure_threads` applies it to torch once per command.

OpenMP's idle threads must also sleep rather than spin (``OMP_WAIT_POLICY=PASSIVE``), which has to be set
before torch starts: the CLI does it, library users can export it.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

_CGROUP = Path("/sys/fs/cgroup")
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system irq softirq steal (idle and iowait are free time)


def affinity_cores() -> int:
    """Cores this process may be scheduled on (its affinity mask), else the machine's core count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def cgroup_cpu_limit(root: Path = _CGROUP) -> float | None:
    """The CPU quota of this process's cgroup in cores (v2 ``cpu.max`` or v1 CFS quota), None if unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def _cpu_ticks(stat: str, cpus: set[int] | None) -> tuple[int, int]:
    """(busy, total) clock ticks summed over the ``cpuN`` lines of ``/proc/stat`` (all when ``cpus`` is None)."""
    busy = total = 0
    for line in stat.splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or (cpus is not None and int(name[3:]) not in cpus):
            continue
        ticks = [int(f) for f in fields[:8]]
        busy += sum(ticks[i] for i in _BUSY_FIELDS if i < len(ticks))
        total += sum(ticks)
    return busy, total


def _own_ticks() -> int:
    """User + system ticks of this process, its threads included."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))


def busy_cores_elsewhere(seconds: float = 0.05) -> float:
    """Cores of our affinity set that other processes kept busy during a short sample (0 where unknown)."""
    try:
        cpus = os.sched_getaffinity(0)
        before, own_before = _cpu_ticks(Path("/proc/stat").read_text(), cpus), _own_ticks()
        time.sleep(seconds)
        after, own_after = _cpu_ticks(Path("/proc/stat").read_text(), cpus), _own_ticks()
    except (AttributeError, OSError, ValueError):
        return 0.0
    elapsed = after[1] - before[1]
    if elapsed <= 0:
        return 0.0
    others = (after[0] - before[0]) - (own_after - own_before)
    return max(0.0, others / elapsed * len(cpus))


def usable_cores(sample_seconds: float = 0.05) -> int:
    """Cores fusebench can use now: affinity, capped by the cgroup quota, minus cores others keep busy."""
    cores = affinity_cores()
    limit = cgroup_cpu_limit()
    if limit is not None:
        cores = min(cores, max(1, math.floor(limit)))
    busy = busy_cores_elsewhere(sample_seconds) if sample_seconds > 0 else 0.0
    return max(1, min(cores, round(cores - busy)))


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads to ``threads`` (default: :func:`usable_cores`, or ``$FUSEBENCH_THREADS``).

    Returns the number set. Called once by each CLI command before heavy work.
    """
    import torch

    if threads is None and os.environ.get("FUSEBENCH_THREADS"):
        threads = int(os.environ["FUSEBENCH_THREADS"])
    n = max(1, threads if threads is not None else usable_cores())
    torch.set_num_threads(n)
    return n
