"""DAE-Fuse training: Phase I (adversarial feature extraction) then Phase II (cross-modality fusion).

Each step updates the two discriminators (real source vs generated image), then the generator
(encoders, fusion, decoder). Phase I reconstructs both sources (Eq. 6-12); Phase II fuses them
(Eq. 13-17). Values the paper leaves open are :class:`DAEFuseTrainConfig` fields; their defaults are
fusebench's choices and are documented in ``docs/daefuse.md``. Batches are a pure function of
(seed, step), so a resumed run continues exactly where the checkpoint left it.

Input pipeline (``pipeline=True``): crops decoded lazily from the image files in DataLoader workers
(``workers``), losses read back only at log steps, fused Adam and TF32 on CUDA. Under ``torchrun`` the
generator and the discriminators run in DistributedDataParallel, the discriminators' BatchNorm covers the
global batch and each rank takes its share of every batch; rank 0 writes the files.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import shutil
import time
from collections.abc import Callable
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
    LossLog,
    PatchDataset,
    StepBatchSampler,
    adam,
    autocast,
    load_checkpoint,
    make_loader,
    plot_history,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
    setup_device,
)
from fusebench.training import distributed as D


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
    log_every: int = 10  #: losses are read from the device (a host sync) only every log_every steps
    #: the input pipeline (lazy decoding in DataLoader workers, no per-step sync); false: the pre-pipeline
    #: loop (every pair decoded up front, batches built in the main thread, losses read every step).
    #: Both give the same batches, so the same weights; not part of the run's record.
    pipeline: bool = True
    workers: int | None = None  #: DataLoader workers (None: from the usable cores; 0: main process)
    #: pipeline: keep each pair's 8-bit pixels in ``<out>/data_cache`` after the first decode (memory-mapped
    #: crops, no image decode per crop); removed when the run ends; not part of the run's record
    data_cache: bool = True
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
    norm: str | None = None  #: high-frequency encoder norm: "layer" (default) or "batch" (legacy)

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
    """Batch ``step`` = a seeded permutation of the patch dataset, sliced (the pre-pipeline loop's batches;
    :func:`epoch_seed` and the same slicing make :class:`StepBatchSampler` yield the same ones)."""

    def __init__(self, patches: PatchDataset, batch_size: int, seed: int) -> None:
        self.patches, self.batch_size, self.seed = patches, batch_size, seed
        self.per_epoch = max(1, len(patches) // batch_size)

    def __call__(self, step: int) -> tuple[Tensor, Tensor]:
        epoch, index = divmod(step, self.per_epoch)
        self.patches.set_epoch(epoch)
        order = torch.randperm(len(self.patches), generator=torch.Generator().manual_seed(epoch_seed(self.seed)(epoch)))
        items = [self.patches[int(i)] for i in order[index * self.batch_size:(index + 1) * self.batch_size]]
        return torch.stack([it[0] for it in items]), torch.stack([it[1] for it in items])


def epoch_seed(seed: int) -> Callable[[int], int]:
    """The seed of epoch ``e``'s permutation."""
    return lambda epoch: seed * 7919 + epoch


def _lr(base: float, step: int, start: int, length: int, min_ratio: float) -> float:
    """Cosine decay from ``base`` to ``base * min_ratio`` over one phase."""
    t = min(1.0, (step - start) / max(1, length))
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


class _Generator(nn.Module):
    """The generator's forward of one step (DDP wraps a module's ``forward``)."""

    def __init__(self, model: DAEFuse) -> None:
        super().__init__()
        self.model = model

    def forward(self, ir: Tensor, vi: Tensor, phase1: bool) -> tuple[Tensor, ...]:
        if phase1:
            return (*self.model.reconstruct(vi), *self.model.reconstruct(ir))
        return (self.model.fuse_padded(ir, vi),)


class _Discriminators(nn.Module):
    """DM1 on (real visible, fake) and DM2 on (real infrared, fake), each pair in one batch."""

    def __init__(self, d_vi: Discriminator, d_ir: Discriminator) -> None:
        super().__init__()
        self.d_vi, self.d_ir = d_vi, d_ir

    def forward(self, vi: Tensor, fake_vi: Tensor, ir: Tensor, fake_ir: Tensor) -> tuple[Tensor, Tensor]:
        return self.d_vi(torch.cat([vi, fake_vi])), self.d_ir(torch.cat([ir, fake_ir]))


