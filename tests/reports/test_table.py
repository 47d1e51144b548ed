"""Table-1 layout: best/second marks by each metric's direction, missing cells, and the four formats."""

from __future__ import annotations

import math

import pytest

from fusebench.reports.table import build_table, to_csv, to_html, to_latex, to_markdown
from fusebench.results import SCHEMA_VERSION


def summary(label: str, key: str, means: dict[str, float], profile: str = "fusebench", ids: str = "h") -> dict:
    return {
        "schema": SCHEMA_VERSION, "means": means, "n_images": 3,
        "method": {"name": label, "label": label},
        "dataset": {"key": key, "ids_sha256": ids},
        "metrics": {"profile": profile, "higher_is_better": {"EN": True, "Nabf": False, "CC": True}},
    }


@pytest.fixture()
def summaries() -> list[dict]:
    return [
        summary("a", "tno", {"EN": 6.9, "Nabf": 0.10, "CC": 0.5}),
        summary("b", "tno", {"EN": 7.1, "Nabf": 0.05, "CC": 0.4}),
        summary("c", "tno", {"EN": 7.0, "Nabf": 0.20, "CC": 0.6}),
        summary("a", "msrs.test", {"EN": 6.0, "Nabf": 0.3, "CC": 0.7}),
        summary("b", "msrs.test", {"EN": 6.0004, "Nabf": 0.3, "CC": 0.6}),
    ]


def test_marks_follow_direction(summaries: list[dict]) -> None:
    table = build_table(summaries, metrics=["EN", "Nabf"])
    marks = table.marks()
    assert list(table.values.columns.get_level_values(0).unique()) == ["msrs.test", "tno"]  # paper order
    assert marks[("tno", "EN")].to_dict() == {"a": 0, "b": 1, "c": 2}
    assert marks[("tno", "Nabf")].to_dict() == {"a": 2, "b": 1, "c": 0}  # lower is better
    # 6.0 and 6.0004 print alike at 3 digits: they share the best mark; c has no msrs run and no mark.
    assert marks[("msrs.test", "EN")].to_dict() == {"a": 1, "b": 1, "c": 0}
    assert math.isnan(table.values.loc["c", ("msrs.test", "EN")])


def test_markdown_bold_underline_and_missing(summaries: list[dict]) -> None:
    text = to_markdown(build_table(summaries, datasets=["tno", "msrs"], metrics=["EN", "Nabf"]))
    lines = text.splitlines()
    assert lines[0] == "| Method | tno EN↑ | tno Nabf↓ | msrs.test EN↑ | msrs.test Nabf↓ |"
    assert lines[2] == "| a | 6.900 | <u>0.100</u> | **6.000** | **0.300** |"
    assert lines[3] == "| b | **7.100** | **0.050** | **6.000** | **0.300** |"
    assert lines[4] == "| c | <u>7.000</u> | 0.200 | — | — |"
    assert "profile `fusebench`" in text and "tno 3" in text


def test_latex_html_csv(summaries: list[dict]) -> None:
    table = build_table(summaries, datasets=["tno"], methods=["c", "b"], metrics=["CC"])
    latex = to_latex(table)
    assert r"c & \textcolor{red}{0.600} \\" in latex and r"b & \textcolor{blue}{0.400} \\" in latex
    assert r"\multicolumn{1}{c}{tno}" in latex and r"CC$\uparrow$" in latex
    html_text = to_html(table)
    assert '<tr><th>c</th><td style="color:#d00000;font-weight:bold">0.600</td></tr>' in html_text
    assert to_csv(table).splitlines() == ["method,tno/CC", "c,0.6", "b,0.4"]


def test_errors_are_explicit(summaries: list[dict]) -> None:
    with pytest.raises(ValueError, match="no run computed \\['SSIM'\\]"):
        build_table(summaries, metrics=["SSIM"])
    with pytest.raises(ValueError, match="no results for dataset 'llvip'"):
        build_table(summaries, datasets=["llvip"])
    with pytest.raises(ValueError, match="mix metric profiles"):
        build_table([*summaries, summary("d", "tno", {"EN": 1.0}, profile="tang")])
    with pytest.raises(ValueError, match="no run summaries found"):
        build_table([])
    mixed = build_table([*summaries, summary("d", "tno", {"EN": 1.0, "Nabf": 1, "CC": 0}, ids="other")],
                        metrics=["EN"])
    assert any("different image lists" in n for n in mixed.notes)
