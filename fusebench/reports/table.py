"""Table-1 style comparison tables built only from run summaries (never recomputed).

Rows are methods, column groups are datasets x metrics, cells are means over images. In each column the
best and second-best values are marked by the metric's direction, after rounding to the printed digits
(so the marks agree with what the reader sees; ties share a mark). Missing runs stay visibly missing.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fusebench.results import Summary, load_summary

# The MaeFuse paper's column order, then the other benchmarks.
DATASET_ORDER = ("msrs", "llvip", "roadscene", "tno", "m3fd", "vifb")


@dataclass
class ResultTable:
    """Means (rows: method labels, columns: (dataset key, metric)) plus what is needed to mark and caption them."""

    values: pd.DataFrame
    higher_is_better: dict[str, bool]
    profile: str
    digits: int = 3
    notes: list[str] = field(default_factory=list)

    def marks(self) -> pd.DataFrame:
        """1 for the best value of each column, 2 for the second best, 0 otherwise (missing cells: 0)."""
        marks = pd.DataFrame(0, index=self.values.index, columns=self.values.columns)
        for column in self.values.columns:
            rounded = self.values[column].round(self.digits).dropna()
            ordered = sorted(set(rounded), reverse=self.higher_is_better[column[1]])
            for rank, value in enumerate(ordered[:2], start=1):
                marks.loc[rounded.index[rounded == value], column] = rank
        return marks


def collect_summaries(runs_dir: str | Path, profile: str = "fusebench") -> list[Summary]:
    """Every ``<runs_dir>/<name>/<dataset>/summary_<profile>.json``."""
    return [load_summary(p) for p in sorted(Path(runs_dir).glob(f"*/*/summary_{profile}.json"))]


def _dataset_sort_key(key: str) -> tuple[int, str]:
    base = key.split(".")[0]
    return (DATASET_ORDER.index(base) if base in DATASET_ORDER else len(DATASET_ORDER), key)


def _select_datasets(available: list[str], wanted: Sequence[str] | None) -> list[str]:
    if not wanted or list(wanted) == ["all"]:
        return sorted(available, key=_dataset_sort_key)
    chosen: list[str] = []
    for name in wanted:
        matches = [name] if name in available else [k for k in available if k.split(".")[0] == name]
        if not matches:
            raise ValueError(f"no results for dataset '{name}'. Results exist for: {', '.join(sorted(available))}")
        chosen += [m for m in sorted(matches, key=_dataset_sort_key) if m not in chosen]
    return chosen


def build_table(
    summaries: Sequence[Summary],
    *,
    datasets: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    metrics: Sequence[str] = ("EN", "CC", "SCD"),
    digits: int = 3,
) -> ResultTable:
    """Arrange run summaries into a :class:`ResultTable`; metrics nobody computed raise, missing runs are NaN."""
    if not summaries:
        raise ValueError("no run summaries found: run `fusebench run` first (or check --runs and --profile)")
    profiles = {s["metrics"]["profile"] for s in summaries}
    if len(profiles) > 1:
        raise ValueError(f"summaries mix metric profiles {sorted(profiles)}; a table compares one profile")
    keys = _select_datasets(sorted({s["dataset"]["key"] for s in summaries}), datasets)
    labels = list(methods) if methods else sorted({s["method"]["label"] for s in summaries})
    directions: dict[str, bool] = {}
    for s in summaries:
        directions.update(s["metrics"]["higher_is_better"])
    unknown = [m for m in metrics if m not in directions]
    if unknown:
        raise ValueError(f"no run computed {unknown}; metrics in the results: {', '.join(sorted(directions))}")

    columns = pd.MultiIndex.from_product([keys, list(metrics)], names=["dataset", "metric"])
    values = pd.DataFrame(math.nan, index=pd.Index(labels, name="method"), columns=columns)
    notes = []
    for key in keys:
        runs = [s for s in summaries if s["dataset"]["key"] == key and s["method"]["label"] in labels]
        if len({s["dataset"]["ids_sha256"] for s in runs}) > 1:
            notes.append(f"{key}: methods were scored on different image lists; compare with care")
        for s in runs:
            for metric in metrics:
                values.loc[s["method"]["label"], (key, metric)] = s["means"].get(metric, math.nan)
    n_images = {s["dataset"]["key"]: s["n_images"] for s in summaries if s["dataset"]["key"] in keys}
    notes.insert(0, "images: " + ", ".join(f"{k} {n}" for k, n in sorted(n_images.items(), key=lambda kv:
                                                                              _dataset_sort_key(kv[0]))))
    return ResultTable(values, {m: directions[m] for m in metrics}, profiles.pop(), digits, notes)


def _cells(table: ResultTable, missing: str) -> pd.DataFrame:
    return table.values.map(lambda v: missing if math.isnan(v) else f"{v:.{table.digits}f}")


def _arrow(table: ResultTable, metric: str) -> str:
    return "↑" if table.higher_is_better[metric] else "↓"


def _caption(table: ResultTable) -> str:
    return (f"Mean over images; metric profile `{table.profile}`; best and second best per column marked; "
            + "; ".join(table.notes))


def to_markdown(table: ResultTable) -> str:
    """GitHub Markdown: best in **bold**, second <u>underlined</u>, missing as —."""
    cells, marks = _cells(table, "—"), table.marks()
    style = {1: "**{}**", 2: "<u>{}</u>", 0: "{}"}
    header = ["Method", *[f"{d} {m}{_arrow(table, m)}" for d, m in table.values.columns]]
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * len(table.values.columns) + "|"]
    for label in table.values.index:
        row = [style[int(marks.loc[label, c])].format(cells.loc[label, c]) for c in table.values.columns]
        lines.append("| " + " | ".join([label, *row]) + " |")
    return "\n".join(lines) + f"\n\n{_caption(table)}\n"


def _latex_escape(text: str) -> str:
    for char, repl in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("&", r"\&"), ("%", r"\%"), ("#", r"\#")):
        text = text.replace(char, repl)
    return text


def to_latex(table: ResultTable) -> str:
    """A booktabs table; best in red, second in blue (needs ``\\usepackage{booktabs,xcolor}``)."""
    cells, marks = _cells(table, "--"), table.marks()
    style = {1: r"\textcolor{red}{%s}", 2: r"\textcolor{blue}{%s}", 0: "%s"}
    datasets = list(dict.fromkeys(d for d, _ in table.values.columns))
    per = len(table.values.columns) // len(datasets)
    out = [r"% requires \usepackage{booktabs,xcolor}", r"\begin{table}[t]", r"\centering",
           rf"\caption{{{_latex_escape(_caption(table).replace('`', ''))}}}",
           r"\begin{tabular}{l" + "c" * len(table.values.columns) + "}", r"\toprule"]
    out.append("Method & " + " & ".join(rf"\multicolumn{{{per}}}{{c}}{{{_latex_escape(d)}}}" for d in datasets)
               + r" \\")
    out.append("".join(rf"\cmidrule(lr){{{2 + i * per}-{1 + (i + 1) * per}}}" for i in range(len(datasets))))
    arrows = {True: r"$\uparrow$", False: r"$\downarrow$"}
    out.append(" & " + " & ".join(f"{_latex_escape(m)}{arrows[table.higher_is_better[m]]}"
                                   for _, m in table.values.columns) + r" \\")
    out.append(r"\midrule")
    for label in table.values.index:
        row = [style[int(marks.loc[label, c])] % cells.loc[label, c] for c in table.values.columns]
        out.append(" & ".join([_latex_escape(label), *row]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


def to_html(table: ResultTable) -> str:
    """A standalone HTML table; best in red, second in blue, both bold."""
    cells, marks = _cells(table, "—"), table.marks()
    style = {1: ' style="color:#d00000;font-weight:bold"', 2: ' style="color:#0040d0;font-weight:bold"', 0: ""}
    datasets = list(dict.fromkeys(d for d, _ in table.values.columns))
    per = len(table.values.columns) // len(datasets)
    rows = ['<table class="fusebench">', f"<caption>{html.escape(_caption(table))}</caption>",
            '<thead><tr><th rowspan="2">Method</th>'
            + "".join(f'<th colspan="{per}">{html.escape(d)}</th>' for d in datasets) + "</tr>",
            "<tr>" + "".join(f"<th>{html.escape(m)}{_arrow(table, m)}</th>" for _, m in table.values.columns)
            + "</tr></thead>", "<tbody>"]
    for label in table.values.index:
        tds = "".join(f"<td{style[int(marks.loc[label, c])]}>{cells.loc[label, c]}</td>" for c in table.values.columns)
        rows.append(f"<tr><th>{html.escape(label)}</th>{tds}</tr>")
    rows += ["</tbody>", "</table>"]
    return "\n".join(rows) + "\n"


def to_csv(table: ResultTable) -> str:
    """Full-precision values; columns named ``dataset/metric``; missing cells empty."""
    flat = table.values.copy()
    flat.columns = [f"{d}/{m}" for d, m in flat.columns]
    return flat.to_csv(float_format="%.10g")


RENDERERS = {"md": to_markdown, "latex": to_latex, "html": to_html, "csv": to_csv}
EXTENSIONS = {"md": "md", "latex": "tex", "html": "html", "csv": "csv"}
