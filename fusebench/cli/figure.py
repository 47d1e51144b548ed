"""``fusebench figure``: qualitative grids and per-image metric distributions from run folders."""

from __future__ import annotations

from pathlib import Path

import click

from fusebench.cli.options import data_root_option, split_list

EPILOG = """\b
Examples:
  fusebench figure grid --dataset tno --ids 01,05 --methods mean,max,maefuse-compact
  fusebench figure box --dataset msrs.test --metric Qabf
"""


@click.command(epilog=EPILOG)
@click.argument("kind", type=click.Choice(["grid", "box"]))
@click.option("--dataset", required=True, help="Dataset key as in the results (tno, msrs.test, ...).")
@click.option("--methods", default=None, help="Comma-separated row labels (default: every run on the dataset).")
@click.option("--ids", default=None, help="grid: comma-separated pair ids (default: the first four).")
@click.option("--metric", default="EN", show_default=True, help="box: the metric to plot.")
@click.option("--profile", default="fusebench", show_default=True)
@click.option("--runs", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@data_root_option
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Image file (default: reports/<kind>_<dataset>[_<metric>].png).")
def figure(kind: str, dataset: str, methods: str | None, ids: str | None, metric: str, profile: str, runs: Path,
           data_root: Path | None, output: Path | None) -> None:
    """Draw a comparison grid (KIND=grid) or a per-image box plot of a metric (KIND=box).

    grid reads the source images from where the runs read them (or from --data-root).
    """
    import warnings

    from fusebench.reports.figures import comparison_grid, metric_boxplot

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if kind == "grid":
                path = comparison_grid(runs, dataset, output or Path("reports") / f"grid_{dataset}.png",
                                       ids=split_list(ids), methods=split_list(methods), profile=profile,
                                       data_root=data_root)
            else:
                path = metric_boxplot(runs, dataset, metric,
                                      output or Path("reports") / f"box_{dataset}_{metric}.png",
                                      methods=split_list(methods), profile=profile)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    for warning in caught:
        click.echo(f"note: {warning.message}", err=True)
    click.echo(f"written: {path}")
