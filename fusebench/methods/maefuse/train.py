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

Every batch shifts the position tables (encoder, fusion layer, decoder) by a random offset of up to
``max_pos_offset`` patches, so small crops stand for windows of full-size images. ``align_loss="content"``
(default) weighs the tokens' shared offset and their content equally (see
:func:`~fusebench.methods.maefuse.losses.content_alignment_loss`; ``"mse"`` is Eq. 5 as printed), and
``fusion_align_weight`` > 0 keeps that alignment loss as an anchor in the fusion stages.

The run folder holds ``config.json``, ``checkpoint.pt`` (atomic, resumable mid-stage), ``losses.csv``,
``losses.png`` and the final ``<method>.safetensors`` (fusion layer, plus the decoder if it was trained).
"""

from __future__ import annotations

import dataclasses
import platform
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
    PatchDataset,
    autocast,
    load_checkpoint,
    plot_history,
    save_checkpoint,
    seed_everything,
)

if TYPE_CHECKING:
    from fusebench.methods.maefuse.model import MaeFuse

STAGES = ("cfm_align", "cfm_fusion", "mfm_align", "mfm_fusion", "direct_fusion", "decoder")


@dataclass(frozen=True)
class GuidedConfig:
    """Every setting of a guided-training run; recorded in ``config.json`` and checked on resume."""

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
    grad_checkpointing: bool = True
    checkpoint_every: int = 50
    log_every: int = 5
    backbone_weights: str | None = None
    init_weights: str | None = None

    @classmethod
    def from_overrides(cls, base: dict[str, Any], overrides: dict[str, Any]) -> GuidedConfig:
        """Defaults < the method's recipe < user overrides; unknown keys raise listing the valid ones."""
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(overrides) - set(valid))
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; valid settings: {', '.join(valid)}")
        cfg = cls(**{**base, **overrides})
        if cfg.loss not in ("paper", "official"):
            raise ValueError(f"loss must be 'paper' or 'official', got {cfg.loss!r}")
        if cfg.align_loss not in ("content", "mse"):
            raise ValueError(f"align_loss must be 'content' or 'mse', got {cfg.align_loss!r}")
        if cfg.precision not in ("bf16", "fp32"):
            raise ValueError(f"precision must be 'bf16' or 'fp32', got {cfg.precision!r}")
        if min(cfg.stage_steps().values()) < 0 or cfg.total_steps() == 0:
            raise ValueError("stage steps must be >= 0 and at least one stage must have steps")
        return cfg

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


