"""The ``fusebench`` command line: a click group whose subcommands live one per module and load lazily.

Heavy imports (torch, pandas) happen inside the commands, so ``fusebench --help`` is instant.
"""

from __future__ import annotations

import importlib
import os

import click

from fusebench import __version__

# OpenMP threads that spin while idle slow torch's many small CPU kernels several-fold on shared machines;
# this must be set before torch is imported, which the commands do lazily.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# command name -> "module:attribute"; each module holds one subcommand.
SUBCOMMANDS: dict[str, str] = {
    "run": "fusebench.cli.run:run",
    "table": "fusebench.cli.table:table",
    "list": "fusebench.cli.ls:ls",
    "info": "fusebench.cli.info:info",
    "datasets": "fusebench.cli.datasets:datasets",
    "train": "fusebench.cli.train:train",
    "pretrain-mae": "fusebench.cli.pretrain_mae:pretrain_mae",
    "figure": "fusebench.cli.figure:figure",
}


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that subcommand is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *SUBCOMMANDS])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in SUBCOMMANDS:
            module, attr = SUBCOMMANDS[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fusebench")
def main() -> None:
    """Run and compare infrared-visible image fusion methods on the standard benchmarks."""
