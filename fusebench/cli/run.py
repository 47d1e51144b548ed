"""``fusebench run``: fuse a dataset with a method, score every image, write results."""

from __future__ import annotations

from pathlib import Path

import click

from fusebench.cli.options import data_root_option, device_option, parse_overrides, split_list

EPILOG = """\b
Examples:
  fusebench run --method mean --dataset demo
  fusebench run --method mean,max,maefuse-compact --dataset tno,roadscene,msrs.test,llvip.test
  FUSEBENCH_DATA=../shared/datasets fusebench run --method maefuse-compact --dataset tno
  fusebench run --method folder --set path=results/CDDFuse/TNO --name cddfuse --dataset tno
  fusebench run --method max --dataset msrs --split test --metrics EN,SD,Qabf --profile tang
"""


@click.command(epilog=EPILOG)
@click.option("--method", required=True,
              help="Registered method (see `fusebench list methods`); comma-separate several.")
@click.option("--dataset", required=True,
              help="Dataset name, `name.split`, or a folder with ir/ and vi/; comma-separate several.")
@click.option("--split", default=None, help="Official split (train/test) where the dataset has one.")
@click.option("--subset", default=None, help="Named subset, e.g. tang42 for TNO.")
@data_root_option
@device_option
@click.option("--weights", default=None, help="Weights file for a trainable method.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Method option, e.g. path=DIR for folder.")
@click.option("--name", default=None, help="Row label and run folder name (default: the method name).")
@click.option("--metrics", default=None, help="Comma-separated metrics (default: the standard suite).")
@click.option("--profile", default="fusebench", show_default=True,
              help="Metric convention profile: fusebench, cddfuse, tang or vifb.")
@click.option("--compile-metrics", is_flag=True,
              help="torch.compile the metric kernels: 2-3x faster scoring, same numbers, after compiling "
                   "(~2 min the first time on a CPU, ~25 s later from the cache); for large datasets of one "
                   "image size.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Results folder; a run into an existing matching folder resumes.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--progress/--no-progress", default=True, show_default=True)
def run(method: str, dataset: str, split: str | None, subset: str | None, data_root: Path | None, device: str,
        weights: str | None, settings: tuple[str, ...], name: str | None, metrics: str | None, profile: str,
        compile_metrics: bool, out: Path, seed: int, progress: bool) -> None:
    """Fuse every pair of each dataset with each method, save the fused PNGs, and score them.

    Interrupted runs resume: pairs already fused are skipped.
    """
    import json

    from fusebench.runner import RunConfig
    from fusebench.runner import run as run_benchmark

    methods, datasets = split_list(method) or [], split_list(dataset) or []
    if name and len(methods) > 1:
        raise click.BadParameter("--name labels a single method", param_hint="--name")
    for method_name in methods:
        for dataset_name in datasets:
            config = RunConfig(
                method=method_name, dataset=dataset_name, name=name, split=split, subset=subset,
                data_root=str(data_root) if data_root else None, method_options=parse_overrides(settings),
                weights=weights, device=device, metrics=split_list(metrics), profile=profile,
                compile_metrics=compile_metrics, out=str(out), seed=seed,
            )
            try:
                result = run_benchmark(config, progress=progress)
            except (KeyError, ValueError, RuntimeError, OSError, TypeError) as exc:
                raise click.ClickException(str(exc)) from exc
            summary = json.loads(result.summary_path.read_text())
            click.echo(f"{summary['method']['label']} on {summary['dataset']['key']}: fused {result.fused} pairs, "
                       f"{result.skipped} already done; profile {profile}")
            for metric, value in summary["means"].items():
                arrow = "↑" if summary["metrics"]["higher_is_better"][metric] else "↓"
                click.echo(f"  {metric:>8}{arrow} {value:.4f}")
            click.echo(f"results: {result.summary_path}")
