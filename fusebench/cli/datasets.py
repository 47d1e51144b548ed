"""``fusebench datasets``: list the benchmarks, verify a copy on disk, download one."""

from __future__ import annotations

from pathlib import Path

import click

from fusebench.cli.options import data_root_option

LIST_EPILOG = """\b
Examples:
  fusebench datasets list
  fusebench datasets list 'm*' --data-root ../shared/datasets
  fusebench datasets list --details
"""

VERIFY_EPILOG = """\b
Examples:
  fusebench datasets verify demo
  fusebench datasets verify msrs --split test --data-root ../shared/datasets
  fusebench datasets verify tno.tang42 --notes
"""

DOWNLOAD_EPILOG = """\b
Examples:
  fusebench datasets download roadscene
  fusebench datasets download msrs --data-root /data/ivif
  fusebench datasets download llvip --archive ~/Downloads/LLVIP.zip
"""


@click.group()
def datasets() -> None:
    """Benchmark datasets: list, verify, download."""


@datasets.command("list", epilog=LIST_EPILOG)
@click.argument("pattern", default="*")
@data_root_option
@click.option(
    "--details", is_flag=True, help="Also print description, licence, citation and download source of each."
)
def list_command(pattern: str, data_root: Path | None, details: bool) -> None:
    """List datasets matching PATTERN (fnmatch), their splits and subsets, and whether they are on disk."""
    from tabulate import tabulate

    from fusebench.datasets import DATASETS, DatasetError, locate
    from fusebench.datasets import data_root as resolve_root

    root = resolve_root(data_root)
    entries = [entry for entry in DATASETS if entry.name in DATASETS.list(pattern)]
    if not entries:
        raise click.ClickException(f"no dataset matches '{pattern}'; known: {', '.join(DATASETS.list())}")
    rows = []
    for entry in entries:
        try:
            here = sum(len(loc.dataset()) for loc in locate(entry.name, root=root, every_split=True))
            status = f"{here} pair{'s' if here != 1 else ''}"
        except DatasetError:
            status = "-"
        meta = entry.meta
        rows.append(
            [
                entry.name,
                ", ".join(meta.get("splits", ())) or "-",
                ", ".join(meta.get("subsets", ())) or "-",
                meta.get("pairs", "?"),
                status,
            ]
        )
    click.echo(tabulate(rows, headers=["name", "splits", "subsets", "official pairs", f"in {root}"]))
    for entry in entries if details else ():
        click.echo(f"\n{entry.name}")
        for key in ("description", "licence", "citation", "homepage", "download"):
            click.echo(f"  {key}: {entry.meta.get(key, '?')}")


@datasets.command(epilog=VERIFY_EPILOG)
@click.argument("name")
@click.option("--split", default=None, help="Official split (default: all of them).")
@click.option("--subset", default=None, help="Named subset, e.g. tang42.")
@data_root_option
@click.option(
    "--notes/--no-notes", default=False, show_default=True, help="Print notes (16-bit, 3-channel IR)."
)
@click.option("--metrics", default=None,
              help="Comma-separated metrics whose minimum image size is checked (default: the standard suite).")
def verify(name: str, split: str | None, subset: str | None, data_root: Path | None, notes: bool,
           metrics: str | None) -> None:
    """Decode every pair of NAME and report every problem (including images too small for a metric);
    exit status 1 if there is any."""
    from fusebench.cli.options import split_list
    from fusebench.datasets import DatasetError
    from fusebench.datasets.verify import verify_dataset

    try:
        reports = verify_dataset(name, split=split, subset=subset, root=data_root, metrics=split_list(metrics))
    except (DatasetError, KeyError) as exc:
        raise click.ClickException(str(exc)) from exc
    problems = 0
    for report in reports:
        problems += len(report.problems)
        for finding in report.problems:
            click.echo(f"problem: {finding}")
        for finding in report.notes if notes else ():
            click.echo(f"note: {finding}")
        status = "ok" if report.ok else f"{len(report.problems)} problem(s)"
        extra = f", {len(report.notes)} note(s)" if report.notes else ""
        click.echo(f"{report.key}: {report.checked} pairs decoded, {status}{extra} ({report.folder})")
    if problems:
        raise click.ClickException(f"{problems} problem(s) found")


@datasets.command(epilog=DOWNLOAD_EPILOG)
@click.argument("name")
@data_root_option
@click.option(
    "--archive",
    "archives",
    multiple=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="An archive you downloaded by hand (repeat for datasets with several).",
)
@click.option(
    "--mirror",
    default=None,
    metavar="URL",
    help="Replace the scheme and host of the upstream URLs, e.g. a local mirror of github.com.",
)
@click.option("--progress/--no-progress", default=True, show_default=True)
def download(
    name: str, data_root: Path | None, archives: tuple[Path, ...], mirror: str | None, progress: bool
) -> None:
    """Download NAME from its public source into <data root>/NAME, or print how to get it."""
    from fusebench.datasets import DatasetError
    from fusebench.datasets.fetch import download_dataset
    from fusebench.download import DownloadError

    try:
        download_dataset(
            name, data_root, archives=archives, mirror=mirror, progress=progress, echo=click.echo
        )
    except (DatasetError, DownloadError) as exc:
        raise click.ClickException(str(exc)) from exc
