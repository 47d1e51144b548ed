"""``fusebench pretrain-mae``: pre-train an MAE (masked) or retrain its decoder alone on image folders."""

from __future__ import annotations

from pathlib import Path

import click

from fusebench.cli.options import device_option, parse_overrides

EPILOG = """\b
Examples:
  fusebench pretrain-mae --data datasets/natural --data datasets/msrs/train --steps 3000 --out runs/mae/c
  fusebench pretrain-mae --data datasets/natural --decoder-only --init runs/mae/compact/mae.safetensors \\
      --steps 1000 --out runs/mae/compact_dec
  fusebench pretrain-mae --arch large --init mae_pretrain_vit_large --decoder-only --crop 640 \\
      --set grad_checkpointing=true --data coco/train2017 --device cuda --out runs/mae/large_dec4
  torchrun --nproc_per_node 8 -m fusebench pretrain-mae --arch large --data coco/train2017 --device cuda \\
      --batch-size 256 --out runs/mae/large      # DDP; --batch-size is the global batch

\b
--init takes an MAE weights name (mae_pretrain_vit_large, mae_visualize_vit_large, maefuse_resume_mae,
timm:vit_large_patch16_224.mae, ...) or a file: MAE's checkpoint-N.pth (pickled args included), the official
files, safetensors. The decoder is taken from it when it has the model's depth; otherwise (encoder-only
files, MAE's 8-block decoder for a 4-block model) the encoder is loaded and a fresh decoder trained, as
MaeFuse made its "resume" MAE with --decoder-only (frozen encoder, whole unmasked crops).
"""


@click.command("pretrain-mae", epilog=EPILOG)
@click.option(
    "--data",
    "data",
    multiple=True,
    type=click.Path(path_type=Path, exists=True),
    help="Folder of images (searched recursively) or a text file of image paths; repeatable.",
)
@click.option(
    "--exclude-list",
    "exclude_lists",
    multiple=True,
    type=click.Path(path_type=Path, exists=True),
    help="CSV with an `id` column: images with these file stems are left out (e.g. test splits).",
)
@click.option("--arch", default=None, help="MAE size: compact (default), test, base, large, huge.")
@click.option(
    "--init",
    default=None,
    help="Weights to start from: an MAE weights name, timm:NAME, or a file (see below).",
)
@click.option(
    "--decoder-only",
    is_flag=True,
    default=None,
    help="Freeze the encoder and train the decoder to reconstruct whole images (no masking), as MaeFuse "
    "made its 'resume' MAE; gives an encoder-only file the decoder fusion needs.",
)
@click.option("--steps", type=int, default=None, help="Optimiser steps.")
@click.option("--batch-size", type=int, default=None)
@click.option("--crop", type=int, default=None, help="Random crop size in pixels (a multiple of the patch).")
@click.option("--lr", type=float, default=None, help="Peak learning rate.")
@click.option(
    "--config",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="JSON file of settings.",
)
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Override one setting.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Run folder; an existing run there is resumed.",
)
@device_option
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--progress/--no-progress", default=True, show_default=True)
def pretrain_mae(
    data: tuple[Path, ...],
    exclude_lists: tuple[Path, ...],
    arch: str | None,
    init: str | None,
    decoder_only: bool | None,
    steps: int | None,
    batch_size: int | None,
    crop: int | None,
    lr: float | None,
    config: Path | None,
    settings: tuple[str, ...],
    out: Path,
    device: str,
    seed: int,
    progress: bool,
) -> None:
    """Pre-train an MAE on images; checkpoints, loss CSV/plot and mae.safetensors go to --out."""
    from fusebench.methods.base import WeightsError
    from fusebench.methods.mae.pretrain import PretrainConfig, pretrain
    from fusebench.threads import configure_threads
    from fusebench.training import CheckpointError, resolve_device
    from fusebench.training.distributed import init_distributed

    configure_threads()
    overrides = parse_overrides(settings, config)
    options = {
        "data": [str(p.resolve()) for p in data] or None,
        "exclude_lists": [str(p.resolve()) for p in exclude_lists] or None,
        "arch": arch,
        "init": init,
        "decoder_only": decoder_only,
        "steps": steps,
        "batch_size": batch_size,
        "crop": crop,
        "lr": lr,
    }
    overrides.update({k: v for k, v in options.items() if v is not None})
    try:
        cfg = PretrainConfig.from_overrides(overrides)
        weights = pretrain(cfg, out, device=init_distributed(resolve_device(device)), seed=seed,
                           progress=progress)
    except (CheckpointError, WeightsError, ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"weights: {weights}")
