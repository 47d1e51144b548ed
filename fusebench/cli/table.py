"""``fusebench table``: the Table-1 comparison from stored run summaries."""

from __future__ import annotations

from pathlib import Path

import click

from fusebench.cli.options import split_list

EPILOG = """\b
Examples:
  fusebench table --datasets all
  fusebench table --datasets msrs,tno --metrics EN,CC,SCD,Qabf --format latex
  fusebench table --methods mean,max,maefuse-compact --format html --output reports/compare.html
  fusebench table --datasets tno,msrs --metrics EN,SD,Qabf --std --format latex --output table1.tex
"""


@click.command(epilog=EPILOG)
@click.option("--datasets", default="all", show_default=True, help="Comma-separated dataset keys or names, or all.")
@click.option("--methods", default=None,
              help="Comma-separated row labels, in this order (default: every method with results, in the order "
                   "its first run was made).")
@click.option("--metrics", default="EN,CC,SCD", show_default=True, help="Comma-separated metrics.")
@click.option("--profile", default="fusebench", show_default=True, help="Metric profile of the results to use.")
@click.option("--format", "fmt", type=click.Choice(["md", "latex", "html", "csv"]), default="md", show_default=True)
@click.option("--digits", type=click.IntRange(0, 12), default=3, show_default=True,
              help="Printed decimals (marks use them too).")
@click.option("--std", is_flag=True, help="Print mean ± std over images.")
@click.option("--runs", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Folder that `fusebench run --out` wrote to.")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="File to write (default: reports/table_<profile>.<ext>, replaced on every call).")
@click.option("--force", is_flag=True, help="Replace --output if it exists.")
@click.option("--allow-random", is_flag=True,
              help="Include runs made with random weights (--set random_init=true), labelled '(random weights)'.")
def table(datasets: str, methods: str | None, metrics: str, profile: str, fmt: str, digits: int, std: bool,
          runs: Path, output: Path | None, force: bool, allow_random: bool) -> None:
    """Print a methods x (datasets x metrics) table with best/second marked, and save it under reports/."""
    from fusebench.files import atomic_write
    from fusebench.reports.table import EXTENSIONS, RENDERERS, build_table, collect_summaries

    if output is not None and output.exists() and not force:
        raise click.ClickException(f"{output} exists; pass --force to replace it, or choose another --output")
    try:
        result = build_table(collect_summaries(runs, profile), datasets=split_list(datasets),
                             methods=split_list(methods), metrics=split_list(metrics) or [], digits=digits,
                             allow_random=allow_random, std=std)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    text = RENDERERS[fmt](result)
    output = output or Path("reports") / f"table_{profile}.{EXTENSIONS[fmt]}"
    with atomic_write(output, "w") as handle:
        handle.write(text)
    click.echo(text)
    click.echo(f"written: {output}", err=True)
