"""MaeFuse's guided training (paper Sec. 3.2-3.3, Algorithm 1): two stages per module, module by module.

Stages run in this order, each for its configured number of steps (0 skips it), each with its own AdamW
over an explicit parameter set; everything else is frozen (the encoder always):

===================  =====================  ====================  ===========================================
stage                trains                 output                loss
===================  =====================  ====================  ===========================================
``cfm_align``        CFM                    Phi_D                 Eq. 5 to (Phi_V + Phi_I) / 2
``cfm_fusion``       CFM                    decode(Phi_D)         fusion loss (Eq. 4 or the official one)
``mfm_align``        MFM + FFN + LN         Phi_F                 MSE to the mean
``mfm_fusion``       MFM + FFN + LN         decode(Phi_F)         fusion loss
``direct_fusion``    CFM + MFM + FFN + LN   decode(Phi_F)         fusion loss (``mae-crossattn``: no alignment)
``decoder``          MFM + FFN + LN + dec.  decode(Phi_F)         fusion loss (the official run's open decoder)
===================  =====================  ====================  ===========================================

Two recipes (``recipe=``; a method's own recipe and ``--set`` overrides go on top, see ``docs/maefuse.md``):

- ``paper`` (default of ``maefuse`` and ``maefuse-base``): what the paper and the official ``train.py`` do.
  Whole pairs warped to ``warp_size`` = 640 x 640 (bilinear, no crop, no flip), Eq. 5 as printed
  (``align_loss="mse"``), Eq. 4, AdamW at a fixed 1e-4, batch 32, and each module (CFM, then MFM) trained
  for ``epochs`` epochs of which the first ``align_fraction`` = 20 % align and the rest are fusion-loss
  epochs (Algorithm 1: t < 20 of 100). Positions: the 40 x 40 grid of the warp.
- ``fusebench``: fusebench's additions, measured on ``maefuse-compact`` (``weights/maefuse_compact.md``):
  ``patch_size`` crops with flips whose position tables (encoder, fusion layer, decoder) are shifted by up
  to ``max_pos_offset`` patches per batch, so crops stand for windows of full-size images; the content
  alignment loss (``align_loss="content"``, :func:`~fusebench.methods.maefuse.losses.content_alignment_loss`)
  at ``align_lr``; and that loss kept as an anchor in the fusion stages (``fusion_align_weight``); stages
  counted in steps.

The largest patch grid the batches covered is recorded as ``trained_grid`` in the weights' cfg; inference
tiles (or warps) larger inputs to it (:class:`~fusebench.methods.maefuse.model.MaeFuse`).

The run folder holds ``config.json``, ``checkpoint.pt`` (atomic, resumable mid-stage), ``losses.csv``,
``losses.png`` and the final ``<method>.safetensors`` (fusion layer, plus the decoder if it was trained).

Input pipeline (``pipeline=True``): pairs decoded (and warped or cropped) lazily in DataLoader workers,
batch ``b`` a pure function of (seed, b) whatever the worker count; losses read back only every
``log_every`` steps; fused AdamW and TF32 on CUDA; checkpoints hold the trained weights, the optimiser and
the RNG state, and refer to the frozen backbone by its sha256 (a resume on another backbone is refused).
``feature_cache`` (paper recipe: warped pairs, no augmentation) computes the frozen encoder's features of
each pair once and keeps them in bf16, in memory or on disk. Under ``torchrun`` the trained part runs in
DistributedDataParallel and each rank takes its share of every global batch; rank 0 writes the files.
"""

from __future__ import annotations

import dataclasses
import platform
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

