"""Figures from run folders: a comparison grid and a per-image box plot."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fusebench.reports.figures import comparison_grid, metric_boxplot
from fusebench.runner import RunConfig, run


def test_grid_and_boxplot(tmp_path, folder_dataset) -> None:
    for method in ("mean", "max"):
        run(RunConfig(method=method, dataset=str(folder_dataset), metrics=["EN", "SD"], out=str(tmp_path / "runs")),
            progress=False)
    grid = comparison_grid(tmp_path / "runs", "data", tmp_path / "grid.png", ids=["p1", "p2"])
    image = np.asarray(Image.open(grid))
    assert image.shape[0] > 100 and image.shape[1] > 2 * image.shape[0]  # 2 rows x 4 columns
    box = metric_boxplot(tmp_path / "runs", "data", "SD", tmp_path / "box.png", methods=["max", "mean"])
    assert Image.open(box).size[0] > 200
    with pytest.raises(ValueError, match=r"no fusebench results of \['other'\] on data"):
        metric_boxplot(tmp_path / "runs", "data", "SD", tmp_path / "x.png", methods=["other"])
    with pytest.raises(ValueError, match="no run on data computed Qabf"):
        metric_boxplot(tmp_path / "runs", "data", "Qabf", tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"ids \['zz'\] are not in data"):
        comparison_grid(tmp_path / "runs", "data", tmp_path / "g.png", ids=["zz"])


def test_box_skips_runs_without_the_metric(tmp_path, folder_dataset) -> None:
    for method, metrics in (("mean", ["EN", "Nabf"]), ("max", ["EN"])):
        run(RunConfig(method=method, dataset=str(folder_dataset), metrics=metrics, out=str(tmp_path / "runs")),
            progress=False)
    with pytest.warns(UserWarning, match="left out of the Nabf plot, not computed by their runs: max"):
        box = metric_boxplot(tmp_path / "runs", "data", "Nabf", tmp_path / "box.png")
    assert box.is_file()


def test_grid_reads_the_sources_the_run_read(tmp_path, folder_dataset, monkeypatch) -> None:
    run(RunConfig(method="mean", dataset=str(folder_dataset), metrics=["EN"], out=str(tmp_path / "runs")),
        progress=False)
    monkeypatch.setenv("FUSEBENCH_DATA", str(tmp_path / "elsewhere"))  # not where the run read its pairs
    assert comparison_grid(tmp_path / "runs", "data", tmp_path / "grid.png", ids=["p0"]).is_file()
    moved = tmp_path / "moved"
    folder_dataset.rename(moved)
    with pytest.raises(ValueError, match="pass --data-root"):
        comparison_grid(tmp_path / "runs", "data", tmp_path / "grid.png", ids=["p0"])
    assert comparison_grid(tmp_path / "runs", "data", tmp_path / "grid.png", ids=["p0"], data_root=moved).is_file()
