"""Options and value parsing shared by several subcommands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

data_root_option = click.option(
    "--data-root", type=click.Path(path_type=Path), default=None,
    help="Benchmark images root (default: $FUSEBENCH_DATA, else ./datasets).",
)
device_option = click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
    help="Where to run; auto picks CUDA when available.",
)


def split_list(value: str | None) -> list[str] | None:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``; ``None`` or empty -> ``None`` (the option was not given)."""
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def parse_overrides(items: tuple[str, ...], config: Path | None = None) -> dict[str, Any]:
    """``--config FILE.json`` then ``--set key=value`` (values parsed as JSON when they parse, else strings)."""
    values: dict[str, Any] = {}
    if config is not None:
        try:
            values.update(json.loads(Path(config).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise click.BadParameter(f"{config}: cannot read JSON config ({exc})", param_hint="--config") from exc
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        try:
            values[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            values[key.strip()] = raw
    return values