import fusebench
from fusebench.datasets.base import PairDataset
from fusebench.files import write_json
from fusebench.methods.maefuse.losses import alignment_loss, content_alignment_loss, fusion_loss
from fusebench.training import (
    LossHistory,
    LossLog,
    PatchDataset,
    StepBatchSampler,
    WarpDataset,
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

if TYPE_CHECKING:
    from fusebench.methods.maefuse.model import MaeFuse

STAGES = ("cfm_align", "cfm_fusion", "mfm_align", "mfm_fusion", "direct_fusion", "decoder")


@dataclass(frozen=True)
class GuidedConfig:
    """Every setting of a guided-training run; recorded in ``config.json`` and checked on resume.

    Build it with :meth:`from_overrides`, which applies the recipe preset (``RECIPE_PRESETS``); the field
    defaults below are only the base the presets start from.
    """

    #: "paper" or "fusebench": a preset of the settings below (see the module notes and RECIPE_PRESETS)
    recipe: str = "paper"
    #: epochs per module (CFM, then MFM); when set, the four cfm_/mfm_ stage step counts are derived from it
    epochs: int | None = None
    #: share of a module's epochs spent on alignment (Algorithm 1: 20 of 100)
    align_fraction: float = 0.2
    #: warp every whole pair to warp_size x warp_size (the paper) instead of cropping patch_size crops
    warp_size: int | None = None
    #: random flips of the crops (fusebench); the official training has no augmentation
    flip: bool = True
    #: MFM form, "separate" (two attentions summed, the paper/official) or "joint"; None: the variant's own
    mfm: str | None = None
    cfm_align_steps: int = 200
    cfm_fusion_steps: int = 300
    mfm_align_steps: int = 200
    mfm_fusion_steps: int = 300
    direct_fusion_steps: int = 0
    unfreeze_decoder_steps: int = 0
    loss: str = "paper"  # "paper" (Eq. 4) or "official" (Sobel + 2 * Laplacian)
    #: alignment loss: "content" (Eq. 5 with the token offset and the token content weighed equally, see
    #: losses.content_alignment_loss) or "mse" (Eq. 5 as printed)
    align_loss: str = "content"
    alpha: float = 1.0
    lr: float = 1e-4
    align_lr: float | None = None  # learning rate of the alignment stages (None: ``lr``)
    #: weight of the (content) alignment loss added to the fusion loss in the fusion stages (0: paper)
    fusion_align_weight: float = 0.0
    weight_decay: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.95
    batch_size: int = 8
    patch_size: int = 224
    patches_per_image: int = 4
    precision: str = "bf16"
    #: shift the position tables of a training crop by up to this many patches (encoder, fusion layer and
    #: decoder alike, as in the backbone's pre-training), so crops stand for windows of full-size images
    max_pos_offset: int = 40
    #: recompute the decoder's activations in the backward pass (saves memory at ViT-L 640); applies only
    #: where gradients flow: the frozen encoder runs without autograd and is never checkpointed
    grad_checkpointing: bool = False
    checkpoint_every: int = 50
    log_every: int = 5  #: losses are read from the device (a host sync) only every log_every steps
    #: the input pipeline (lazy decoding in DataLoader workers, no per-step sync); false: the pre-pipeline
    #: loop (every pair decoded up front, batches built in the main thread, losses read every step). Both
    #: give the same batches, so the same weights; not part of the run's record
    pipeline: bool = True
    workers: int | None = None  #: DataLoader workers (None: from the usable cores; 0: main process); not recorded
    #: pipeline: keep each pair's 8-bit pixels (or 8-bit warp) in ``<out>/data_cache`` after the first decode,
    #: read back memory-mapped; removed when the run ends; not recorded
    data_cache: bool = True
    #: "memory" or "disk": compute the frozen encoder's features of each warped pair once and keep them in
    #: bf16 (needs warp_size, flip=false and no position shift: the paper recipe); "off": encode every step
    feature_cache: str = "off"
    backbone_weights: str | None = None
    #: a decoder trained for an encoder-only ``backbone_weights`` file (see ``fusebench pretrain-mae``)
    decoder_weights: str | None = None
    init_weights: str | None = None

    @classmethod
    def from_overrides(cls, base: dict[str, Any], overrides: dict[str, Any]) -> GuidedConfig:
        """Defaults < the method's recipe < user overrides; unknown keys raise listing the valid ones."""
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(overrides) - set(valid))
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; valid settings: {', '.join(valid)}")
        recipe = overrides.get("recipe", base.get("recipe", cls.recipe))
        if recipe not in RECIPE_PRESETS:
            raise ValueError(f"recipe must be one of {', '.join(RECIPE_PRESETS)}, got {recipe!r}")
        merged = {**RECIPE_PRESETS[recipe], **base, **overrides}
        given_steps = sorted(k for k in overrides if k in MODULE_STEP_KEYS)
        if merged.get("epochs") is not None and given_steps:
            raise ValueError(
                f"recipe '{recipe}' counts epochs (epochs={merged['epochs']}), but {given_steps} were given: set "
                "epochs=N (each module's epochs, align_fraction of them aligning), or epochs=null to count steps"
            )
        cfg = cls(**merged)
        if cfg.loss not in ("paper", "official"):
            raise ValueError(f"loss must be 'paper' or 'official', got {cfg.loss!r}")
        if cfg.align_loss not in ("content", "mse"):
            raise ValueError(f"align_loss must be 'content' or 'mse', got {cfg.align_loss!r}")
        if cfg.precision not in ("bf16", "fp32"):
            raise ValueError(f"precision must be 'bf16' or 'fp32', got {cfg.precision!r}")
        if min(cfg.stage_steps().values()) < 0 or cfg.total_steps() == 0:
            raise ValueError("stage steps must be >= 0 and at least one stage must have steps")
        if cfg.epochs is not None and cfg.epochs < 1:
            raise ValueError(f"epochs must be >= 1 (or null to count steps), got {cfg.epochs}")
        if not 0.0 <= cfg.align_fraction <= 1.0:
            raise ValueError(f"align_fraction must be in [0, 1], got {cfg.align_fraction}")
        if cfg.warp_size is not None and cfg.warp_size < 16:
            raise ValueError(f"warp_size must be a positive multiple of the patch size, got {cfg.warp_size}")
        if cfg.mfm not in (None, "separate", "joint"):
            raise ValueError(f"mfm must be 'separate' or 'joint', got {cfg.mfm!r}")
        if cfg.feature_cache not in ("off", "memory", "disk"):
            raise ValueError(f"feature_cache must be 'off', 'memory' or 'disk', got {cfg.feature_cache!r}")
        if cfg.feature_cache != "off" and (not cfg.warp_size or cfg.flip):
            raise ValueError("feature_cache needs the same input every epoch: warp_size set and flip=false "
                             "(the paper recipe)")
        return cfg

    def resolved(self, steps_per_epoch: int, modules: tuple[str, ...] = ("cfm", "mfm")) -> GuidedConfig:
        """Step counts for a dataset of ``steps_per_epoch`` batches: from ``epochs`` when set (each module's
        first ``align_fraction`` aligning, the rest fusion-loss steps); modules not in ``modules`` get 0."""
        steps = {k: getattr(self, k) for k in MODULE_STEP_KEYS}
        if self.epochs is not None:
            total = self.epochs * steps_per_epoch
            align = round(self.align_fraction * total)
            for module in ("cfm", "mfm"):
                steps[f"{module}_align_steps"], steps[f"{module}_fusion_steps"] = align, total - align
        for module in {"cfm", "mfm"} - set(modules):
            steps[f"{module}_align_steps"] = steps[f"{module}_fusion_steps"] = 0
        return dataclasses.replace(self, **steps)

    def trained_grid(self, patch: int = 16) -> tuple[int, int]:
        """The patch grid (rows, cols) whose positions this run's batches cover."""
        from fusebench.methods.maefuse.model import trained_grid_of

        return trained_grid_of(asdict(self), patch)

    def stage_steps(self) -> dict[str, int]:
        return {
            "cfm_align": self.cfm_align_steps, "cfm_fusion": self.cfm_fusion_steps,
            "mfm_align": self.mfm_align_steps, "mfm_fusion": self.mfm_fusion_steps,
            "direct_fusion": self.direct_fusion_steps, "decoder": self.unfreeze_decoder_steps,
        }

    def total_steps(self) -> int:
        return sum(self.stage_steps().values())

    def schedule(self) -> list[tuple[str, int, int]]:
        """(stage, first global step, end step) of every stage with steps, in order."""
        out, start = [], 0
        for stage, steps in self.stage_steps().items():
            if steps:
                out.append((stage, start, start + steps))
                start += steps
        return out