class Trainer:
    """The model, both discriminators and their optimisers, with one step function per phase.

    Step functions return the losses as tensors (reading them is a host sync: done at log steps only).
    """

    def __init__(self, cfg: DAEFuseTrainConfig, device: torch.device, method: str) -> None:
        self.cfg, self.device = cfg, device
        setup_device(device)
        self.model = DAEFuse(**cfg.arch()).to(device)
        self.model.name = method
        self.d_vi = Discriminator(cfg.disc_width, cfg.disc_layers).to(device)  # DM1: alpha = visible
        self.d_ir = Discriminator(cfg.disc_width, cfg.disc_layers).to(device)  # DM2: beta = infrared
        self.opt_g = adam(self.model.parameters(), device, decoupled=False, lr=cfg.lr, betas=cfg.betas)
        self.opt_d = adam([*self.d_vi.parameters(), *self.d_ir.parameters()], device, decoupled=False,
                          lr=cfg.lr_disc, betas=cfg.betas)
        self.generator = D.wrap(_Generator(self.model), device, find_unused=True)  # Phase I leaves fusion out
        self.judges = D.wrap(_Discriminators(self.d_vi, self.d_ir), device, find_unused=False)

    def state(self, step: int, record: dict[str, Any]) -> dict[str, Any]:
        return {"step": step, "record": record, "model": self.model.state_dict(),
                "d_vi": self.d_vi.state_dict(), "d_ir": self.d_ir.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "rng": rng_state(),
                "frozen_sha256": None}  # DAE-Fuse trains every weight: nothing frozen to refer to

    def load(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.d_vi.load_state_dict(state["d_vi"])
        self.d_ir.load_state_dict(state["d_ir"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        set_rng_state(state.get("rng"))

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

    def _judge(self, vi: Tensor, fake_vi: Tensor, ir: Tensor, fake_ir: Tensor) -> tuple[Tensor, Tensor]:
        """Logits of real and fake in one batch per discriminator, so BatchNorm sees both (separate batches
        would erase the very statistics that tell them apart)."""
        with autocast(self.device, self.cfg.precision):
            logits_vi, logits_ir = self.judges(vi, fake_vi, ir, fake_ir)
        return logits_vi.float(), logits_ir.float()

    def _disc_step(self, vi: Tensor, ir: Tensor, fake_vi: Tensor, fake_ir: Tensor) -> Tensor:
        n = len(vi)
        logits_vi, logits_ir = self._judge(vi, fake_vi.detach(), ir, fake_ir.detach())
        loss = (L.discriminator_loss(logits_vi[:n], logits_vi[n:])
                + L.discriminator_loss(logits_ir[:n], logits_ir[n:]))
        self._update(self.opt_d, loss, [self.d_vi, self.d_ir])
        return loss.detach()

    def _adv(self, vi: Tensor, ir: Tensor, fake_vi: Tensor, fake_ir: Tensor) -> Tensor:
        n = len(vi)
        logits_vi, logits_ir = self._judge(vi, fake_vi, ir, fake_ir)
        return L.generator_adversarial_loss(logits_vi[n:]) + L.generator_adversarial_loss(logits_ir[n:])

    def phase1_step(self, ir: Tensor, vi: Tensor, step: int) -> dict[str, Tensor]:
        """Eq. 6-12: discriminators on sources vs reconstructions, then the autoencoder."""
        cfg = self.cfg
        self._set_lr(step)
        with autocast(self.device, cfg.precision):
            rec_vi, high_vi, low_vi, rec_ir, high_ir, low_ir = self.generator(ir, vi, True)
        rec_vi, rec_ir = rec_vi.float(), rec_ir.float()
        d_loss = self._disc_step(vi, ir, rec_vi, rec_ir)
        adv = self._adv(vi, ir, rec_vi, rec_ir)
        decomp = L.decomposition_loss(high_vi.float(), high_ir.float(), low_vi.float(), low_ir.float())
        content = L.content_loss(vi, rec_vi) + L.content_loss(ir, rec_ir)
        g_loss = cfg.lambda_adv * adv + cfg.sigma * decomp + (1 - cfg.sigma) * content
        self._update(self.opt_g, g_loss, [self.model])
        return {"g_total": g_loss.detach(), "g_adv": adv.detach(), "decomposition": decomp.detach(),
                "content": content.detach(), "d_total": d_loss}

    def phase2_step(self, ir: Tensor, vi: Tensor, step: int) -> dict[str, Tensor]:
        """Eq. 13-17: discriminators on each source vs the fused image, then the whole generator."""
        cfg = self.cfg
        self._set_lr(step)
        with autocast(self.device, cfg.precision):
            (fused,) = self.generator(ir, vi, False)
        fused = fused.float()
        d_loss = self._disc_step(vi, ir, fused, fused)
        adv = self._adv(vi, ir, fused, fused)
        texture = L.texture_loss(fused, vi, ir)
        intensity = L.intensity_loss(fused, vi, ir)
        g_loss = cfg.texture_weight * texture + cfg.intensity_weight * intensity + cfg.adv_weight_phase2 * adv
        self._update(self.opt_g, g_loss, [self.model])
        return {"g_total": g_loss.detach(), "g_adv": adv.detach(), "texture": texture.detach(),
                "intensity": intensity.detach(), "d_total": d_loss}


#: settings that do not change the weights a run produces, so not part of its record
NOT_RECORDED = ("pipeline", "workers", "data_cache")


def _record(cfg: DAEFuseTrainConfig, seed: int, pairs: PairDataset, method: str) -> dict[str, Any]:
    """What defines a run: resuming with a different record is refused."""
    config = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_RECORDED}
    return {"method": method, "config": config, "seed": seed, "dataset": pairs.key, "pairs": pairs.ids}


def train_daefuse(pairs: PairDataset, out_dir: Path, *, device: torch.device, overrides: dict[str, Any],
                  seed: int = 0, progress: bool = True, method: str = "daefuse") -> Path:
    """Train both phases on ``pairs``; resumes from ``out_dir/checkpoint.pt``; returns the weights file.

    Under torchrun (a process group is initialised) every rank trains its share of each batch and rank 0
    alone writes the run folder.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    cfg = DAEFuseTrainConfig.from_overrides(overrides, method)
    if cfg.patch_size % cfg.dle_patch:
        raise ValueError(f"patch_size {cfg.patch_size} must be a multiple of dle_patch {cfg.dle_patch}")
    rank, size = D.world()
    main = rank == 0
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
    if main:
        write_json(out_dir / "config.json", {
            **record, "n_pairs": len(pairs), "device": str(device), "processes": size,
            "versions": {"fusebench": fusebench.__version__, "torch": torch.__version__,
                         "python": platform.python_version()}})
    history = LossHistory(out_dir / "losses.csv", resume_step=step if step else None) if main else None
    cache_dir = out_dir / "data_cache" if cfg.pipeline and cfg.data_cache else None
    patches = PatchDataset(pairs, cfg.patch_size, cfg.patches_per_image, seed, lazy=cfg.pipeline, cache_dir=cache_dir)
    if cfg.pipeline:
        sampler = StepBatchSampler(len(patches), cfg.batch_size, epoch_seed(seed), start=step,
                                   stop=cfg.total_steps, rank=rank, world=size)
        batches = iter(make_loader(patches, sampler, workers=cfg.workers, device=device))
    else:
        if size > 1:
            raise ValueError("pipeline=false (the pre-pipeline loop) runs in one process only")
        old = Batches(patches, cfg.batch_size, seed)
    trainer.model.train()
    bar = tqdm(total=cfg.total_steps, initial=step, disable=not (progress and main), desc=method,
               dynamic_ncols=True)
    log = LossLog()
    started = time.perf_counter() - elapsed
    while step < cfg.total_steps:
        ir, vi = next(batches) if cfg.pipeline else old(step)
        ir, vi = ir.to(device, non_blocking=True), vi.to(device, non_blocking=True)
        phase1 = step < cfg.phase1_steps
        log.keep((trainer.phase1_step if phase1 else trainer.phase2_step)(ir, vi, step))
        step += 1
        if not cfg.pipeline:
            values = log.values()  # the pre-pipeline loop read every step's losses (a host sync per step)
        if step % cfg.log_every == 0 or step == cfg.total_steps:
            values = log.values()
            if history is not None:
                history.log(step, "phase1" if phase1 else "phase2", **values)
            bar.set_postfix({k: f"{v:.3g}" for k, v in values.items()}, refresh=False)
        if main and (step % cfg.checkpoint_every == 0 or step in (cfg.phase1_steps, cfg.total_steps)):
            save_checkpoint(ckpt_path, {**trainer.state(step, record), "elapsed_s": time.perf_counter() - started})
        bar.update(1)
    bar.close()
    trainer.model.eval()
    if main:
        trainer.model.save_weights(weights_path)
        if history is not None and history.rows():
            plot_history(history.path, out_dir / "losses.png", title=f"{method} on {pairs.key}")
        rows = history.rows() if history is not None else []
        write_json(out_dir / "summary.json", {"steps": step, "wall_s": round(time.perf_counter() - started, 1),
                                              "processes": size,
                                              "final_losses": {r["stage"]: r for r in rows},
                                              "weights": str(weights_path)})
    D.barrier()
    if main and cache_dir is not None:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return weights_path
