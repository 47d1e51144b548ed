"""Pre-training the MAE on folders of images: masked (MAE) or the full-image decoder alone (MaeFuse).

Two recipes, one loop:

* masked: encoder + decoder, ``mask_ratio`` 0.75, per-patch pixel MSE on the hidden patches (MAE);
* ``decoder_only``: encoder frozen, no masking, MSE over every patch (how MaeFuse retrained its 4-block
  decoder on natural images).

Any images work (grey or RGB, searched recursively); IR and visible images are simply images here. Each step
takes random crops, so a resumed run sees the same batches (crops are a function of seed and step).
Position tables can be shifted at random (``max_pos_offset``) so small crops cover the positions of full
benchmark images. AdamW with linear warm-up and cosine decay; bf16 autocast on CUDA.

Input pipeline: only the images' sizes are read up front (from their headers); each step's crops are
planned in the main process from (seed, step) and decoded in DataLoader workers (``workers``), so memory
does not grow with the folder and the batches are those of the pre-pipeline loop (``pipeline=false``,
which decodes every image up front). Losses are read back at log steps only. Checkpoints hold the trained
weights, the optimiser and the RNG state; with ``decoder_only`` the frozen encoder is referred to by its
sha256. Fused AdamW and TF32 on CUDA. Under ``torchrun`` the model runs in DistributedDataParallel and
each rank takes its share of every global batch (rank 0 writes the files), crops and masks alike: every rank
draws the mask noise of the whole global batch from (seed, step) and keeps its rows (:func:`mask_noise`), so
both recipes match one process to float tolerance, and a resumed run draws the masks it would have drawn.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fusebench.files import sha256_file, write_json
from fusebench.images import IMAGE_EXTENSIONS, image_size, read_image
from fusebench.methods.mae.backbone import MaskedAutoencoder, build_mae
from fusebench.methods.mae.checkpoints import is_encoder_key, load_mae_file, read_mae_file, save_mae
from fusebench.methods.mae.preprocess import to_mae_input
from fusebench.training import (
    LossHistory,
    adam,
    autocast,
    check_frozen,
    load_checkpoint,
    make_loader,
    plot_history,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
    setup_device,
    tensors_sha256,
)
from fusebench.training import distributed as D


@dataclass
class PretrainConfig:
    """Every setting of a pre-training run; stored in ``config.json`` and compared on resume."""

    data: list[str] = field(
        default_factory=list
    )  # folders (searched recursively) or text files of image paths
    exclude_lists: list[str] = field(
        default_factory=list
    )  # CSV files whose ``id`` column lists stems to skip
    arch: str = "compact"
    init: str | None = None  # weights to start from: MAE weights name or path
    decoder_only: bool = False
    mask_ratio: float = 0.75
    steps: int = 2000
    batch_size: int = 32
    crop: int = 128
    lr: float = 5e-4
    min_lr: float = 1e-5
    warmup_steps: int = 100
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    max_pos_offset: int = 40  # shift position tables by up to this many patches (0: off)
    precision: str = "bf16"
    grad_checkpointing: bool = False
    log_every: int = 10
    checkpoint_every: int = 100
    export: str | None = None  # also write fp16 weights here (+ .json sidecar) at every checkpoint
    pipeline: bool = True  # lazy decoding in DataLoader workers; false: decode every image up front
    workers: int | None = None  # DataLoader workers (None: from the usable cores; 0: main process)

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any]) -> PretrainConfig:
        """Defaults updated by ``overrides``; unknown keys raise ValueError listing the valid ones."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise ValueError(f"unknown pre-training settings {unknown}; valid settings: {', '.join(names)}")
        cfg = cls(**overrides)
        cfg.betas = tuple(cfg.betas)  # type: ignore[assignment]
        cfg.data, cfg.exclude_lists = [str(p) for p in cfg.data], [str(p) for p in cfg.exclude_lists]
        if cfg.decoder_only:
            cfg.mask_ratio = 0.0
        if not cfg.data:
            raise ValueError("no training images: give at least one folder in `data`")
        return cfg


def find_images(sources: Sequence[str | Path], exclude_lists: Sequence[str | Path] = ()) -> list[Path]:
    """Image files under folders (recursive, sorted) or listed in text files, minus excluded stems."""
    excluded: set[str] = set()
    for csv_path in exclude_lists:
        with open(csv_path, newline="", encoding="utf-8") as handle:
            excluded |= {row["id"] for row in csv.DictReader(handle)}
    found: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            found += sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        elif source.is_file():
            found += [Path(line.strip()) for line in source.read_text().splitlines() if line.strip()]
        else:
            raise ValueError(f"{source}: not a folder or a list of images")
    images = [p for p in dict.fromkeys(found) if p.stem not in excluded]
    if not images:
        raise ValueError(f"no images found in {list(map(str, sources))}")
    return images


