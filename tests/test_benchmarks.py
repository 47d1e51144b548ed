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


def test_run_vs_revision_times_the_command_against_an_exported_revision(tmp_path, folder_dataset) -> None:
    out = tmp_path / "run_vs_head.json"
    result = _script("run_vs_revision").main(["--rev", "HEAD", "--dataset", str(folder_dataset), "--metrics", "EN,SD",
                                              "--repeats", "1", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    assert len(saved["revision"]["commit"]) == 40
    assert all(len(saved["runs"][k]) == 1 and saved["runs"][k][0]["wall_s"] > 0 for k in ("revision", "current"))
    assert "metrics_total" in saved["runs"]["current"][0]["timings"]
    assert saved["speedup"] == pytest.approx(saved["median_wall_s"]["revision"] / saved["median_wall_s"]["current"],
                                             rel=1e-2)
    assert saved["max_relative_score_difference"] <= 1e-12  # the same metrics code scores the same


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
