"""Table-1 layout: marks by direction and image list, row and column selection, the four formats, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from fusebench.cli import main
from fusebench.reports.table import (
    build_table,
    collect_summaries,
    display_name,
    latex_escape,
    to_csv,
    to_html,
    to_latex,
    to_markdown,
)
from fusebench.results import SCHEMA_VERSION


def summary(label: str, key: str, means: dict[str, float], profile: str = "fusebench", ids: str = "h",
            created: str = "", stds: dict[str, float] | None = None) -> dict:
    return {
        "schema": SCHEMA_VERSION, "means": means, "stds": stds or {}, "n_images": 3, "created": created,
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


def test_markdown_bold_underline_missing_and_display_names(summaries: list[dict]) -> None:
    text = to_markdown(build_table(summaries, datasets=["TNO", "msrs"], metrics=["EN", "Nabf"]))
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()[:5]]
    assert rows[0] == ["Method", "TNO EN↑", "TNO Nabf↓", "MSRS EN↑", "MSRS Nabf↓"]
    assert rows[2] == ["a", "6.900", "<u>0.100</u>", "**6.000**", "**0.300**"]
    assert rows[3] == ["b", "**7.100**", "**0.050**", "**6.000**", "**0.300**"]
    assert rows[4] == ["c", "<u>7.000</u>", "0.200", "—", "—"]
    assert "profile `fusebench`" in text and "TNO 3" in text


def test_display_names() -> None:
    assert [display_name(k) for k in ("msrs.test", "llvip.test", "roadscene", "tno.tang42", "msrs.train", "mine")] \
        == ["MSRS", "LLVIP", "RoadScene", "TNO (tang42)", "MSRS (train)", "mine"]


def test_rows_in_the_order_asked_or_run(summaries: list[dict]) -> None:
    assert list(build_table(summaries, methods=["C", "a"], metrics=["EN"]).values.index) == ["c", "a"]
    runs = [summary("max", "tno", {"EN": 1.0}, created="2026-01-01T10:00:02"),
            summary("mean", "tno", {"EN": 2.0}, created="2026-01-01T10:00:01"),
            summary("gff", "tno", {"EN": 3.0}, created="2026-01-01T10:00:03")]
    assert list(build_table(runs, metrics=["EN"]).values.index) == ["mean", "max", "gff"]


def test_unknown_method_is_an_error_with_suggestions(summaries: list[dict]) -> None:
    with pytest.raises(ValueError, match=r"no results for method 'bb' on these datasets. Did you mean: b\?"):
        build_table(summaries, methods=["a", "bb"])
    with pytest.raises(ValueError, match="no results for method 'c'"):  # c has no msrs run
        build_table(summaries, datasets=["msrs"], methods=["a", "c"])


def test_only_methods_and_datasets_with_runs(summaries: list[dict]) -> None:
    table = build_table([*summaries, summary("demo-only", "demo", {"EN": 1.0}),
                         summary("d", "my_folder", {"EN": 2.0})], datasets=["msrs"], metrics=["EN"])
    assert list(table.values.index) == ["a", "b"] and list(table.values.columns) == [("msrs.test", "EN")]
    all_ = build_table([*summaries, summary("demo-only", "demo", {"EN": 1.0}), summary("d", "my_folder", {"EN": 2.0})],
                       metrics=["EN"])
    assert "demo-only" not in all_.values.index and "d" not in all_.values.index  # `all` = the benchmarks
    named = build_table([*summaries, summary("d", "my_folder", {"EN": 2.0})], datasets=["my_folder"], metrics=["EN"])
    assert list(named.values.index) == ["d"]


def test_rows_on_another_image_list_are_not_ranked(summaries: list[dict]) -> None:
    other = summary("d", "tno", {"EN": 9.0, "Nabf": 0.0, "CC": 1.0}, ids="another list")
    table = build_table([*summaries, other], metrics=["EN"])
    assert table.marks()[("tno", "EN")].to_dict() == {"a": 0, "b": 1, "c": 2, "d": 0}  # d is best but unranked
    text = to_markdown(table)
    assert "9.000†" in text and "TNO: d scored on another image list" in text


def test_std_latex_html_csv(summaries: list[dict]) -> None:
    for s in summaries:
        s["stds"] = {"CC": 0.25}
    table = build_table(summaries, datasets=["tno"], methods=["c", "b"], metrics=["CC"], std=True)
    latex = to_latex(table)
    assert r"\usepackage{booktabs}" in latex and r"\toprule" in latex and r"\bottomrule" in latex
    assert r"c & \textbf{0.600 $\pm$ 0.250} \\" in latex and r"b & \underline{0.400 $\pm$ 0.250} \\" in latex
    assert " & TNO \\\\" in latex and r"CC$\uparrow$" in latex
    page = to_html(table)
    assert page.startswith("<!DOCTYPE html>") and "</html>" in page and "0.600 ± 0.250" in page
    assert to_csv(table).splitlines() == ["method,tno/CC,tno/CC/std", "c,0.6,0.25", "b,0.4,0.25"]


def test_latex_escapes_every_special_character() -> None:
    text = r"a_b & c% #1 $x$ {y} ~z ^w \v"
    assert latex_escape(text) == (r"a\_b \& c\% \#1 \$x\$ \{y\} \textasciitilde{}z \textasciicircum{}w "
                                  r"\textbackslash{}v")
    table = build_table([summary("net_v2 & co", "tno", {"EN": 1.0})], metrics=["EN"])
    assert r"net\_v2 \& co & \textbf{1.000} \\" in to_latex(table)
    assert "net_v2 &amp; co" in to_html(table)


def test_errors_are_explicit(summaries: list[dict]) -> None:
    with pytest.raises(ValueError, match="no run computed \\['SSIM'\\]"):
        build_table(summaries, metrics=["SSIM"])
    with pytest.raises(ValueError, match="no results for dataset 'llvip'"):
        build_table(summaries, datasets=["llvip"])
    with pytest.raises(ValueError, match="mix metric profiles"):
        build_table([*summaries, summary("d", "tno", {"EN": 1.0}, profile="tang")])
    with pytest.raises(ValueError, match="no run summaries found"):
        build_table([])
    with pytest.raises(ValueError, match="digits must be >= 0"):
        build_table(summaries, digits=-1)


def _write(runs: Path, s: dict) -> Path:
    path = runs / s["method"]["label"] / s["dataset"]["key"] / "summary_fusebench.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(s))
    return path


def test_damaged_or_foreign_summaries_name_the_file(tmp_path: Path, summaries: list[dict]) -> None:
    for s in summaries:
        _write(tmp_path, s)
    broken = tmp_path / "x" / "tno" / "summary_fusebench.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json")
    with pytest.raises(ValueError, match=f"{broken}: not a readable results file"):
        collect_summaries(tmp_path)
    broken.write_text(json.dumps({"schema": SCHEMA_VERSION, "means": {}}))
    with pytest.raises(ValueError, match=f"{broken}: a fusebench summary without method.label, dataset.key"):
        collect_summaries(tmp_path)


def test_cli_never_overwrites_a_named_file(tmp_path: Path, summaries: list[dict], monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for s in summaries:
        _write(tmp_path / "runs", s)
    (tmp_path / "mypaper.tex").write_text("my own work")
    result = CliRunner().invoke(main, ["table", "--format", "latex", "--output", "mypaper.tex", "--metrics", "EN,CC"])
    assert result.exit_code != 0 and "mypaper.tex exists; pass --force" in result.output
    assert (tmp_path / "mypaper.tex").read_text() == "my own work"
    result = CliRunner().invoke(main, ["table", "--format", "latex", "--output", "mypaper.tex", "--force", "--metrics", "EN"])
    assert result.exit_code == 0 and r"\toprule" in (tmp_path / "mypaper.tex").read_text()
    result = CliRunner().invoke(main, ["table", "--digits", "-1"])
    assert result.exit_code != 0 and "--digits" in result.output
    result = CliRunner().invoke(main, ["table", "--methods", "a,nosuch", "--metrics", "EN"])
    assert result.exit_code != 0 and "no results for method 'nosuch'" in result.output