#: one planned crop: (image index, top, left, horizontal flip)
CropSpec = tuple[int, int, int, bool]

#: settings that do not change the weights a run produces, so not part of its record
NOT_RECORDED = ("pipeline", "workers")


class ImageCrops:
    """Seeded random crops of image files: :meth:`plan` draws them from the images' sizes alone and
    ``crops[spec]`` decodes one (``lazy=True``, in a DataLoader worker); ``lazy=False`` decodes every image
    to uint8 up front (the pre-pipeline behaviour). :meth:`batch` = plan + decode, identical either way."""

    def __init__(self, paths: Sequence[Path], crop: int, lazy: bool = False) -> None:
        self.paths, self.crop, self.lazy = list(paths), crop, lazy
        self.images = [] if lazy else [self._load(p) for p in self.paths]
        self.sizes = ([(int(t.shape[1]), int(t.shape[2])) for t in self.images] if not lazy
                      else [image_size(p)[::-1] for p in self.paths])

    def __len__(self) -> int:
        return len(self.paths)

    def plan(self, size: int, gen: torch.Generator) -> list[CropSpec]:
        """``size`` crops drawn from ``gen``: random image, random position, random horizontal flip."""
        picks = torch.randint(len(self.paths), (size,), generator=gen).tolist()
        specs = []
        for i in picks:
            h, w = self.sizes[i]
            top = int(torch.randint(max(1, h - self.crop + 1), (1,), generator=gen))
            left = int(torch.randint(max(1, w - self.crop + 1), (1,), generator=gen))
            specs.append((i, top, left, bool(torch.rand((), generator=gen) < 0.5)))
        return specs

    def __getitem__(self, spec: CropSpec) -> Tensor:
        """(3, crop, crop) float in [0, 1]."""
        i, top, left, flip = spec
        image = self.images[i] if not self.lazy else self._load(self.paths[i])
        crop = image[:, top : top + self.crop, left : left + self.crop].float() / 255
        pad_h, pad_w = self.crop - crop.shape[1], self.crop - crop.shape[2]
        if pad_h or pad_w:  # image smaller than the crop
            crop = F.pad(crop[None], (0, pad_w, 0, pad_h), mode="replicate")[0]
        crop = crop.expand(3, -1, -1)
        return (crop.flip(-1) if flip else crop).contiguous()

    @staticmethod
    def _load(path: Path) -> Tensor:
        arr = read_image(path)
        if (
            arr.ndim == 3
            and np.array_equal(arr[..., 0], arr[..., 1])
            and np.array_equal(arr[..., 0], arr[..., 2])
        ):
            arr = arr[..., 0]  # grey stored as RGB (LLVIP infrared)
        arr = np.round(arr * 255).astype(np.uint8)
        return torch.from_numpy(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy())

    def batch(self, size: int, gen: torch.Generator) -> Tensor:
        """(size, 3, crop, crop) float in [0, 1]: random image, random crop, random horizontal flip."""
        return torch.stack([self[spec] for spec in self.plan(size, gen)])


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator of step ``step``'s crops and position offset."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def mask_noise(seed: int, step: int, batch_size: int, length: int, rank: int = 0, world: int = 1,
               device: torch.device | str = "cpu") -> Tensor:
    """This rank's rows ``rank::world`` (the rows of its crops) of step ``step``'s mask noise, drawn for the
    whole global batch (``batch_size`` x ``length`` patches) on every rank from a generator of (seed, step):
    ``world`` ranks hide the patches one process hides, and a resumed run needs no RNG state for them. One
    process draws the masks it drew before (``torch.rand`` after ``torch.manual_seed`` of the same number)."""
    gen = torch.Generator(device).manual_seed(seed * 1_000_003 + step)
    return torch.rand(batch_size, length, generator=gen, device=device)[rank::world]


