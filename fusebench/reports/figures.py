"""Figures built from run folders, for what people would rather look at than read.

- :func:`comparison_grid`: rows are pairs, columns are infrared, visible, then each method's fused image
  (the qualitative figure of every IVIF paper).
- :func:`metric_boxplot`: the per-image distribution of one metric for each method on one dataset,
  which a table's mean hides.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fusebench.datasets.base import Pair, pairs_from_folders
from fusebench.files import atomic_write
from fusebench.images import read_image
from fusebench.reports.table import collect_summaries
from fusebench.results import Summary


def _runs_for(runs_dir: Path, dataset_key: str, profile: str, methods: Sequence[str] | None) -> list[Summary]:
    runs = [s for s in collect_summaries(runs_dir, profile) if s["dataset"]["key"] == dataset_key]
    if methods:
        by_label = {s["method"]["label"]: s for s in runs}
        missing = [m for m in methods if m not in by_label]
        if missing:
            raise ValueError(f"no {profile} results of {missing} on {dataset_key} in {runs_dir}")
        runs = [by_label[m] for m in methods]
    if not runs:
        raise ValueError(f"no {profile} results on dataset '{dataset_key}' in {runs_dir}")
    return runs


def _save(fig, path: str | Path) -> Path:  # type: ignore[no-untyped-def]
    import matplotlib.pyplot as plt

    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format=Path(path).suffix.lstrip(".") or "png", dpi=150, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def _source_pairs(run: Summary, data_root: str | Path | None) -> list[Pair]:
    """The pairs a run fused: from the folder it recorded, or the same dataset under ``data_root``."""
    from fusebench.datasets import DATASETS, load_dataset

    cfg = run["config"]
    if data_root is not None:
        if cfg["dataset"].split(".")[0].lower() not in DATASETS:  # a folder dataset: data_root is that folder
            return pairs_from_folders(Path(data_root) / "ir", Path(data_root) / "vi")
        return load_dataset(cfg["dataset"], split=cfg["split"], subset=cfg["subset"], root=data_root).pairs
    folder = Path(run["dataset"].get("root") or "")
    if not (folder / "ir").is_dir():
        raise ValueError(f"the sources of {run['dataset']['key']} were read from {folder}, which is not there now; "
                         "pass --data-root with the folder that holds the dataset")
    return pairs_from_folders(folder / "ir", folder / "vi")


def comparison_grid(
    runs_dir: str | Path, dataset_key: str, output: str | Path, *, ids: Sequence[str] | None = None,
    methods: Sequence[str] | None = None, profile: str = "fusebench", max_pairs: int = 4,
    data_root: str | Path | None = None,
) -> Path:
    """Save a grid of source and fused images for a few pairs of one dataset.

    The sources are read from where the run read them (its summary records the folder), or from the same
    dataset under ``data_root``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = _runs_for(Path(runs_dir), dataset_key, profile, methods)
    pairs = _source_pairs(runs[0], data_root)
    by_id = {p.id: p for p in pairs}
    chosen = list(ids) if ids else [p.id for p in pairs[:max_pairs]]
    unknown = [i for i in chosen if i not in by_id]
    if unknown:
        raise ValueError(f"ids {unknown} are not in {dataset_key}")
    columns = ["infrared", "visible", *[s["method"]["label"] for s in runs]]
    fig, axes = plt.subplots(len(chosen), len(columns), figsize=(2.6 * len(columns), 2.2 * len(chosen)),
                             squeeze=False)
    for row, pair_id in enumerate(chosen):
        pair = by_id[pair_id]
        images = [read_image(pair.ir, mode="grey"), read_image(pair.vi)]
        for s in runs:
            images.append(read_image(Path(runs_dir) / s["method"]["label"] / dataset_key / "fused" / f"{pair_id}.png"))
        for col, (ax, image) in enumerate(zip(axes[row], images)):
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(columns[col], fontsize=9)
            if col == 0:
                ax.set_ylabel(pair_id, fontsize=8)
    fig.tight_layout()
    return _save(fig, output)


def metric_boxplot(
    runs_dir: str | Path, dataset_key: str, metric: str, output: str | Path, *,
    methods: Sequence[str] | None = None, profile: str = "fusebench",
) -> Path:
    """Save a box plot of one metric's per-image values for each method on one dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = _runs_for(Path(runs_dir), dataset_key, profile, methods)
    labels, values, skipped = [], [], []
    for s in runs:
        frame = pd.read_csv(Path(runs_dir) / s["method"]["label"] / dataset_key / f"metrics_{profile}.csv")
        if metric not in frame:
            skipped.append(s["method"]["label"])
            continue
        labels.append(s["method"]["label"])
        values.append(frame[metric].to_numpy(dtype=np.float64))
    if not labels:
        raise ValueError(f"no run on {dataset_key} computed {metric} (profile {profile}); rerun with --metrics")
    if skipped:
        warnings.warn(f"left out of the {metric} plot, not computed by their runs: {', '.join(skipped)}",
                      stacklevel=2)
    higher = next(s for s in runs if s["method"]["label"] == labels[0])["metrics"]["higher_is_better"][metric]
    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 2, 3.6))
    ax.boxplot(values, showmeans=True)
    ax.set_xticks(range(1, len(labels) + 1), labels, rotation=30, ha="right")
    ax.set_ylabel(f"{metric} ({'higher' if higher else 'lower'} is better)")
    ax.set_title(f"{metric} per image on {dataset_key} (profile {profile})")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, output)
