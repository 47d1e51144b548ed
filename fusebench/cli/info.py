"""``fusebench info METHOD``: what a method is and every option it takes (for ``fusebench run --set``)."""

from __future__ import annotations

import click

EPILOG = """\b
Examples:
  fusebench info laplacian
  fusebench info folder
"""


@click.command(epilog=EPILOG)
@click.argument("method")
def info(method: str) -> None:
    """Describe METHOD (any case) and list its options: name, type, default."""
    from tabulate import tabulate

    from fusebench.methods.base import METHODS, method_options

    try:
        entry = METHODS.get(method)
    except KeyError as exc:
        raise click.ClickException(str(exc)) from exc
    spec = method_options(entry.name)
    click.echo(f"{entry.name}: {entry.meta.get('description', '')}")
    for key in ("paper", "license"):
        if entry.meta.get(key):
            click.echo(f"  {key}: {entry.meta[key]}")
    click.echo(f"  trainable: {'yes' if entry.meta.get('trainable') else 'no'}")
    if not spec.options:
        click.echo("options: none")
    else:
        rows = [(o.name, o.kind or "any", "(required)" if o.required else repr(o.default)) for o in spec.options]
        click.echo("options (fusebench run --set NAME=VALUE):")
        click.echo(tabulate(rows, headers=["option", "type", "default"], tablefmt="simple"))
    if spec.open:
        click.echo("further keywords are passed on to the model unchecked")