MODULE_STEP_KEYS = ("cfm_align_steps", "cfm_fusion_steps", "mfm_align_steps", "mfm_fusion_steps")

#: the two recipes, on top of the dataclass defaults
RECIPE_PRESETS: dict[str, dict[str, Any]] = {
    # the paper (Sec. 3.3, Algorithm 1, Sec. 4.1) and the official train.py (reference 1.7): 640x640 warps of
    # whole pairs, no augmentation, Eq. 5 as printed, Eq. 4, AdamW 1e-4 fixed, batch 32, epochs split 20/80.
    # The epoch count is not published: 80 is the official --epochs default (per stage invocation).
    "paper": {"epochs": 80, "align_fraction": 0.2, "warp_size": 640, "flip": False, "align_loss": "mse",
              "loss": "paper", "lr": 1e-4, "align_lr": None, "fusion_align_weight": 0.0, "batch_size": 32,
              "max_pos_offset": 0},
    # fusebench's additions (weights/maefuse_compact.md): shifted crops, content alignment, anchor, steps
    "fusebench": {"epochs": None, "warp_size": None, "flip": True, "align_loss": "content", "loss": "paper",
                  "align_lr": 1e-3, "fusion_align_weight": 1.0, "patch_size": 224, "max_pos_offset": 40},
}