#: per-method recipes on top of the dataclass defaults
RECIPES: dict[str, dict[str, Any]] = {
    "maefuse": {},
    "maefuse-base": {},
    "maefuse-compact": {"patch_size": 128, "precision": "bf16", "align_lr": 1e-3, "fusion_align_weight": 1.0,
                        "cfm_align_steps": 1200, "cfm_fusion_steps": 300, "mfm_align_steps": 1500,
                        "mfm_fusion_steps": 600},
    "maefuse-test": {"cfm_align_steps": 2, "cfm_fusion_steps": 2, "mfm_align_steps": 2, "mfm_fusion_steps": 2,
                     "batch_size": 2, "patch_size": 32, "patches_per_image": 2, "checkpoint_every": 2,
                     "log_every": 1},
    "mae-crossattn": {"cfm_align_steps": 0, "cfm_fusion_steps": 0, "mfm_align_steps": 0, "mfm_fusion_steps": 0,
                      "direct_fusion_steps": 900, "patch_size": 128},
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
    grid = -(-cfg.patch_size // patch)
    span = max(0, cfg.max_pos_offset - grid) + 1
    if span == 1:
        return (0, 0)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return int(torch.randint(span, (1,), generator=gen)), int(torch.randint(span, (1,), generator=gen))


def stage_step(model: MaeFuse, stage: str, ir: Tensor, vi: Tensor, cfg: GuidedConfig,
               offset: tuple[int, int] = (0, 0)) -> dict[str, Tensor]:
    """Forward one batch for ``stage``; returns ``loss`` and its named terms."""
    with torch.no_grad():
        phi_v, phi_i, grid, size = model.encode_pair(ir, vi, offset)
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


def _batches(data: PatchDataset, batch_size: int, seed: int, start: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless batches; batch ``b`` is a pure function of (seed, b), so a resumed run sees the same data."""
    per_epoch = max(1, len(data) // batch_size)
    step = start
    while True:
        epoch, index = divmod(step, per_epoch)
        data.set_epoch(epoch)
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        items = [data[int(i)] for i in order[index * batch_size : (index + 1) * batch_size]]
        yield torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])
        step += 1


def _optimizer(params: list[nn.Parameter], cfg: GuidedConfig, stage: str = "") -> torch.optim.AdamW:
    """AdamW with the official grouping: weight decay on matrices, none on biases and norms."""
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    lr = cfg.align_lr if stage.endswith("align") and cfg.align_lr is not None else cfg.lr
    return torch.optim.AdamW(groups, lr=lr, betas=(cfg.beta1, cfg.beta2))


def _versions() -> dict[str, str]:
    return {"fusebench": fusebench.__version__, "torch": torch.__version__, "python": platform.python_version()}


def _resume(path: Path, record: dict[str, Any], model: MaeFuse) -> dict[str, Any] | None:
    """The checkpoint's state if one exists for the same config; a different config is an error."""
    if not path.exists():
        return None
    state = load_checkpoint(path, required=("step", "model", "optimizer", "config"))
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

    from fusebench.methods.maefuse.model import create_for_training

    cfg = GuidedConfig.from_overrides(RECIPES.get(variant, {}), overrides)
    out_dir = Path(out_dir)
    record = {"method": variant, "seed": seed, "dataset": pairs.key, "n_pairs": len(pairs), **asdict(cfg)}
    seed_everything(seed)
    model: MaeFuse = create_for_training(variant, cfg).to(device)
    model.backbone.grad_checkpointing = cfg.grad_checkpointing
    ckpt_path = out_dir / "checkpoint.pt"
    state = _resume(ckpt_path, record, model)
    step = state["step"] if state else 0
    write_json(out_dir / "config.json", {**record, "versions": _versions()})
    history = LossHistory(out_dir / "losses.csv", resume_step=step if state else None)
    data = PatchDataset(pairs, cfg.patch_size, cfg.patches_per_image, seed=seed)
    batches = _batches(data, cfg.batch_size, seed, start=step)
    elapsed = state.get("elapsed_s", 0.0) if state else 0.0
    started = time.perf_counter()
    bar = tqdm(total=cfg.total_steps(), initial=step, disable=not progress, desc=variant)
    for stage, first, end in cfg.schedule():
        if step >= end:
            continue
        params = stage_parameters(model, stage)
        set_trainable(model, params)
        optimizer = _optimizer(params, cfg, stage)
        if state and state.get("stage") == stage and step > first:
            optimizer.load_state_dict(state["optimizer"])
        model.train()
        while step < end:
            ir, vi = next(batches)
            with autocast(device, cfg.precision):
                losses = stage_step(model, stage, ir.to(device), vi.to(device), cfg,
                                    pos_offset(cfg, seed, step, model.backbone.patch_size))
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            optimizer.step()
            step += 1
            if step % cfg.log_every == 0 or step == end:
                history.log(step, stage, **{k: v.item() for k, v in losses.items()})
            bar.update(1)
            bar.set_postfix(stage=stage, loss=f"{losses['loss'].item():.4g}")
            if step % cfg.checkpoint_every == 0 or step == end:
                spent = elapsed + time.perf_counter() - started
                save_checkpoint(ckpt_path, {
                    "step": step, "stage": stage, "config": record, "elapsed_s": spent,
                    "model": model.trained_state(("fusion.", "backbone.decoder")),
                    "optimizer": optimizer.state_dict(),
                })
    bar.close()
    model.eval()
    plot_history(out_dir / "losses.csv", out_dir / "losses.png", title=f"{variant} guided training")
    parts = ("fusion.", "backbone.decoder") if cfg.unfreeze_decoder_steps else ("fusion.",)
    weights = out_dir / f"{variant}.safetensors"
    model.save_weights(weights, parts=parts, meta={"training": record})
    return weights
