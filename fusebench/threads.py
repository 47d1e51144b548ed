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
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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


def allowed_cores() -> int:
    """Cores this process may use at all: its affinity mask, capped by the cgroup quota."""
    cores = affinity_cores()
    limit = cgroup_cpu_limit()
    return cores if limit is None else min(cores, max(1, math.floor(limit)))


def usable_cores(sample_seconds: float = 0.05) -> int:
    """Cores fusebench can use now: :func:`allowed_cores` minus the cores others keep busy (a short sample)."""
    cores = allowed_cores()
    busy = busy_cores_elsewhere(sample_seconds) if sample_seconds > 0 else 0.0
    return max(1, min(cores, round(cores - busy)))


_MIN_WINDOW_S = 0.1  # shorter windows hold too few clock ticks (100 Hz) to tell a busy core from an idle one
_lock = threading.Lock()
_last: dict[str, float] = {}  # time, busy ticks, total ticks, own ticks of the previous sample; cores chosen


def _snapshot() -> tuple[float, int, int, int] | None:
    """(monotonic time, busy ticks, total ticks, own ticks) of our affinity set, None where unknown."""
    try:
        busy, total = _cpu_ticks(Path("/proc/stat").read_text(), os.sched_getaffinity(0))
        return time.monotonic(), busy, total, _own_ticks()
    except (AttributeError, OSError, ValueError, IndexError):
        return None


def usable_cores_now() -> int:
    """:func:`usable_cores` without the sleep: the load of other processes since the previous call.

    The first call samples for 50 ms; later calls read ``/proc/stat`` only, so work done in many small calls
    (a dataset scored batch by batch) follows the machine's load at no cost.
    """
    with _lock:
        snap = _snapshot()
        if snap is None:
            return usable_cores()
        if not _last:
            n = usable_cores()
            _last.update(zip(("t", "busy", "total", "own"), _snapshot() or snap), cores=n)
            return n
        if snap[0] - _last["t"] < _MIN_WINDOW_S:
            return int(_last["cores"])
        cores = allowed_cores()
        elapsed = snap[2] - _last["total"]
        others = (snap[1] - _last["busy"]) - (snap[3] - _last["own"])
        busy = max(0.0, others / elapsed * len(os.sched_getaffinity(0))) if elapsed > 0 else 0.0
        n = max(1, min(cores, round(cores - busy)))
        _last.update(zip(("t", "busy", "total", "own"), snap), cores=n)
        return n


def workers_sleep() -> bool:
    """Whether idle OpenMP workers sleep (``OMP_WAIT_POLICY=PASSIVE``, read by libgomp when torch loads).

    By default they spin first, and a spinning worker that shares a core with another process holds up every
    operation: the default metric suite took 18-20 s a pair with 2 threads against 1.1 s with 1 on a 2-core
    machine with one busy core; with sleeping workers 2 threads took 0.3-0.9 s. So fewer threads help only
    when workers spin.
    """
    return os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"


def scoring_threads(threads: int | None = None) -> int:
    """Threads for one call of heavy work (scoring): ``threads``, else ``$FUSEBENCH_THREADS``, else torch's
    setting capped by :func:`allowed_cores` and, unless OpenMP workers sleep, by :func:`usable_cores_now`."""
    import torch

    if threads is not None:
        if threads < 1:
            raise ValueError(f"Expected threads >= 1 or None. Got {threads}.")
        return threads
    env = os.environ.get("FUSEBENCH_THREADS")
    if env:
        return max(1, int(env))
    cap = torch.get_num_threads()
    return max(1, min(allowed_cores() if workers_sleep() else usable_cores_now(), cap))


def scoring_split(cores: int, max_parallel: int = 4) -> tuple[int, int]:
    """(pairs scored at once, torch threads for each) on ``cores`` CPU cores.

    Eager metrics run ~12,000 small operations per 640x480 pair, which gain little from intra-op threads (2
    threads: ~1.4x) but scale across pairs scored in separate Python threads, since torch releases the GIL inside
    each operation. The Python code between operations holds the GIL, so at most ``max_parallel`` pairs run at
    once (a cap not measured beyond 2 cores) and any further cores become intra-op threads.
    """
    parallel = max(1, min(cores, max_parallel))
    return parallel, max(1, cores // parallel)


@contextmanager
def torch_threads(n: int) -> Iterator[int]:
    """torch's intra-op threads set to ``n`` inside the scope, restored afterwards."""
    import torch

    old = torch.get_num_threads()
    if n != old:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if n != old:
            torch.set_num_threads(old)


def local_processes() -> int:
    """Processes of this run on this machine (torchrun's LOCAL_WORLD_SIZE; 1 outside a distributed run)."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads to ``threads`` (default: ``$FUSEBENCH_THREADS``, else this process's share
    of :func:`usable_cores`: torchrun's local processes split them).

    Returns the number set. Called once by each CLI command before heavy work.
    """
    import torch

    if threads is None and os.environ.get("FUSEBENCH_THREADS"):
        threads = int(os.environ["FUSEBENCH_THREADS"])
    n = max(1, threads if threads is not None else usable_cores() // local_processes())
    torch.set_num_threads(n)
    return n
