"""``fusebench run``: fuse a dataset with a method, score every image, write results."""

from __future__ import annotations

import json
import os
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
  fusebench run --method maefuse --dataset llvip.test --batch-size 16 --workers 8
  torchrun --nproc_per_node 4 -m fusebench run --method maefuse --dataset llvip.test --batch-size 16
  fusebench run --method mean --dataset msrs.test --shard 0/2   # and --shard 1/2 elsewhere, same --out
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
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Method option, e.g. path=DIR for folder; `fusebench info METHOD` lists them.")
@click.option("--name", default=None, help="Row label and run folder name (default: the method name).")
@click.option("--metrics", default=None,
              help="Comma-separated metrics, any case or alias (default: the standard suite). A rerun computes "
                   "only the scores not cached yet; the summary holds every metric scored so far.")
@click.option("--profile", default="fusebench", show_default=True,
              help="Metric convention profile: fusebench, cddfuse, tang or vifb.")
@click.option("--compile-metrics", is_flag=True,
              help="torch.compile the metric kernels: 2-3x faster scoring, same numbers, after compiling "
                   "(~2 min the first time on a CPU, ~25 s later from the cache); for large datasets of one "
                   "image size.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Results folder; a run into an existing matching folder resumes.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--download/--no-download", default=True, show_default=True,
              help="Fetch a benchmark missing from the data root from its public source first.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads (default: the cores free now: affinity, CPU quota, other processes).")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Pairs fused at once (pairs of one size are batched together); the results do not change.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="DataLoader processes decoding pairs (default: the cores free now, less one; 0: in-process).")
@click.option("--pipeline/--no-pipeline", default=True, show_default=True,
              help="Decode in workers, score fused images in memory, write PNGs in the background; "
                   "--no-pipeline: the sequential loop (one pair at a time, PNGs read back to be scored).")
@click.option("--shard", default=None, metavar="I/N",
              help="Fuse and score only pairs I, I+N, ... (0 <= I < N); the last shard to finish writes the "
                   "results. Under torchrun each rank takes its shard by itself.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def run(method: str, dataset: str, split: str | None, subset: str | None, data_root: Path | None, device: str,
        weights: str | None, settings: tuple[str, ...], name: str | None, metrics: str | None, profile: str,
        compile_metrics: bool, out: Path, seed: int, download: bool, threads: int | None, batch_size: int,
        workers: int | None, pipeline: bool, shard: str | None, progress: bool) -> None:
    """Fuse every pair of each dataset with each method, save the fused PNGs, and score them.

    Interrupted runs resume: pairs already fused are skipped, scores already computed for the same images
    are reused. Names and options are checked before anything is fused.
    """
    from fusebench.runner import RunConfig
    from fusebench.runner import run as run_benchmark
    from fusebench.threads import configure_threads

    methods, datasets = split_list(method) or [], split_list(dataset) or []
    if not methods:
        raise click.BadParameter("expected a method name (see `fusebench list methods`)", param_hint="--method")
    if not datasets:
        raise click.BadParameter("expected a dataset name or folder", param_hint="--dataset")
    if metrics is not None and not split_list(metrics):
        raise click.BadParameter("expected at least one metric name (see `fusebench list metrics`)",
                                 param_hint="--metrics")
    if name and len(methods) > 1:
        raise click.BadParameter("--name labels a single method", param_hint="--name")
    options = parse_overrides(settings)
    shard_of = _shard(shard)
    if shard_of is not None and not pipeline:
        raise click.BadParameter("sharded runs need the pipeline (drop --no-pipeline)", param_hint="--shard")
    if shard_of is not None and shard_of[1] > 1 and os.environ.get("LOCAL_RANK") is not None \
            and device in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():  # one GPU per local rank
            device = f"cuda:{int(os.environ['LOCAL_RANK']) % torch.cuda.device_count()}"
    configs = [
        RunConfig(
            method=method_name, dataset=dataset_name, name=name, split=split, subset=subset,
            data_root=str(data_root) if data_root else None, method_options=options,
            weights=weights, device=device, metrics=split_list(metrics), profile=profile,
            compile_metrics=compile_metrics, out=str(out), seed=seed, download=download,
        )
        for method_name in methods for dataset_name in datasets
    ]
    _check_all(configs)  # every name and option of every run, before the first one fuses anything
    configure_threads(threads)
    for config in configs:
        try:
            result = run_benchmark(config, progress=progress, batch_size=batch_size, workers=workers,
                                   pipeline=pipeline, shard=shard_of)
        except (KeyError, ValueError, RuntimeError, OSError, TypeError) as exc:
            raise click.ClickException(str(exc)) from exc
        if not result.written:
            click.echo(f"{config.name or config.method} on {config.dataset}: shard {shard_of[0]}/{shard_of[1]} "
                       f"fused {result.fused} pairs, {result.skipped} already done; the last shard to finish "
                       f"writes the results to {result.run_dir}")
            continue
        summary = json.loads(result.summary_path.read_text())
        scored = (f"; scored {result.scored} (pair, metric) values, {result.cached} from the cache"
                  if result.cached else "")
        who = f"shard {shard_of[0]}/{shard_of[1]} (the last to finish) " if shard_of else ""
        click.echo(f"{summary['method']['label']} on {summary['dataset']['key']}: {who}fused {result.fused} pairs, "
                   f"{result.skipped} already done; profile {summary['metrics']['profile']}{scored}")
        for metric in result.metrics:
            value = summary["means"].get(metric)
            arrow = "↑" if summary["metrics"]["higher_is_better"][metric] else "↓"
            shown = "undefined on " + ", ".join(summary["undefined"][metric]) if value is None else f"{value:.4f}"
            click.echo(f"  {metric:>8}{arrow} {shown}")
        others = [m for m in summary["metrics"]["names"] if m not in result.metrics]
        if others:
            click.echo(f"  (the summary also holds earlier runs' {', '.join(others)})")
        click.echo(f"results: {result.summary_path}")


def _shard(value: str | None) -> tuple[int, int] | None:
    """``--shard I/N``, else torchrun's ``RANK``/``WORLD_SIZE`` when there is more than one process."""
    if value is None:
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        return (int(os.environ.get("RANK", "0")), world) if world > 1 else None
    try:
        index, count = (int(v) for v in value.split("/"))
    except ValueError:
        raise click.BadParameter(f"expected I/N such as 0/2, got {value!r}", param_hint="--shard") from None
    if not (count >= 1 and 0 <= index < count):
        raise click.BadParameter(f"expected I/N with 0 <= I < N, got {value!r}", param_hint="--shard")
    return index, count


def _check_all(configs: list) -> None:
    """Method names and options, metric and profile names, datasets: all of them, before anything runs."""
    from fusebench.datasets import load_dataset
    from fusebench.methods.base import METHODS, check_method_options
    from fusebench.runner import resolve_metrics, resolve_profile

    try:
        resolve_profile(configs[0].profile)
        resolve_metrics(configs[0].metrics)
        for method_name in dict.fromkeys(c.method for c in configs):
            entry = METHODS.get(method_name)
            options = dict(configs[0].method_options)
            if configs[0].weights:
                options["weights"] = configs[0].weights
            check_method_options(entry.name, options)
        for c in {c.dataset: c for c in configs}.values():
            load_dataset(c.dataset, split=c.split, subset=c.subset, root=c.data_root, download=c.download)
    except (KeyError, ValueError, TypeError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
