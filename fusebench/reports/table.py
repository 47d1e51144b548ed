"""Table-1 style comparison tables built only from run summaries (never recomputed).

Rows are methods, column groups are datasets x metrics, cells are means over images (optionally ± std).
Best and second-best values are marked by each metric's direction, after rounding to the printed digits (so
the marks agree with what the reader sees; ties share a mark), and only between rows scored on the same
image list: a row scored on other images is shown with a dagger and not ranked. Missing runs stay visibly
missing. The renderers are tabulate (Markdown) and pandas' Styler (LaTeX with booktabs, standalone HTML).
"""

from __future__ import annotations

import difflib
import html
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fusebench.results import Summary, load_summary

# The MaeFuse paper's column order, then the other benchmarks; their names as papers print them.
BENCHMARKS = ("msrs", "llvip", "roadscene", "tno", "m3fd", "vifb")
DISPLAY_NAMES = {"msrs": "MSRS", "llvip": "LLVIP", "roadscene": "RoadScene", "tno": "TNO", "m3fd": "M3FD",
                 "vifb": "VIFB"}
RANDOM_MARK = " (random weights)"
OTHER_IMAGES = "†"  # a cell scored on another image list than the column's other rows: not ranked


@dataclass
class ResultTable:
    """Means (rows: method labels, columns: (dataset key, metric)) and what is needed to mark and caption them."""

    values: pd.DataFrame
    higher_is_better: dict[str, bool]
    profile: str
    digits: int = 3
    notes: list[str] = field(default_factory=list)
    stds: pd.DataFrame | None = None  # shown as "± std" when set
    ranked: pd.DataFrame | None = None  # False where a row was scored on another image list

    def marks(self) -> pd.DataFrame:
        """1 for the best value of each column, 2 for the second best, 0 otherwise (missing, unranked: 0)."""
        marks = pd.DataFrame(0, index=self.values.index, columns=self.values.columns)
        for column in self.values.columns:
            rounded = self.values[column].round(self.digits).dropna()
            if self.ranked is not None:
                rounded = rounded[self.ranked.loc[rounded.index, column]]
            ordered = sorted(set(rounded), reverse=self.higher_is_better[column[1]])
            for rank, value in enumerate(ordered[:2], start=1):
                marks.loc[rounded.index[rounded == value], column] = rank
        return marks

    def cells(self, missing: str) -> pd.DataFrame:
        """The printed text of every cell: mean (± std), dagger for unranked rows, ``missing`` for no run."""

        def text(label: str, column: tuple[str, str]) -> str:
            value = self.values.loc[label, column]
            if math.isnan(value):
                return missing
            out = f"{value:.{self.digits}f}"
            if self.stds is not None and not math.isnan(self.stds.loc[label, column]):
                out += f" ± {self.stds.loc[label, column]:.{self.digits}f}"
            if self.ranked is not None and not self.ranked.loc[label, column]:
                out += OTHER_IMAGES
            return out

        return pd.DataFrame({c: [text(i, c) for i in self.values.index] for c in self.values.columns},
                            index=self.values.index)

    def dataset_names(self) -> list[str]:
        """Column-group titles: TNO, MSRS, ... (split or subset in brackets when not the default test split)."""
        return [display_name(key) for key in dict.fromkeys(d for d, _ in self.values.columns)]


def display_name(key: str) -> str:
    """``msrs.test`` -> ``MSRS``; ``tno.tang42`` -> ``TNO (tang42)``; a folder dataset keeps its key."""
    base, _, rest = key.partition(".")
    if base not in DISPLAY_NAMES:
        return key
    parts = [p for p in rest.split(".") if p and p != "test"]
    return DISPLAY_NAMES[base] + (f" ({', '.join(parts)})" if parts else "")


def collect_summaries(runs_dir: str | Path, profile: str = "fusebench") -> list[Summary]:
    """Every ``<runs_dir>/<name>/<dataset>/summary_<profile>.json``; a damaged one is an error naming it."""
    return [load_summary(p) for p in sorted(Path(runs_dir).glob(f"*/*/summary_{profile}.json"))]


