"""Command-line basics: help is instant, list commands describe what is registered."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from fusebench.cli import SUBCOMMANDS, main
from fusebench.metrics import get_metric, list_metrics


def test_help_lists_every_subcommand_without_importing_torch() -> None:
    code = "import sys; from fusebench.cli import main; sys.argv=['fusebench','--help']\n" \
           "try:\n    main()\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for name in SUBCOMMANDS:
        assert name in out
    assert out.strip().endswith("False")


def test_list_methods_and_metrics() -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["list", "methods"])
    assert out.exit_code == 0 and "pixel mean of infrared and visible luminance" in out.output
    out = runner.invoke(main, ["list", "metrics"])
    assert out.exit_code == 0
    lines = {line.split()[0]: line for line in out.output.splitlines()[2:] if line.strip()}
    assert set(lines) == set(list_metrics())
    assert ("↓" in lines["Nabf"]) and not get_metric("Nabf").higher_is_better
    assert "↑" in lines["EN"]
    out = runner.invoke(main, ["list", "profiles"])
    assert out.exit_code == 0 and {"fusebench", "cddfuse", "tang", "vifb"} <= set(out.output.split())


def test_unknown_method_suggests_a_name() -> None:
    out = CliRunner().invoke(main, ["run", "--method", "maen", "--dataset", "demo", "--no-progress"])
    assert out.exit_code != 0 and "Unknown method 'maen'. Did you mean: mean" in out.output
