"""Thread counts that follow the cores really available: quota, affinity, other processes."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest
import torch

from fusebench import threads


def test_cgroup_v2_and_v1_quotas(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cgroup_cpu_limit(v1) == 2.0
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads.cgroup_cpu_limit(v1) is None
    assert threads.cgroup_cpu_limit(tmp_path / "none") is None


def test_proc_stat_ticks_count_busy_time_of_the_chosen_cpus() -> None:
    stat = ("cpu  10 0 10 100 5 0 0 0 0 0\n"
            "cpu0 7 1 2 50 3 1 1 1 0 0\n"
            "cpu1 3 0 8 50 2 0 0 0 0 0\n"
            "intr 12345\n")
    assert threads._cpu_ticks(stat, None) == (7 + 1 + 2 + 1 + 1 + 1 + 3 + 8, 66 + 63)
    assert threads._cpu_ticks(stat, {1}) == (11, 63)


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux only")
def test_a_busy_core_is_not_counted() -> None:
    cpu = min(os.sched_getaffinity(0))
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        assert threads.affinity_cores() == 1
        proc = multiprocessing.get_context("fork").Process(target=_spin, args=(1.5,))
        proc.start()  # inherits the one-core affinity: it competes with us for that core
        time.sleep(0.2)
        busy = threads.busy_cores_elsewhere(0.5)
        proc.join()
    finally:
        os.sched_setaffinity(0, before)
    assert busy > 0.7  # the spinner had the core while we slept (other load only adds to it)
    assert 1 <= threads.usable_cores(0) <= len(before)


def test_configure_threads_sets_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        assert threads.configure_threads(1) == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("FUSEBENCH_THREADS", "2")
        assert threads.configure_threads() == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_scoring_split_runs_up_to_four_pairs_at_once_and_shares_the_rest():
    from fusebench.threads import scoring_split

    assert scoring_split(1) == (1, 1)
    assert scoring_split(2) == (2, 1)
    assert scoring_split(3) == (3, 1)
    assert scoring_split(16) == (4, 4)
    assert scoring_split(6) == (4, 1)
    assert scoring_split(8, max_parallel=2) == (2, 4)
