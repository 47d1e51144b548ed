"""``fusebench list``: registered methods, metrics and datasets, with what each one is."""

from __future__ import annotations

import click

EPILOG = """\b
Examples:
  fusebench list methods
  fusebench list metrics
  fusebench list methods 'mae*'
  fusebench list methods --options
"""


@click.command(name="list", epilog=EPILOG)
@click.argument("kind", type=click.Choice(["methods", "metrics", "datasets", "profiles"]))
@click.argument("pattern", default="*")
@click.option("--options", "show_options", is_flag=True,
              help="methods: also list each method's options (fusebench run --set NAME=VALUE).")
def ls(kind: str, pattern: str, show_options: bool) -> None:
    """List registered KIND (methods, metrics, datasets, profiles), filtered by an fnmatch PATTERN."""
    from tabulate import tabulate

    if kind == "methods":
        from fusebench.methods import METHODS
        from fusebench.methods.base import method_options

        rows = [(e.name, "yes" if e.meta.get("trainable") else "", _weights_column(e.meta),
                 e.meta.get("description", ""))
                + ((_options_column(method_options(e.name)),) if show_options else ())
                for e in METHODS if e.name in METHODS.list(pattern)]
        headers = ["method", "trainable", "official weights (licence)", "description"]
        headers += ["options (type=default)"] if show_options else []
    elif kind == "metrics":
        from fusebench.metrics import get_metric, list_metrics

        rows = []
        for name in list_metrics(pattern):
            spec = get_metric(name)
            rows.append((name, "↑" if spec.higher_is_better else "↓", "yes" if spec.needs_sources else "",
                         spec.description))
        headers = ["metric", "better", "needs sources", "description"]
    elif kind == "profiles":
        from fusebench.metrics import list_profiles, profile_info

        rows = [(p, profile_info(p).get("description", "")) for p in list_profiles()]
        headers = ["profile", "description"]
    else:
        from fusebench.datasets import DATASETS

        rows = [(e.name, e.meta.get("description", "")) for e in DATASETS if e.name in DATASETS.list(pattern)]
        headers = ["dataset", "description"]
    click.echo(tabulate(rows, headers=headers, tablefmt="simple"))


def _weights_column(meta) -> str:
    """'download (licence)' for methods whose official weights are fetched from their authors on first use."""
    cfg = meta.get("pretrained")
    if cfg is None or not cfg.needs_download:
        return ""
    return f"download ({cfg.license})"


def _options_column(spec) -> str:
    """'levels:int=4, ...'; '...' when further keywords are passed on unchecked."""
    parts = [f"{o.name}:{o.kind or 'any'}" + ("" if o.required else f"={o.default!r}") for o in spec.options]
    return ", ".join(parts + (["..."] if spec.open else [])) or "-"