class CropPlans:
    """Batch sampler of this rank's crop specs for steps ``start`` .. ``stop`` - 1 (see :class:`ImageCrops`)."""

    def __init__(self, crops: ImageCrops, batch_size: int, seed: int, start: int, stop: int, rank: int = 0,
                 world: int = 1) -> None:
        if batch_size % world:
            raise ValueError(f"the global batch_size {batch_size} must be a multiple of the {world} processes")
        self.crops, self.batch_size, self.seed = crops, batch_size, seed
        self.start, self.stop, self.rank, self.world = start, stop, rank, world

    def __iter__(self) -> Iterator[list[CropSpec]]:
        for step in range(self.start, self.stop):
            yield self.crops.plan(self.batch_size, step_generator(self.seed, step))[self.rank::self.world]


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warm-up to ``lr`` then cosine decay to ``min_lr`` at ``steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def build_model(cfg: PretrainConfig) -> MaskedAutoencoder:
    """The MAE of ``cfg.arch``, initialised from ``cfg.init``, encoder frozen for ``decoder_only``.

    The decoder comes from ``cfg.init`` when the file has one of the model's depth; otherwise (an
    encoder-only file, or a decoder of another depth, e.g. MAE's 8 blocks for a 4-block model) the decoder
    starts fresh (official MAE init) and trains, and ``model.init_note`` says so; nothing is truncated.
    """
    model = build_mae(cfg.arch, grad_checkpointing=cfg.grad_checkpointing)
    model.init_note = None
    if cfg.init:
        init = read_mae_file(cfg.init)
        depth = len(model.decoder_blocks)
        fits = init.decoder_depth == depth
        load_mae_file(model, init, encoder_only=not fits, method="pretrain-mae")
        if not fits:
            held = f"a {init.decoder_depth}-block decoder" if init.decoder_depth else "no decoder"
            model.init_note = (
                f"{init.source} has {held}: its encoder was loaded and a fresh {depth}-block decoder is "
                f"{'trained on the frozen encoder' if cfg.decoder_only else 'trained with it'}"
            )
    for name, param in model.named_parameters():
        param.requires_grad_(not (cfg.decoder_only and is_encoder_key(name)))
    return model


def _optimizer(model: MaskedAutoencoder, cfg: PretrainConfig,
               device: torch.device | None = None) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]  # biases, norms, mask token: no weight decay (as MAE)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return adam(groups, device or torch.device("cpu"), lr=cfg.lr, betas=cfg.betas)


class _Pretrain(torch.nn.Module):
    """``forward_pretrain`` as a module's forward, for DistributedDataParallel."""

    def __init__(self, model: MaskedAutoencoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, mask_ratio: float, offset: tuple[int, int], noise: Tensor | None) -> Tensor:
        return self.model.forward_pretrain(x, mask_ratio, pos_offset=offset, noise=noise)


def _versions() -> dict[str, str]:
    from fusebench import __version__

    return {"fusebench": __version__, "torch": torch.__version__, "python": platform.python_version()}


