"""evaluate() scores with the cores usable now and gives torch's thread setting back; the numbers do not depend
on the thread count."""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest
import torch
from metric_data import random_triple

import fusebench.metrics as M
from fusebench import threads as _threads

evaluate_module = importlib.import_module("fusebench.metrics.evaluate")


@pytest.fixture(scope="module")
def triple():
    return random_triple(np.random.default_rng(3), 64, 72, n=2)


def test_explicit_threads_are_used_and_restored(triple, monkeypatch):
    seen = []
    real = _threads.torch_threads

    def spy(n):
        seen.append(n)
        return real(n)

    monkeypatch.setattr(evaluate_module, "torch_threads", spy)
    monkeypatch.setattr(evaluate_module, "workers_sleep", lambda: False)
    before = torch.get_num_threads()
    one = M.evaluate(*triple, threads=1)
    two = M.evaluate(*triple, threads=2)
    assert seen == [1, 1, 2, 2]  # quantisation, then the batch's one chunk
    assert torch.get_num_threads() == before
    pd.testing.assert_frame_equal(one, two, check_exact=False, rtol=1e-12)
    seen.clear()  # OpenMP workers that sleep: the one chunk runs on one thread (intra-op threads cost more)
    monkeypatch.setattr(evaluate_module, "workers_sleep", lambda: True)
    pd.testing.assert_frame_equal(M.evaluate(*triple, threads=2), two, check_exact=False, rtol=1e-12)
    assert seen == [2, 1]


def test_chunks_are_scored_in_parallel_threads_with_the_same_numbers(monkeypatch):
    """A CPU batch of several chunks runs scoring_split(threads) chunks at once, one torch thread each."""
    import threading

    batch = random_triple(np.random.default_rng(5), 48, 56, n=5)
    monkeypatch.setattr(evaluate_module, "_cpu_chunk_pixels", lambda compiled, dtype: 48 * 56)  # 1 image a chunk
    seen: list[tuple[str, int]] = []
    real = _threads.torch_threads

    def spy(n):
        seen.append((threading.current_thread().name.split("_")[0], n))
        return real(n)

    monkeypatch.setattr(evaluate_module, "torch_threads", spy)
    serial = M.evaluate(*batch, threads=1)
    assert {name for name, _ in seen} == {"MainThread"}
    seen.clear()
    parallel = M.evaluate(*batch, threads=2)
    assert seen[0] == ("MainThread", 2)
    assert sorted(seen[1:]) == [("fusebench-metrics", 1)] * 5  # five chunks, two at a time, one thread each
    pd.testing.assert_frame_equal(serial, parallel, check_exact=False, rtol=1e-12)
    assert list(parallel.index) == list(range(5))


def test_default_threads_follow_usable_cores_capped_by_torch(monkeypatch):
    monkeypatch.delenv("FUSEBENCH_THREADS", raising=False)
    monkeypatch.setenv("OMP_WAIT_POLICY", "active")  # spinning workers: leave busy cores alone
    monkeypatch.setattr(_threads, "usable_cores_now", lambda: 1)
    assert _threads.scoring_threads() == 1
    monkeypatch.setattr(_threads, "usable_cores_now", lambda: 64)
    assert _threads.scoring_threads() == torch.get_num_threads()  # never more than torch's own setting
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # sleeping workers: others' load does not matter
    monkeypatch.setattr(_threads, "usable_cores_now", lambda: 1)
    monkeypatch.setattr(_threads, "allowed_cores", lambda: 64)
    assert _threads.scoring_threads() == torch.get_num_threads()
    monkeypatch.setattr(_threads, "allowed_cores", lambda: 1)  # affinity or cgroup quota
    assert _threads.scoring_threads() == 1
    monkeypatch.setenv("FUSEBENCH_THREADS", "3")
    assert _threads.scoring_threads() == 3
    assert _threads.scoring_threads(2) == 2
    with pytest.raises(ValueError, match="threads"):
        _threads.scoring_threads(0)


def test_torch_threads_restores_on_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), _threads.torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
        raise RuntimeError
    assert torch.get_num_threads() == before


def test_usable_cores_now_is_cheap_after_the_first_call():
    import time

    first = _threads.usable_cores_now()
    t = time.perf_counter()
    again = [_threads.usable_cores_now() for _ in range(20)]
    assert time.perf_counter() - t < 0.04  # no 50 ms sample per call
    assert all(1 <= n <= _threads.allowed_cores() for n in [first, *again])


def test_evaluate_files_passes_threads(shared_data, monkeypatch, triples):
    seen = []
    real = _threads.torch_threads
    monkeypatch.setattr(evaluate_module, "torch_threads", lambda n: seen.append(n) or real(n))
    d = shared_data / "triples" / "tno_05_piafusion"
    M.evaluate_files([("x", d / "fused.png", d / "ir.png", d / "vi.png")], metrics=["EN", "SD"], threads=1)
    assert seen == [1, 1]  # quantisation, then the one chunk
