"""DAE-Fuse training: Phase I (adversarial feature extraction) then Phase II (cross-modality fusion).

Each step updates the two discriminators (real source vs generated image), then the generator
(encoders, fusion, decoder). Phase I reconstructs both sources (Eq. 6-12); Phase II fuses them
(Eq. 13-17). Values the paper leaves open are :class:`DAEFuseTrainConfig` fields; their defaults are
fusebench's choices and are documented in ``docs/daefuse.md``. Batches are a pure function of
(seed, step), so a resumed run continues exactly where the checkpoint left it.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import fusebench
from fusebench.datasets.base import PairDataset
from fusebench.files import write_json
from fusebench.methods.daefuse import losses as L
from fusebench.methods.daefuse.discriminator import Discriminator
from fusebench.methods.daefuse.model import ARCH_KEYS, DAEFuse, default_cfgs
from fusebench.training import (
    LossHistory,
    PatchDataset,
    autocast,
    load_checkpoint,
    plot_history,
    save_checkpoint,
    seed_everything,
)


@dataclass
class DAEFuseTrainConfig:
    """Training settings; ``None`` architecture fields take the method's registered architecture."""

    phase1_steps: int = 2000  #: generator/discriminator steps of Phase I
    phase2_steps: int = 2000  #: steps of Phase II
    batch_size: int = 8
    patch_size: int = 128  #: square training crops (CDDFuse's size)
    patches_per_image: int = 8  #: random crops per pair and epoch
    lr: float = 2e-4  #: generator Adam lr, cosine-decayed to lr * lr_min_ratio within each phase
    lr_disc: float = 1e-4  #: discriminator Adam lr
    lr_min_ratio: float = 0.1
    betas: tuple[float, float] = (0.5, 0.999)  #: Adam betas (the usual GAN choice)
    grad_clip: float = 1.0  #: max gradient norm per optimiser step
    lambda_adv: float = 0.1  #: lambda of Eq. 6 (Phase I adversarial weight)
    sigma: float = 0.5  #: sigma of Eq. 6 (decomposition vs content weight)
    texture_weight: float = 1.0  #: weight of Eq. 15 in Eq. 13 (paper: 1)
    intensity_weight: float = 1.0  #: weight of Eq. 16 in Eq. 13 (paper: 1)
    adv_weight_phase2: float = 0.1  #: weight of Eq. 14 in Eq. 13 (paper: 1; lowered for short runs)
    disc_width: int = 32
    disc_layers: int = 4
    precision: str = "bf16"  #: bf16 autocast on CUDA; fp32 on CPU
    checkpoint_every: int = 100
    log_every: int = 10
    dim: int | None = None
    heads: int | None = None
    se_blocks: int | None = None
    dhe_blocks: int | None = None
    dle_dim: int | None = None
    dle_depth: int | None = None
    dle_heads: int | None = None
    dle_patch: int | None = None
    dec_blocks: int | None = None
    ffn_expansion: float | None = None

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any], method: str) -> DAEFuseTrainConfig:
        """Defaults <- overrides (unknown keys raise, listing the valid ones); architecture from ``method``."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise ValueError(f"unknown DAE-Fuse training setting(s) {unknown}; valid keys: {', '.join(names)}")
        values = dict(overrides)
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        cfg = cls(**values)
        for key in ARCH_KEYS:
            if getattr(cfg, key) is None and key in default_cfgs[method]:
                setattr(cfg, key, default_cfgs[method][key])
        return cfg

    def arch(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ARCH_KEYS if getattr(self, k) is not None}

    @property
    def total_steps(self) -> int:
        return self.phase1_steps + self.phase2_steps


class Batches:
    """Batch ``step`` = a seeded permutation of the patch dataset, sliced; no state beyond (seed, step)."""

    def __init__(self, patches: PatchDataset, batch_size: int, seed: int) -> None:
        self.patches, self.batch_size, self.seed = patches, batch_size, seed
        self.per_epoch = max(1, len(patches) // batch_size)

    def __call__(self, step: int) -> tuple[Tensor, Tensor]:
        epoch, index = divmod(step, self.per_epoch)
        self.patches.set_epoch(epoch)
        order = torch.randperm(len(self.patches), generator=torch.Generator().manual_seed(self.seed * 7919 + epoch))
        items = [self.patches[int(i)] for i in order[index * self.batch_size:(index + 1) * self.batch_size]]
        return torch.stack([it[0] for it in items]), torch.stack([it[1] for it in items])


def _lr(base: float, step: int, start: int, length: int, min_ratio: float) -> float:
    """Cosine decay from ``base`` to ``base * min_ratio`` over one phase."""
    t = min(1.0, (step - start) / max(1, length))
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


class Trainer:
    """The model, both discriminators and their optimisers, with one step function per phase."""

    def __init__(self, cfg: DAEFuseTrainConfig, device: torch.device, method: str) -> None:
        self.cfg, self.device = cfg, device
        self.model = DAEFuse(**cfg.arch()).to(device)
        self.model.name = method
        self.d_vi = Discriminator(cfg.disc_width, cfg.disc_layers).to(device)  # DM1: alpha = visible
        self.d_ir = Discriminator(cfg.disc_width, cfg.disc_layers).to(device)  # DM2: beta = infrared
        self.opt_g = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=cfg.betas)
        self.opt_d = torch.optim.Adam([*self.d_vi.parameters(), *self.d_ir.parameters()], lr=cfg.lr_disc,
                                      betas=cfg.betas)

    def state(self, step: int, record: dict[str, Any]) -> dict[str, Any]:
        return {"step": step, "record": record, "model": self.model.state_dict(),
                "d_vi": self.d_vi.state_dict(), "d_ir": self.d_ir.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict()}

    def load(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.d_vi.load_state_dict(state["d_vi"])
        self.d_ir.load_state_dict(state["d_ir"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])

    def _set_lr(self, step: int) -> None:
        cfg = self.cfg
        start, length = (0, cfg.phase1_steps) if step < cfg.phase1_steps else (cfg.phase1_steps, cfg.phase2_steps)
        for group in self.opt_g.param_groups:
            group["lr"] = _lr(cfg.lr, step, start, length, cfg.lr_min_ratio)
        for group in self.opt_d.param_groups:
            group["lr"] = _lr(cfg.lr_disc, step, start, length, cfg.lr_min_ratio)

    def _update(self, optimiser: torch.optim.Optimizer, loss: Tensor, modules: list[nn.Module]) -> None:
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for m in modules for p in m.parameters()], self.cfg.grad_clip)
        optimiser.step()

    def _judge(self, disc: Discriminator, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
        """Logits of real and fake in one batch, so BatchNorm sees both (separate batches would erase the
        very statistics that tell them apart)."""
        with autocast(self.device, self.cfg.precision):
            logits = disc(torch.cat([real, fake])).float()
        return logits[: len(real)], logits[len(real):]

    def _disc_step(self, vi: Tensor, ir: Tensor, fake_vi: Tensor, fake_ir: Tensor) -> Tensor:
        loss = (L.discriminator_loss(*self._judge(self.d_vi, vi, fake_vi.detach()))
                + L.discriminator_loss(*self._judge(self.d_ir, ir, fake_ir.detach())))
        self._update(self.opt_d, loss, [self.d_vi, self.d_ir])
        return loss

    def _adv(self, vi: Tensor, ir: Tensor, fake_vi: Tensor, fake_ir: Tensor) -> Tensor:
        return (L.generator_adversarial_loss(self._judge(self.d_vi, vi, fake_vi)[1])
                + L.generator_adversarial_loss(self._judge(self.d_ir, ir, fake_ir)[1]))

    def phase1_step(self, ir: Tensor, vi: Tensor, step: int) -> dict[str, float]:
        """Eq. 6-12: discriminators on sources vs reconstructions, then the autoencoder."""
        cfg = self.cfg
        self._set_lr(step)
        with autocast(self.device, cfg.precision):
            rec_vi, high_vi, low_vi = self.model.reconstruct(vi)
            rec_ir, high_ir, low_ir = self.model.reconstruct(ir)
        rec_vi, rec_ir = rec_vi.float(), rec_ir.float()
        d_loss = self._disc_step(vi, ir, rec_vi, rec_ir)
        adv = self._adv(vi, ir, rec_vi, rec_ir)
        decomp = L.decomposition_loss(high_vi.float(), high_ir.float(), low_vi.float(), low_ir.float())
        content = L.content_loss(vi, rec_vi) + L.content_loss(ir, rec_ir)
        g_loss = cfg.lambda_adv * adv + cfg.sigma * decomp + (1 - cfg.sigma) * content
        self._update(self.opt_g, g_loss, [self.model])
        return {"g_total": g_loss.item(), "g_adv": adv.item(), "decomposition": decomp.item(),
                "content": content.item(), "d_total": d_loss.item()}

    def phase2_step(self, ir: Tensor, vi: Tensor, step: int) -> dict[str, float]:
        """Eq. 13-17: discriminators on each source vs the fused image, then the whole generator."""
        cfg = self.cfg
        self._set_lr(step)
        with autocast(self.device, cfg.precision):
            fused = self.model.fuse_padded(ir, vi)
        fused = fused.float()
        d_loss = self._disc_step(vi, ir, fused, fused)
        adv = self._adv(vi, ir, fused, fused)
        texture = L.texture_loss(fused, vi, ir)
        intensity = L.intensity_loss(fused, vi, ir)
        g_loss = cfg.texture_weight * texture + cfg.intensity_weight * intensity + cfg.adv_weight_phase2 * adv
        self._update(self.opt_g, g_loss, [self.model])
        return {"g_total": g_loss.item(), "g_adv": adv.item(), "texture": texture.item(),
                "intensity": intensity.item(), "d_total": d_loss.item()}


def _record(cfg: DAEFuseTrainConfig, seed: int, pairs: PairDataset, method: str) -> dict[str, Any]:
    """What defines a run: resuming with a different record is refused."""
    return {"method": method, "config": dataclasses.asdict(cfg), "seed": seed, "dataset": pairs.key,
            "pairs": pairs.ids}


def train_daefuse(pairs: PairDataset, out_dir: Path, *, device: torch.device, overrides: dict[str, Any],
                  seed: int = 0, progress: bool = True, method: str = "daefuse") -> Path:
    """Train both phases on ``pairs``; resumes from ``out_dir/checkpoint.pt``; returns the weights file."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    cfg = DAEFuseTrainConfig.from_overrides(overrides, method)
    if cfg.patch_size % cfg.dle_patch:
        raise ValueError(f"patch_size {cfg.patch_size} must be a multiple of dle_patch {cfg.dle_patch}")
    record = _record(cfg, seed, pairs, method)
    ckpt_path, weights_path = out_dir / "checkpoint.pt", out_dir / f"{method}.safetensors"
    seed_everything(seed)
    trainer = Trainer(cfg, device, method)
    step, elapsed = 0, 0.0
    if ckpt_path.exists():
        state = load_checkpoint(ckpt_path, required=("step", "record", "model"))
        if state["record"] != record:
            raise ValueError(f"{out_dir} holds a run with different settings, seed or data than this one; "
                             f"pick another --out (or delete {ckpt_path} to start over)")
        trainer.load(state)
        step, elapsed = state["step"], state.get("elapsed_s", 0.0)
    write_json(out_dir / "config.json", {
        **record, "n_pairs": len(pairs), "device": str(device),
        "versions": {"fusebench": fusebench.__version__, "torch": torch.__version__,
                     "python": platform.python_version()}})
    history = LossHistory(out_dir / "losses.csv", resume_step=step if step else None)
    batches = Batches(PatchDataset(pairs, cfg.patch_size, cfg.patches_per_image, seed), cfg.batch_size, seed)
    trainer.model.train()
    bar = tqdm(total=cfg.total_steps, initial=step, disable=not progress, desc=method, dynamic_ncols=True)
    last: dict[str, float] = {}
    started = time.perf_counter() - elapsed
    while step < cfg.total_steps:
        ir, vi = (t.to(device) for t in batches(step))
        phase1 = step < cfg.phase1_steps
        last = (trainer.phase1_step if phase1 else trainer.phase2_step)(ir, vi, step)
        step += 1
        if step % cfg.log_every == 0 or step == cfg.total_steps:
            history.log(step, "phase1" if phase1 else "phase2", **last)
        if step % cfg.checkpoint_every == 0 or step in (cfg.phase1_steps, cfg.total_steps):
            save_checkpoint(ckpt_path, {**trainer.state(step, record), "elapsed_s": time.perf_counter() - started})
        bar.update(1)
        bar.set_postfix({k: f"{v:.3g}" for k, v in last.items()}, refresh=False)
    bar.close()
    trainer.model.eval()
    trainer.model.save_weights(weights_path)
    if history.rows():
        plot_history(history.path, out_dir / "losses.png", title=f"{method} on {pairs.key}")
    write_json(out_dir / "summary.json", {"steps": step, "wall_s": round(time.perf_counter() - started, 1),
                                          "final_losses": {r["stage"]: r for r in history.rows()},
                                          "weights": str(weights_path)})
    return weights_path