#: per-method recipes on top of the recipe preset
RECIPES: dict[str, dict[str, Any]] = {
    "maefuse": {},
    "maefuse-base": {},
    # the shipped weights' recipe (weights/maefuse_compact.md)
    "maefuse-compact": {"recipe": "fusebench", "patch_size": 128, "precision": "bf16", "align_lr": 1e-3,
                        "fusion_align_weight": 1.0, "cfm_align_steps": 1200, "cfm_fusion_steps": 300,
                        "mfm_align_steps": 1500, "mfm_fusion_steps": 600},
    # paper Sec. 4.4: no CFM; the MFM trained (aligned, then fusion loss) with the infrared tokens as guide
    "maefuse-irguide": {"recipe": "fusebench", "patch_size": 128, "cfm_align_steps": 0, "cfm_fusion_steps": 0,
                        "mfm_align_steps": 1500, "mfm_fusion_steps": 600},
    "maefuse-test": {"recipe": "fusebench", "cfm_align_steps": 2, "cfm_fusion_steps": 2, "mfm_align_steps": 2,
                     "mfm_fusion_steps": 2, "batch_size": 2, "patch_size": 32, "patches_per_image": 2,
                     "checkpoint_every": 2, "log_every": 1},
    # paper Fig. 1(b): the fusion loss only, no alignment, no anchor
    "mae-crossattn": {"recipe": "fusebench", "cfm_align_steps": 0, "cfm_fusion_steps": 0, "mfm_align_steps": 0,
                      "mfm_fusion_steps": 0, "direct_fusion_steps": 900, "patch_size": 128, "align_lr": None,
                      "fusion_align_weight": 0.0},
}


def stage_parameters(model: MaeFuse, stage: str) -> list[nn.Parameter]:
    """The explicit trainable set of a stage (see the module table)."""
    if model.fusion is None:
        raise ValueError(f"method '{model.name}' has no fusion layer to train")
    fusion = model.fusion
    if stage in ("cfm_align", "cfm_fusion"):
        if fusion.guide != "cfm":
            raise ValueError(f"stage {stage} needs a CFM, but method '{model.name}' guides the MFM with '{fusion.guide}'")
        return fusion.cfm_parameters()
    if stage in ("mfm_align", "mfm_fusion"):
        return fusion.mfm_parameters()
    if stage == "direct_fusion":
        return list(fusion.parameters())
    if stage == "decoder":
        decoder = [p for n, p in model.backbone.named_parameters() if n.startswith("decoder")]
        return fusion.mfm_parameters() + decoder
    raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")


def set_trainable(model: MaeFuse, params: list[nn.Parameter]) -> None:
    """Freeze everything, then unfreeze ``params``: locking is ``requires_grad=False``, not just optimiser scope."""
    model.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)


