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
    with pytest.raises(ValueError, match="has no Qabf"):
        metric_boxplot(tmp_path / "runs", "data", "Qabf", tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"ids \['zz'\] are not in data"):
        comparison_grid(tmp_path / "runs", "data", tmp_path / "g.png", ids=["zz"])