def is_random_weights(summary: Summary) -> bool:
    """A run made with untrained weights (``--set random_init=true``), as its method cfg records."""
    cfg = summary["method"].get("cfg") or {}
    return bool(cfg.get("random_init")) or cfg.get("weights_source") == "random"


def row_label(summary: Summary) -> str:
    """A run's row label; random-weight runs are marked, so they never pass as the trained method."""
    label = summary["method"]["label"]
    return label + RANDOM_MARK if is_random_weights(summary) and "random" not in label else label


def _dataset_sort_key(key: str) -> tuple[int, str]:
    base = key.split(".")[0]
    return (BENCHMARKS.index(base) if base in BENCHMARKS else len(BENCHMARKS), key)


def _select_datasets(available: list[str], wanted: Sequence[str] | None) -> list[str]:
    """``all`` means the benchmarks; the demo set and folder datasets are shown only when named."""
    if not wanted or [w.lower() for w in wanted] == ["all"]:
        chosen = [k for k in available if k.split(".")[0] in BENCHMARKS]
        if not chosen:
            raise ValueError("no results for a benchmark dataset; results exist for: "
                             f"{', '.join(sorted(available))} (name them with --datasets)")
        return sorted(chosen, key=_dataset_sort_key)
    chosen: list[str] = []
    for name in wanted:
        lowered = name.lower()
        matches = [k for k in available if k.lower() == lowered] or [
            k for k in available if k.split(".")[0].lower() == lowered]
        if not matches:
            raise ValueError(f"no results for dataset '{name}'. Results exist for: {', '.join(sorted(available))}")
        chosen += [m for m in sorted(matches, key=_dataset_sort_key) if m not in chosen]
    return chosen


def _select_methods(summaries: Sequence[Summary], wanted: Sequence[str] | None) -> list[str]:
    """Row labels in the order asked (default: the order the runs were made), each one a label with runs."""
    first_run: dict[str, str] = {}
    for s in sorted(summaries, key=lambda s: (s.get("created") or "", row_label(s))):
        first_run.setdefault(row_label(s), s.get("created") or "")
    available = list(first_run)
    if not wanted:
        return available
    by_lower = {label.lower(): label for label in available}
    by_plain = {label[: -len(RANDOM_MARK)].lower(): label for label in available if label.endswith(RANDOM_MARK)}
    chosen: list[str] = []
    for name in wanted:
        label = by_lower.get(name.lower()) or by_plain.get(name.lower())
        if label is None:
            close = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ValueError(f"no results for method '{name}' on these datasets.{hint} "
                             f"Methods with results: {', '.join(available)}")
        if label not in chosen:
            chosen.append(label)
    return chosen


