"""The benchmark scripts run at a tiny size on a CPU and write the JSON their GPU runs will write."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture(autouse=True)
def _own_home(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FUSEBENCH_HOME", str(tmp_path / "home"))


def test_run_speed_compares_the_loop_and_the_pipeline(tmp_path, folder_dataset) -> None:
    out = tmp_path / "run_speed.json"
    result = _script("run_speed").main(["--dataset", str(folder_dataset), "--metrics", "EN,SD", "--batch-sizes",
                                        "1,2", "--workers", "0", "--threads", "1", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["same_scores"] is True and saved["pairs"] == 4
    assert set(saved["runs"]) == {"sequential", "pipeline_b1", "pipeline_b2"}
    assert all(r["pairs_per_s"] > 0 for r in saved["runs"].values())
    assert set(result["speedup_vs_sequential"]) == {"pipeline_b1", "pipeline_b2"}


def test_maefuse_speed_at_a_tiny_size(tmp_path) -> None:
    out = tmp_path / "maefuse_speed.json"
    _script("maefuse_speed").main(["--arch", "test", "--size", "32x32", "--batch-sizes", "1,2", "--device", "cpu",
                                   "--warp", "32", "--min-time", "0.01", "--precisions", "fp32,tf32,bf16",
                                   "--attention", "auto,math", "--skip", "training", "--out", str(out)])
    saved = json.loads(out.read_text())
    runs = saved["inference"]["runs"]
    assert {(r["precision"], r["attention"], r["batch"]) for r in runs} == {
        (p, a, b) for p in ("fp32", "tf32", "bf16") for a in ("auto", "math") for b in (1, 2)}
    assert all(r["pairs_per_s"] > 0 for r in runs)
    assert saved["reference_official"]["pairs_per_s"] > 0 and saved["speedup_vs_official"] > 0
    assert saved["inference"]["tf32_vs_fp32_psnr_db"] > 30  # TF32 is fp32 on a CPU
