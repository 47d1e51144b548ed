"""Loss curves: one CSV row per logged step (appended, so a resumed run continues it), and a plot."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from fusebench.files import atomic_write


class LossHistory:
    """Append-only CSV of ``step, stage, <loss names>``; rows past a resume point are dropped on resume."""

    def __init__(self, path: str | Path, resume_step: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fields: list[str] = []  # the header on disk, kept so that logging never re-reads the file
        if self.path.exists() and resume_step is not None:
            rows = [r for r in self.rows() if int(r["step"]) <= resume_step]
            self._rewrite(rows)
        elif self.path.exists():
            self.path.unlink()

    def rows(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        with open(self.path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        fields = list(dict.fromkeys(k for r in rows for k in r)) or ["step", "stage"]
        with atomic_write(self.path, "w") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        self.fields = fields

    def log(self, step: int, stage: str, **losses: float) -> None:
        """Record one step's losses: one appended line (the file is rewritten only when a new loss name
        extends the header, i.e. at most once per stage)."""
        row = {"step": step, "stage": stage, **{k: f"{float(v):.6g}" for k, v in losses.items()}}
        if self.fields and set(row) <= set(self.fields):
            with open(self.path, "a", newline="", encoding="utf-8") as handle:
                csv.DictWriter(handle, fieldnames=self.fields).writerow(row)
        else:
            rows = [r for r in self.rows() if r.get("step")] if self.fields else []
            self._rewrite([*rows, row])


def plot_history(csv_path: str | Path, png_path: str | Path, title: str = "") -> Path:
    """Plot every loss column against the step, one panel per stage (the MaeFuse paper's Figure 8 style)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.read_csv(csv_path)
    stages = list(dict.fromkeys(frame["stage"]))
    fig, axes = plt.subplots(1, len(stages), figsize=(4.5 * len(stages), 3.4), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        part = frame[frame["stage"] == stage]
        for column in part.columns.drop(["step", "stage"]):
            values = part[column]
            if values.notna().any():
                ax.plot(part["step"], values, label=column)
        ax.set_title(stage)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_write(png_path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)
    return Path(png_path)