def build_table(
    summaries: Sequence[Summary],
    *,
    datasets: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    metrics: Sequence[str] = ("EN", "CC", "SCD"),
    digits: int = 3,
    allow_random: bool = False,
    std: bool = False,
) -> ResultTable:
    """Arrange run summaries into a :class:`ResultTable`.

    Args:
        summaries: run summaries of one metric profile.
        datasets: dataset keys or names (case-insensitive); default or ``["all"]``: every benchmark with
            results (the demo set and folders only when named).
        methods: row labels in the wanted order (case-insensitive); default: every method with results on
            the chosen datasets, in the order its first run was made.
        metrics: columns per dataset.
        digits: printed decimals; marks compare the rounded values.
        allow_random: show runs with random weights, labelled ``<label> (random weights)``; by default they
            are left out and named in a note.
        std: print ``mean ± std`` (population std over images).

    Raises:
        ValueError: no summaries, mixed profiles, unknown datasets, methods or metrics (with suggestions).
    """
    if not summaries:
        raise ValueError("no run summaries found: run `fusebench run` first (or check --runs and --profile)")
    if digits < 0:
        raise ValueError(f"digits must be >= 0. Got {digits}.")
    left_out = sorted({f"{s['method']['label']} on {s['dataset']['key']}" for s in summaries if is_random_weights(s)})
    if not allow_random and left_out:
        summaries = [s for s in summaries if not is_random_weights(s)]
        if not summaries:
            raise ValueError(f"only runs with random weights found ({', '.join(left_out)}); they are not results "
                             "of a trained method. Pass --allow-random to tabulate them, marked as such")
    profiles = {s["metrics"]["profile"] for s in summaries}
    if len(profiles) > 1:
        raise ValueError(f"summaries mix metric profiles {sorted(profiles)}; a table compares one profile")
    keys = _select_datasets(sorted({s["dataset"]["key"] for s in summaries}), datasets)
    summaries = [s for s in summaries if s["dataset"]["key"] in keys]
    labels = _select_methods(summaries, methods)
    summaries = [s for s in summaries if row_label(s) in labels]
    directions: dict[str, bool] = {}
    for s in summaries:
        directions.update(s["metrics"]["higher_is_better"])
    if unknown := [m for m in metrics if m not in directions]:
        raise ValueError(f"no run computed {unknown}; metrics in the results: {', '.join(sorted(directions))}")

    columns = pd.MultiIndex.from_product([keys, list(metrics)], names=["dataset", "metric"])
    index = pd.Index(labels, name="method")
    values = pd.DataFrame(math.nan, index=index, columns=columns)
    stds = pd.DataFrame(math.nan, index=index, columns=columns)
    ranked = pd.DataFrame(True, index=index, columns=columns)
    notes: list[str] = []
    n_images: dict[str, int] = {}
    for key in keys:
        runs = [s for s in summaries if s["dataset"]["key"] == key]
        # the image list most rows were scored on is the column's reference; other rows are not ranked
        counts = Counter(s["dataset"]["ids_sha256"] for s in runs)
        reference = max(counts, key=lambda h: (counts[h], max(s["n_images"] for s in runs
                                                               if s["dataset"]["ids_sha256"] == h)))
        n_images[key] = next(s["n_images"] for s in runs if s["dataset"]["ids_sha256"] == reference)
        for s in runs:
            label = row_label(s)
            for metric in metrics:
                values.loc[label, (key, metric)] = s["means"].get(metric, math.nan)
                stds.loc[label, (key, metric)] = (s.get("stds") or {}).get(metric, math.nan)
                ranked.loc[label, (key, metric)] = s["dataset"]["ids_sha256"] == reference
        if len(counts) > 1:
            others = sorted(row_label(s) for s in runs if s["dataset"]["ids_sha256"] != reference)
            notes.append(f"{OTHER_IMAGES} {display_name(key)}: {', '.join(others)} scored on another image list "
                         "than the other rows, so not ranked")
    notes.insert(0, "images: " + ", ".join(f"{display_name(k)} {n}" for k, n in n_images.items()))
    if left_out and not allow_random:
        notes.append(f"left out, random weights (--allow-random to show them): {', '.join(left_out)}")
    return ResultTable(values, {m: directions[m] for m in metrics}, profiles.pop(), digits, notes,
                       stds if std else None, ranked)


def _arrow(table: ResultTable, metric: str) -> str:
    return "↑" if table.higher_is_better[metric] else "↓"


def _caption(table: ResultTable) -> str:
    what = "Mean ± std" if table.stds is not None else "Mean"
    return (f"{what} over images; metric profile `{table.profile}`; best and second best per column marked "
            "among rows scored on the same images; " + "; ".join(table.notes))


