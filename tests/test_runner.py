"""`fusebench run` end to end: fused values, results files, resume, refusal to mix runs, bad inputs, folder."""

from __future__ import annotations

import json
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from fusebench.cli import main
from fusebench.methods import FusionMethod, register_method
from fusebench.runner import RunConfig, RunError, run

METRICS = ["EN", "SD", "CC", "SCD", "Qabf"]


class Flaky(FusionMethod):
    """Pixel mean that records the pairs it fuses and is interrupted on the pair named in ``fail_on``."""

    calls: ClassVar[list[str]] = []
    fail_on: ClassVar[str | None] = None  # a class-level switch, so both runs have the same config

    def fuse_batch(self, ir, vi, ids=None):  # type: ignore[no-untyped-def]
        Flaky.calls.extend(ids or [])
        if ids and Flaky.fail_on in ids:
            raise KeyboardInterrupt("simulated interruption")
        return super().fuse_batch(ir, vi, ids)

    def fuse(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        return (ir + vi) / 2


register_method("test-flaky", description="test only")(Flaky)


@pytest.fixture(autouse=True)
def _own_hash_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FUSEBENCH_HOME", str(tmp_path / "home"))


def _config(tmp_path, data, **kw) -> RunConfig:
    return RunConfig(**{"method": "mean", "dataset": str(data), "metrics": METRICS, "out": str(tmp_path / "runs"),
                        **kw})


def test_run_writes_fused_images_and_results(tmp_path, folder_dataset) -> None:
    result = run(_config(tmp_path, folder_dataset), progress=False)
    assert (result.fused, result.skipped) == (4, 0)
    ir = np.asarray(Image.open(folder_dataset / "ir" / "p0.png"), dtype=np.float64)
    vi = np.asarray(Image.open(folder_dataset / "vi" / "p0.png"), dtype=np.float64)
    fused = np.asarray(Image.open(result.run_dir / "fused" / "p0.png"))
    mean = (ir + vi) / 2  # grey pair: the exact mean, rounded (ties at .5 may go either way in float32)
    assert np.abs(fused - mean).max() <= 0.5
    np.testing.assert_array_equal(fused[mean % 1 == 0], mean[mean % 1 == 0])
    colour = np.asarray(Image.open(result.run_dir / "fused" / "p1.png"))
    assert colour.shape == (48, 64, 3)

    per_image = pd.read_csv(result.metrics_path, index_col="id")
    assert list(per_image.index) == ["p0", "p1", "p2", "p3"]
    summary = json.loads(result.summary_path.read_text())
    for metric in METRICS:
        assert summary["means"][metric] == pytest.approx(per_image[metric].mean(), rel=1e-9)
    assert summary["metrics"]["profile"] == "fusebench" and summary["metrics"]["higher_is_better"]["EN"] is True
    assert summary["config"]["metrics"] == METRICS and summary["env"]["torch"] == torch.__version__
    assert summary["dataset"]["n_pairs"] == 4 and len(summary["dataset"]["ids_sha256"]) == 64
    # SD of the grey fused image, straight from its pixels
    assert per_image.loc["p0", "SD"] == pytest.approx(fused.astype(np.float64).std(), rel=1e-9)


def test_interrupted_run_resumes_without_redoing_pairs(tmp_path, folder_dataset) -> None:
    config = _config(tmp_path, folder_dataset, method="test-flaky", name="flaky")
    Flaky.calls, Flaky.fail_on = [], "p2"
    with pytest.raises(KeyboardInterrupt):
        run(config, progress=False)
    fused_dir = tmp_path / "runs" / "flaky" / "data" / "fused"
    assert sorted(p.name for p in fused_dir.iterdir()) == ["p0.png", "p1.png"]  # nothing half-written
    before = (fused_dir / "p0.png").stat().st_mtime_ns
    Flaky.calls, Flaky.fail_on = [], None
    result = run(config, progress=False)
    assert Flaky.calls == ["p2", "p3"]
    assert (result.fused, result.skipped) == (2, 2)
    assert (fused_dir / "p0.png").stat().st_mtime_ns == before
    # Another method into the same run folder is refused, not mixed in.
    with pytest.raises(RunError, match="holds a run with a different method; refusing to mix"):
        run(_config(tmp_path, folder_dataset, method="max", name="flaky"), progress=False)


def test_folder_run_reproduces_direct_metrics(tmp_path, folder_dataset) -> None:
    direct = run(_config(tmp_path, folder_dataset), progress=False)
    again = run(_config(tmp_path, folder_dataset, method="folder", name="scored",
                        method_options={"path": str(direct.run_dir / "fused")}), progress=False)
    a = pd.read_csv(direct.metrics_path, index_col="id")[METRICS]
    b = pd.read_csv(again.metrics_path, index_col="id")[METRICS]
    pd.testing.assert_frame_equal(a, b)


def test_cli_bad_input_exits_nonzero_naming_the_file(tmp_path, folder_dataset) -> None:
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(folder_dataset / "vi" / "p3.png")
    out = CliRunner().invoke(main, ["run", "--method", "max", "--dataset", str(folder_dataset), "--out",
                                    str(tmp_path / "runs"), "--metrics", "EN", "--no-progress"])
    assert out.exit_code != 0
    assert "p3.png: size 71x57 differs from the visible image" in out.output
    (folder_dataset / "vi" / "p0.png").unlink()
    out = CliRunner().invoke(main, ["run", "--method", "max", "--dataset", str(folder_dataset), "--out",
                                    str(tmp_path / "runs2"), "--no-progress"])
    assert out.exit_code != 0 and "unpaired images" in out.output and "p0" in out.output
    leftovers = [p for p in (tmp_path / "runs").rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []


def test_cli_run_then_table(tmp_path, folder_dataset, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    out = runner.invoke(main, ["run", "--method", "mean,max", "--dataset", str(folder_dataset), "--metrics",
                               ",".join(METRICS), "--no-progress"])
    assert out.exit_code == 0, out.output
    assert "mean on data: fused 4 pairs" in out.output and "max on data: fused 4 pairs" in out.output
    out = runner.invoke(main, ["table", "--datasets", "data", "--metrics", "EN,SD,Qabf"])  # folders only when named
    assert out.exit_code == 0, out.output
    table_md = (tmp_path / "reports" / "table_fusebench.md").read_text()
    means = {m: json.loads((tmp_path / "runs" / m / "data" / "summary_fusebench.json").read_text())["means"]
             for m in ("mean", "max")}
    best_sd = max(means, key=lambda m: means[m]["SD"])
    row = next(line for line in table_md.splitlines() if line.split("|")[1:2] and line.split("|")[1].strip() == best_sd)
    assert f"**{means[best_sd]['SD']:.3f}**" in row


def test_replaced_source_images_are_not_resumed_over(tmp_path, folder_dataset) -> None:
    run(_config(tmp_path, folder_dataset), progress=False)
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(folder_dataset / "ir" / "p0.png")
    with pytest.raises(RunError, match="different inputs_hash"):
        run(_config(tmp_path, folder_dataset), progress=False)


def test_cli_compile_metrics_scores_the_same_and_is_recorded(tmp_path, folder_dataset) -> None:
    runner = CliRunner()
    base = ["run", "--method", "mean", "--dataset", str(folder_dataset), "--metrics", "EN,SD,Qabf", "--no-progress"]
    eager = runner.invoke(main, [*base, "--out", str(tmp_path / "eager")])
    compiled = runner.invoke(main, [*base, "--out", str(tmp_path / "compiled"), "--compile-metrics"])
    assert eager.exit_code == 0 and compiled.exit_code == 0, eager.output + compiled.output
    frames = [pd.read_csv(tmp_path / out / "mean" / "data" / "metrics_fusebench.csv", index_col="id")
              for out in ("eager", "compiled")]
    metrics = ["EN", "SD", "Qabf"]
    np.testing.assert_allclose(frames[1][metrics].to_numpy(), frames[0][metrics].to_numpy(), rtol=1e-10)
    summary = json.loads((tmp_path / "compiled" / "mean" / "data" / "summary_fusebench.json").read_text())
    assert summary["config"]["compile_metrics"] is True