def pos_offset(cfg: GuidedConfig, seed: int, step: int, patch: int = 16) -> tuple[int, int]:
    """The (rows, cols) position-table shift of batch ``step``: a pure function of (seed, step).

    Without it every crop sits at patch positions 0..P/16-1, and the fusion layer (attention over tokens
    plus the sin-cos table) never sees the positions of a full-size image: a layer aligned on 128-px
    crops decoded TNO images to noise (CC about 0).
    """
    if cfg.warp_size:
        return (0, 0)
    grid = -(-cfg.patch_size // patch)
    span = max(0, cfg.max_pos_offset - grid) + 1
    if span == 1:
        return (0, 0)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return int(torch.randint(span, (1,), generator=gen)), int(torch.randint(span, (1,), generator=gen))


def stage_step(model: MaeFuse, stage: str, ir: Tensor, vi: Tensor, cfg: GuidedConfig,
               offset: tuple[int, int] = (0, 0), features: tuple[Any, ...] | None = None) -> dict[str, Tensor]:
    """Forward one batch for ``stage``; returns ``loss`` and its named terms. ``features``: the frozen
    encoder's ``encode_pair`` output for this batch, when cached."""
    if features is None:
        with torch.no_grad():
            phi_v, phi_i, grid, size = model.encode_pair(ir, vi, offset)
    else:
        phi_v, phi_i, grid, size = features
    cfm_only = stage.startswith("cfm")
    tokens = model.fuse_tokens(phi_v, phi_i, grid, cfm_only=cfm_only, offset=offset)
    if stage.endswith("align"):
        if cfg.align_loss == "content":
            return content_alignment_loss(tokens.float(), phi_v.float(), phi_i.float())
        loss = alignment_loss(tokens.float(), phi_v.float(), phi_i.float())
        return {"loss": loss, "align": loss}
    fused = model.decode_luma(tokens, grid, size, offset)
    losses = fusion_loss(cfg.loss, fused, ir, vi, alpha=cfg.alpha)  # type: ignore[arg-type]
    if cfg.fusion_align_weight:
        anchor = (content_alignment_loss(tokens.float(), phi_v.float(), phi_i.float())["loss"]
                  if cfg.align_loss == "content" else alignment_loss(tokens.float(), phi_v.float(), phi_i.float()))
        losses = {**losses, "loss": losses["loss"] + cfg.fusion_align_weight * anchor, "anchor": anchor}
    return losses


def _batches(data: PatchDataset | WarpDataset, batch_size: int, seed: int, start: int) -> Iterator[tuple[Tensor, ...]]:
    """Endless batches (the pre-pipeline loop, ``pipeline=false``); batch ``b`` is a pure function of
    (seed, b), so a resumed run sees the same data, and the same as :class:`StepBatchSampler`'s."""
    per_epoch = max(1, len(data) // batch_size)
    step = start
    while True:
        epoch, index = divmod(step, per_epoch)
        data.set_epoch(epoch)
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        items = [data[int(i)] for i in order[index * batch_size : (index + 1) * batch_size]]
        yield (torch.stack([it[0] for it in items]), torch.stack([it[1] for it in items]),
               *([torch.tensor([it[2] for it in items])] if len(items[0]) > 2 else []))
        step += 1


def _epoch_seed(seed: int) -> Any:
    return lambda epoch: seed * 100_003 + epoch


def _optimizer(params: list[nn.Parameter], cfg: GuidedConfig, stage: str = "",
               device: torch.device | None = None) -> torch.optim.Optimizer:
    """AdamW with the official grouping: weight decay on matrices, none on biases and norms; fused on CUDA."""
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    lr = cfg.align_lr if stage.endswith("align") and cfg.align_lr is not None else cfg.lr
    return adam(groups, device or torch.device("cpu"), lr=lr, betas=(cfg.beta1, cfg.beta2))


class _Stage(nn.Module):
    """One stage's forward (DDP wraps a module's ``forward``); looks ``stage_step`` up at call time."""

    def __init__(self, model: MaeFuse) -> None:
        super().__init__()
        self.model = model

    def forward(self, stage: str, ir: Tensor, vi: Tensor, cfg: GuidedConfig, offset: tuple[int, int],
                features: tuple[Any, ...] | None) -> dict[str, Tensor]:
        extra = {"features": features} if features is not None else {}
        return stage_step(self.model, stage, ir, vi, cfg, offset, **extra)


class FeatureCache:
    """The frozen encoder's (phi_v, phi_i) of each warped pair, computed once, kept in bf16.

    ``folder`` None: in memory; else one file per pair under ``folder`` (named by the backbone's sha256
    and the warp size, so other weights never read them). Valid only when a pair's input is the same every
    epoch (no flips, no position shift): :class:`GuidedConfig` checks that.
    """

    def __init__(self, folder: Path | None) -> None:
        self.folder, self.memory = folder, {}
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    def _get(self, index: int) -> Tensor | None:
        if self.folder is None:
            return self.memory.get(index)
        path = self.folder / f"{index}.pt"
        return torch.load(path, weights_only=True) if path.is_file() else None

    def _put(self, index: int, value: Tensor) -> None:
        if self.folder is None:
            self.memory[index] = value
            return
        from fusebench.files import atomic_write

        with atomic_write(self.folder / f"{index}.pt", "wb") as handle:
            torch.save(value.clone(), handle)

    def features(self, model: MaeFuse, ir: Tensor, vi: Tensor, indices: list[int]) -> tuple[Any, ...]:
        """``encode_pair``'s output for the batch, from the cache where held (bf16, cast back)."""
        held = [self._get(i) for i in indices]
        missing = [j for j, h in enumerate(held) if h is None]
        if missing:
            with torch.no_grad():
                phi_v, phi_i, _, _ = model.encode_pair(ir[missing], vi[missing])
            for k, j in enumerate(missing):
                held[j] = torch.stack([phi_v[k], phi_i[k]]).to(torch.bfloat16).cpu()
                self._put(indices[j], held[j])
        stacked = torch.stack(held).to(ir.device)  # type: ignore[arg-type]
        dtype = torch.bfloat16 if ir.device.type == "cuda" else torch.float32
        # encode_pair's grid and size for this input (also when every pair was cached: a resumed run)
        p, (h, w) = model.backbone.patch_size, ir.shape[-2:]
        return stacked[:, 0].to(dtype), stacked[:, 1].to(dtype), (-(-h // p), -(-w // p)), (h, w)


def _versions() -> dict[str, str]:
    return {"fusebench": fusebench.__version__, "torch": torch.__version__, "python": platform.python_version()}


#: settings that do not change the weights a run produces, so not part of its record
NOT_RECORDED = ("pipeline", "workers", "data_cache")


def _resume(path: Path, record: dict[str, Any], model: MaeFuse, frozen_sha256: str) -> dict[str, Any] | None:
    """The checkpoint's state if one exists for the same config and frozen weights; else an error."""
    if not path.exists():
        return None
    state = load_checkpoint(path, required=("step", "model", "optimizer", "config"))
    check_frozen(path, state, frozen_sha256)
    if state["config"] != record:
        changed = sorted(k for k in {*record, *state["config"]} if record.get(k) != state["config"].get(k))
        raise ValueError(
            f"{path} was written by a run with different settings (changed: {changed}); "
            "pick another --out folder, or delete that run to start over"
        )
    model.load_state_dict(state["model"], strict=False)
    return state


def train_guided(variant: str, pairs: PairDataset, out_dir: Path, *, device: torch.device,
                 overrides: dict[str, Any], seed: int = 0, progress: bool = True) -> Path:
    """Train ``variant``'s fusion layer on ``pairs`` with the guided schedule; returns the weights file."""
    from tqdm.auto import tqdm

    from fusebench.methods.maefuse.model import create_for_training, default_cfgs

    cfg = GuidedConfig.from_overrides(RECIPES.get(variant, {}), overrides)
    out_dir = Path(out_dir)
    rank, size = D.world()
    main = rank == 0
    setup_device(device)
    lazy, caching = cfg.pipeline, cfg.feature_cache != "off"
    cache_dir = out_dir / "data_cache" if cfg.pipeline and cfg.data_cache else None
    if cfg.warp_size:
        data: PatchDataset | WarpDataset = WarpDataset(pairs, cfg.warp_size, flip=cfg.flip, seed=seed, lazy=lazy,
                                                       with_index=caching, cache_dir=cache_dir)
    else:
        data = PatchDataset(pairs, cfg.patch_size, cfg.patches_per_image, seed=seed, flip=cfg.flip, lazy=lazy,
                            cache_dir=cache_dir)
    guide = default_cfgs[variant]["guide"]
    cfg = dataclasses.replace(cfg, mfm=cfg.mfm or default_cfgs[variant]["mfm"]).resolved(
        max(1, len(data) // cfg.batch_size), modules=("mfm",) if guide == "ir" else ("cfm", "mfm"))
    record = {"method": variant, "seed": seed, "dataset": pairs.key, "n_pairs": len(pairs),
              **{k: v for k, v in asdict(cfg).items() if k not in NOT_RECORDED}}
    seed_everything(seed)
    model: MaeFuse = create_for_training(variant, cfg).to(device)
    if model.fusion is not None:
        model.fusion.mfm_mode = cfg.mfm
    model.cfg.update(mfm=cfg.mfm, recipe=cfg.recipe,
                     trained_grid=list(cfg.trained_grid(model.backbone.patch_size)), random_init=False)
    model.backbone.grad_checkpointing = cfg.grad_checkpointing
    # the checkpoint holds the trained parts; the rest (the frozen backbone) is referred to by its sha256
    parts = ("fusion.", "backbone.decoder") if cfg.unfreeze_decoder_steps else ("fusion.",)
    frozen_sha256 = tensors_sha256({k: v for k, v in model.state_dict().items() if not k.startswith(parts)})
    ckpt_path = out_dir / "checkpoint.pt"
    state = _resume(ckpt_path, record, model, frozen_sha256)
    step = state["step"] if state else 0
    if state:
        set_rng_state(state.get("rng"))
    if main:
        write_json(out_dir / "config.json", {**record, "trained_grid": model.cfg["trained_grid"],
                                             "processes": size, "versions": _versions()})
    history = LossHistory(out_dir / "losses.csv", resume_step=step if state else None) if main else None
    if cfg.pipeline:
        sampler = StepBatchSampler(len(data), cfg.batch_size, _epoch_seed(seed), start=step,
                                   stop=cfg.total_steps(), rank=rank, world=size)
        batches: Iterator[Any] = iter(make_loader(data, sampler, workers=cfg.workers, device=device))
    else:
        if size > 1:
            raise ValueError("pipeline=false (the pre-pipeline loop) runs in one process only")
        batches = _batches(data, cfg.batch_size, seed, start=step)
    cache = None
    if cfg.feature_cache != "off":
        folder = out_dir / "feature_cache" / f"{frozen_sha256[:16]}_{cfg.warp_size}"
        cache = FeatureCache(folder if cfg.feature_cache == "disk" else None)
    elapsed = state.get("elapsed_s", 0.0) if state else 0.0
    started = time.perf_counter()
    bar = tqdm(total=cfg.total_steps(), initial=step, disable=not (progress and main), desc=variant)
    log = LossLog()
    for stage, first, end in cfg.schedule():
        if step >= end:
            continue
        params = stage_parameters(model, stage)
        set_trainable(model, params)
        optimizer = _optimizer(params, cfg, stage, device)
        if state and state.get("stage") == stage and step > first:
            optimizer.load_state_dict(state["optimizer"])
        model.train()
        runner = D.wrap(_Stage(model), device)  # per stage: DDP syncs the parameters trainable now
        while step < end:
            ir, vi, *index = next(batches)
            ir, vi = ir.to(device, non_blocking=True), vi.to(device, non_blocking=True)
            with autocast(device, cfg.precision):
                features = cache.features(model, ir, vi, index[0].tolist()) if cache is not None else None
                losses = runner(stage, ir, vi, cfg, pos_offset(cfg, seed, step, model.backbone.patch_size),
                                features)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            optimizer.step()
            log.keep(losses)
            step += 1
            if not cfg.pipeline or step % cfg.log_every == 0 or step == end:
                values = log.values()  # a host sync: every step in the pre-pipeline loop, else at log steps
                if history is not None and (step % cfg.log_every == 0 or step == end):
                    history.log(step, stage, **values)
                bar.set_postfix(stage=stage, loss=f"{values['loss']:.4g}", refresh=False)
            bar.update(1)
            if main and (step % cfg.checkpoint_every == 0 or step == end):
                spent = elapsed + time.perf_counter() - started
                save_checkpoint(ckpt_path, {
                    "step": step, "stage": stage, "config": record, "elapsed_s": spent,
                    "model": model.trained_state(parts), "frozen_sha256": frozen_sha256,
                    "optimizer": optimizer.state_dict(), "rng": rng_state(),
                })
    bar.close()
    model.eval()
    weights = out_dir / f"{variant}.safetensors"
    if main:
        plot_history(out_dir / "losses.csv", out_dir / "losses.png", title=f"{variant} guided training")
        model.save_weights(weights, parts=parts, meta={"training": record})
    D.barrier()
    if main and cache_dir is not None:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return weights
