"""benchmarks/metrics_speed.py runs end to end at a tiny size, competing load included (a smoke test; the
figures themselves are not checked). The CUDA settings run the same code with another device string."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "metrics_speed.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("metrics_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["metrics_speed"] = module
    spec.loader.exec_module(module)
    return module


def test_idle_and_busy_side_by_side(bench, tmp_path):
    out = tmp_path / "speed.json"
    res = bench.main(["--sizes", "64x48", "--batch-sizes", "1,2", "--repeats", "1", "--compile", "off",
                      "--dtypes", "float64", "--metrics", "default", "--device", "cpu", "--busy", "1",
                      "--busy-fixed", "--busy-max-s", "120", "--threads", "1", "--out", str(out)])
    assert json.loads(out.read_text())["config"]["busy"] == 1
    entry = res["results"][0]
    idle, busy = entry["fusebench"]["cpu/float64"], entry["busy"]["fusebench"]["cpu/float64"]
    assert set(idle) == set(busy) == {1, 2}
    assert idle[1]["pairs_per_s"] and not busy[1]["pairs_per_s"]  # per-metric figures idle only
    assert busy[2]["suite_default_fixed_threads_pairs_per_s"] > 0 and busy[2]["suite_threads"] >= 1
    assert entry["busy"]["speedup_vs_reference"]["cpu/float64/batch1"]["suite_default"] > 0
    assert busy[1]["reference_default_pairs_per_s"] > 0  # the reference timed in turn with the suites
    assert entry["speedup_vs_reference"]["cpu/float64/batch2"]["suite_default_vs_interleaved_reference"] > 0
    assert entry["busy"]["slowdown_vs_idle"]["reference"]["suite_default_pairs_per_s"] > 0
    assert entry["skipped_metrics"] == []


def test_competing_load_stops(bench):
    with bench.CompetingLoad(2, 60) as load:
        procs = list(load.procs)
        assert all(p.poll() is None for p in procs)
    assert all(p.poll() is not None for p in procs)


def test_cuda_settings_use_the_device_loop(bench, monkeypatch):
    """--device cuda takes the GPU batch sizes and the same measuring code; run here on CPU by renaming."""
    import torch

    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: 0)
    monkeypatch.setitem(bench.DEVICE_ALIASES, "cuda", "cpu")
    args = bench.parse_args(["--sizes", "48x48", "--gpu-batch-sizes", "1,3", "--repeats", "1", "--compile", "off",
                             "--dtypes", "float32", "--metrics", "EN,SD,Qabf"])
    pool = bench.load_pool(Path("/nonexistent"), 48, 48)
    res = bench.measure_torch(args, ["EN", "SD", "Qabf"], pool, ["cuda"])
    assert set(res["cuda/float32"]) == {1, 3}
    assert res["cuda/float32"][3]["peak_memory_mib"] == 0
