"""``fusebench train``: train a trainable method on a dataset's training pairs."""

from __future__ import annotations

from pathlib import Path

import click

from fusebench.cli.options import data_root_option, device_option, parse_overrides, split_list

EPILOG = """\b
Examples:
  fusebench train --method daefuse --dataset msrs --split train
  fusebench train --method daefuse --dataset msrs.train,llvip.train,roadscene.didfuse_train180
  fusebench train --method maefuse --dataset msrs --split train --device cuda     # paper recipe, bf16
  fusebench train --method maefuse --dataset msrs --split train --set epochs=20 --set batch_size=16
  fusebench train --method maefuse --dataset msrs --split train --set recipe=fusebench --set patch_size=224
  fusebench train --method maefuse-compact --dataset msrs --split train --set mfm_align_steps=200
  fusebench train --method maefuse-irguide --dataset msrs --split train   # Sec. 4.4: the IR tokens guide the MFM
  fusebench train --method maefuse --dataset msrs --split train --config my_recipe.json --out runs/train/mine
  torchrun --nproc_per_node 4 -m fusebench train --method maefuse --dataset msrs --split train --device cuda
  torchrun --nnodes 2 --node_rank 0 --nproc_per_node 8 --master_addr HOST --master_port 29500 \\
      -m fusebench train --method daefuse --dataset msrs --split train --out /shared/runs/dae

\b
Under torchrun: DistributedDataParallel (NCCL on CUDA, gloo on CPU), batch_size is the global batch,
split across the processes; rank 0 alone writes the run folder (give every node the same --out).

\b
MaeFuse settings (--set KEY=VALUE; docs/maefuse.md): recipe=paper|fusebench, epochs (per module),
align_fraction, warp_size, mfm=separate|joint, backbone_weights, decoder_weights, batch_size, lr, precision.
"""


@click.command(epilog=EPILOG)
@click.option("--method", "method_name", required=True, help="A trainable method (see `fusebench list methods`).")
@click.option("--dataset", required=True,
              help="Dataset name, `name.split`, or a folder with ir/ and vi/; comma-separate several to train on all.")
@click.option("--split", default=None, help="Dataset split, e.g. train.")
@click.option("--subset", default=None, help="Named subset of the dataset.")
@data_root_option
@device_option
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run folder (default: runs/train/<method>/<dataset>). An existing run there is resumed.")
@click.option("--config", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="JSON file of training settings.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Override one training setting.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--progress/--no-progress", default=True, show_default=True)
def train(method_name: str, dataset: str, split: str | None, subset: str | None, data_root: Path | None,
          device: str, out: Path | None, config: Path | None, settings: tuple[str, ...], seed: int,
          progress: bool) -> None:
    """Train METHOD on a dataset; checkpoints, loss CSV and plot go to the run folder."""
    from fusebench.datasets import DatasetError, concat_datasets, load_dataset
    from fusebench.methods import METHODS
    from fusebench.registry import UnknownNameError
    from fusebench.threads import configure_threads
    from fusebench.training import CheckpointError, resolve_device
    from fusebench.training.distributed import init_distributed

    configure_threads()
    overrides = parse_overrides(settings, config)
    try:
        entry = METHODS.get(method_name)
        if not entry.meta.get("trainable"):
            raise click.ClickException(f"method '{method_name}' has nothing to train")
        names = split_list(dataset) or []
        pairs = concat_datasets([load_dataset(n, split=split, subset=subset, root=data_root) for n in names])
        out = out or Path("runs") / "train" / method_name / pairs.key
        run_device = init_distributed(resolve_device(device))
        weights = entry.meta["train"](
            pairs, out, device=run_device, overrides=overrides, seed=seed, progress=progress
        )
    except (UnknownNameError, DatasetError, CheckpointError, ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"weights: {weights}")