def to_markdown(table: ResultTable) -> str:
    """GitHub Markdown (tabulate): best in **bold**, second <u>underlined</u>, missing as —."""
    from tabulate import tabulate

    cells, marks = table.cells("—"), table.marks()
    style = {1: "**{}**", 2: "<u>{}</u>", 0: "{}"}
    names = dict(zip(dict.fromkeys(d for d, _ in table.values.columns), table.dataset_names(), strict=True))
    header = ["Method", *[f"{names[d]} {m}{_arrow(table, m)}" for d, m in table.values.columns]]
    rows = [[label, *[style[int(marks.loc[label, c])].format(cells.loc[label, c]) for c in table.values.columns]]
            for label in table.values.index]
    body = tabulate(rows, headers=header, tablefmt="github", disable_numparse=True,
                    colalign=("left", *["right"] * len(table.values.columns)))
    return body + f"\n\n{_caption(table)}\n"


def _styled(table: ResultTable, missing: str, best: str, second: str) -> pd.io.formats.style.Styler:
    """A Styler over the printed cells with the mark styles applied and the datasets' display names."""
    cells, marks = table.cells(missing), table.marks()
    cells.columns = pd.MultiIndex.from_tuples(
        [(display_name(d), f"{m}{_arrow(table, m)}") for d, m in table.values.columns], names=[None, None])
    cells = cells.rename_axis(index=None)  # a new index: the table's own keeps its name
    styles = marks.map(lambda k: {1: best, 2: second}.get(int(k), ""))
    styles.columns, styles.index = cells.columns, cells.index
    return cells.style.apply(lambda _: styles, axis=None)


_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
                   "^": r"\textasciicircum{}", "_": r"\_", "~": r"\textasciitilde{}", "%": r"\%"}
# applied after escaping: symbols that need math mode or a command
_LATEX_SYMBOLS = {"↑": r"$\uparrow$", "↓": r"$\downarrow$", "±": r"$\pm$", OTHER_IMAGES: r"\textsuperscript{\dag}"}


def latex_escape(text: str) -> str:
    """Escape every LaTeX special character of plain text."""
    return "".join(_LATEX_SPECIALS.get(char, char) for char in text)


def to_latex(table: ResultTable) -> str:
    """A booktabs table (pandas Styler), every label escaped; best in bold, second underlined."""
    styler = _styled(table, "--", "textbf: --rwrap;", "underline: --rwrap;")
    styler = styler.format(latex_escape).format_index(latex_escape, axis=0).format_index(latex_escape, axis=1)
    body = styler.to_latex(hrules=True, multicol_align="c", caption=latex_escape(_caption(table).replace("`", "")),
                           position="t", position_float="centering", environment="table",
                           column_format="l" + "r" * len(table.values.columns))
    for symbol, command in _LATEX_SYMBOLS.items():
        body = body.replace(symbol, command)
    return "% requires \\usepackage{booktabs}\n" + body


def to_html(table: ResultTable) -> str:
    """A standalone HTML page (pandas Styler): best in bold, second underlined, captioned."""
    styler = _styled(table, "—", "font-weight: bold;", "text-decoration: underline;")
    styler = styler.set_caption(html.escape(_caption(table))).set_table_styles([
        {"selector": "", "props": "border-collapse: collapse; font-family: sans-serif;"},
        {"selector": "th, td", "props": "padding: 2px 8px; text-align: right;"},
        {"selector": "caption", "props": "caption-side: bottom; text-align: left; font-size: small;"},
    ])
    styler = styler.format(escape="html").format_index(escape="html", axis=0).format_index(escape="html", axis=1)
    return styler.to_html(doctype_html=True)


def to_csv(table: ResultTable) -> str:
    """Full-precision values; columns named ``dataset/metric`` (plus ``/std``); missing cells empty."""
    flat = table.values.copy()
    flat.columns = [f"{d}/{m}" for d, m in flat.columns]
    if table.stds is not None:
        for d, m in table.values.columns:
            flat[f"{d}/{m}/std"] = table.stds[(d, m)]
    return flat.to_csv(float_format="%.10g")


RENDERERS = {"md": to_markdown, "latex": to_latex, "html": to_html, "csv": to_csv}
EXTENSIONS = {"md": "md", "latex": "tex", "html": "html", "csv": "csv"}