def pretrain(
    cfg: PretrainConfig,
    out_dir: str | Path,
    *,
    device: torch.device,
    seed: int = 0,
    progress: bool = True,
    on_checkpoint: Callable[[MaskedAutoencoder, int, float], None] | None = None,
) -> Path:
    """Run (or resume) pre-training in ``out_dir``; returns the fp32 weights ``out_dir/mae.safetensors``.

    ``out_dir`` gets ``config.json``, ``checkpoint.pt`` (atomic, every ``checkpoint_every`` steps),
    ``losses.csv`` and ``losses.png``. A checkpoint whose config differs from ``cfg`` raises ValueError.
    Under torchrun, rank 0 alone writes them.
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    rank, size = D.world()
    main = rank == 0
    setup_device(device)
    config = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_RECORDED}
    record = {"config": config, "seed": seed}
    ckpt_path = out_dir / "checkpoint.pt"
    state = (
        load_checkpoint(ckpt_path, required=("model", "optimizer", "step", "record"))
        if ckpt_path.exists()
        else None
    )
    if state is not None and json.loads(json.dumps(state["record"])) != json.loads(json.dumps(record)):
        raise ValueError(
            f"{out_dir} holds a run with different settings ({state['record']}); "
            "pick another --out folder to start a new run"
        )
    seed_everything(seed)
    images = find_images(cfg.data, cfg.exclude_lists)
    model = build_model(cfg).to(device)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    frozen_sha256 = tensors_sha256({k: v for k, v in model.state_dict().items() if k not in trained})
    if main:
        write_json(
            out_dir / "config.json",
            {**record, "versions": _versions(), "device": str(device), "images": len(images), "processes": size,
             **({"init": model.init_note} if model.init_note else {})},
        )
    if model.init_note and progress and main:
        print(f"pretrain-mae: {model.init_note}", file=sys.stderr)
    data = ImageCrops(images, cfg.crop, lazy=cfg.pipeline)
    optimizer = _optimizer(model, cfg, device)
    step = 0
    if state is not None:
        check_frozen(ckpt_path, state, frozen_sha256)
        model.load_state_dict(state["model"], strict=False)  # the trained parameters (all, or the decoder)
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        set_rng_state(state.get("rng"))
    history = LossHistory(out_dir / "losses.csv", resume_step=step if state is not None else None) if main else None
    stage = "decoder" if cfg.decoder_only else "mae"
    grid = cfg.crop // model.patch_size
    if cfg.pipeline:
        plans = CropPlans(data, cfg.batch_size, seed, step, cfg.steps, rank, size)
        batches: Iterator[Tensor] = iter(make_loader(data, plans, workers=cfg.workers, device=device))  # type: ignore[arg-type]
    elif size > 1:
        raise ValueError("pipeline=false (the pre-pipeline loop) runs in one process only")
    runner = D.wrap(_Pretrain(model), device, find_unused=cfg.decoder_only)  # the mask token: unused unmasked
    started, plotted, window = time.time(), time.time(), []
    bar = tqdm(total=cfg.steps, initial=step, disable=not (progress and main), desc=f"pretrain-mae {stage}")
    model.train()
    while step < cfg.steps:
        gen = step_generator(seed, step)
        if cfg.pipeline:
            data.plan(cfg.batch_size, gen)  # advance gen past the crops (decoded by the loader) to the offset
            crops = next(batches)
        else:
            crops = data.batch(cfg.batch_size, gen)
        x, _ = to_mae_input(crops, model.patch_size)
        span = max(0, cfg.max_pos_offset - grid) + 1
        offset = (
            int(torch.randint(span, (1,), generator=gen)),
            int(torch.randint(span, (1,), generator=gen)),
        )
        patches = x.shape[-2] * x.shape[-1] // model.patch_size**2
        noise = mask_noise(seed, step, cfg.batch_size, patches, rank, size, device) if cfg.mask_ratio else None
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        with autocast(device, cfg.precision):
            loss = runner(x.to(device, non_blocking=True), cfg.mask_ratio, offset, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        window.append(loss.detach())
        bar.update(1)
        if not cfg.pipeline:
            bar.set_postfix(loss=f"{window[-1].item():.4f}")  # the pre-pipeline loop: a host sync per step
        if step % cfg.log_every == 0 or step == cfg.steps:
            # the mean over the window: one host sync per log_every steps (the global batch's under DDP)
            mean = D.batch_mean(torch.stack(window).float().mean()).item()
            if history is not None:
                history.log(step, stage, loss=mean, lr=lr_at(step - 1, cfg))
            bar.set_postfix(loss=f"{mean:.4f}")
            window = []
        if main and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
            save_checkpoint(
                ckpt_path,
                {
                    "model": {k: v for k, v in model.state_dict().items() if k in trained},
                    "frozen_sha256": frozen_sha256,
                    "optimizer": optimizer.state_dict(),
                    "step": step,
                    "record": record,
                    "rng": rng_state(),
                },
            )
            if step == cfg.steps or time.time() - plotted > 60:  # a plot costs seconds: at most once a minute
                plot_history(
                    out_dir / "losses.csv", out_dir / "losses.png", title=f"pretrain-mae {cfg.arch} {stage}"
                )
                plotted = time.time()
            if cfg.export and history is not None:
                last = history.rows()[-1]["loss"]
                export_snapshot(model, cfg, out_dir, step, time.time() - started, float(last))
            if on_checkpoint is not None:
                on_checkpoint(model, step, loss.item())
    bar.close()
    weights = out_dir / "mae.safetensors"
    if main:
        save_mae(model, weights, meta={**record, "steps": step})
    D.barrier()
    return weights


def export_snapshot(
    model: MaskedAutoencoder, cfg: PretrainConfig, out_dir: Path, step: int, seconds: float, loss: float
) -> None:
    """fp16 weights at ``cfg.export`` plus a JSON sidecar with the recipe and the latest logged loss."""
    target = Path(str(cfg.export))
    recipe = {
        "config": dataclasses.asdict(cfg),
        "step": step,
        "final": step == cfg.steps,
        "loss_last_logged": loss,
        "seconds_this_session": round(seconds, 1),
        "versions": _versions(),
        "run_dir": str(out_dir),
    }
    save_mae(model, target, half=True, meta=recipe)
    write_json(target.with_suffix(".json"), {**recipe, "sha256": sha256_file(target)})
