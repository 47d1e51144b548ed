"""DAE-Fuse: an adaptive discriminative autoencoder for multi-modality image fusion, re-implemented.

Paper: Guo, Xu, Li, Wu, Su, "DAE-Fuse: An Adaptive Discriminative Autoencoder for Multi-Modality Image
Fusion", ICME 2025, arXiv:2409.10080. No official code or weights exist: this is fusebench's
re-implementation from the paper's text (Sec. II), with the gaps filled by fusebench's choices
(widths, depths, the channel-wise cross-attention, the ViT patch size); see ``docs/daefuse.md``.

Encoder (shared by both modalities, Eq. 1): shallow encoder (conv + Restormer blocks) -> in parallel a
deep high-frequency encoder (ResNet18-style basic blocks at full resolution) and a deep low-frequency
encoder (ViT over patches, unpatchified back to pixels); embedding = concat(high, low).
Decoder (Eq. 2, 4): 1x1 reduce + Restormer blocks + conv head + sigmoid (the shallow encoder's
architecture). Phase II fusion: cross-attention with one modality's embedding as query and the other's
as key/value, in both directions; the two attended embeddings are concatenated, reduced and decoded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusebench.files import sha256_file
from fusebench.methods.base import FusionMethod, WeightsError, register_method
from fusebench.methods.daefuse.blocks import (
    BasicBlock,
    LayerNorm2d,
    RestormerBlock,
    ViTBlock,
    ceil_to,
    init_vit_linear,
    sincos_2d,
)

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"

#: architecture keys a weights file's metadata may carry (the rest of the cfg is provenance)
ARCH_KEYS = ("dim", "heads", "se_blocks", "dhe_blocks", "dle_dim", "dle_depth", "dle_heads", "dle_patch",
             "dec_blocks", "ffn_expansion", "norm")


class ShallowEncoder(nn.Module):
    """SE: 3x3 conv embedding then Restormer channel-transformer blocks."""

    def __init__(self, dim: int, heads: int, blocks: int, ffn_expansion: float) -> None:
        super().__init__()
        self.embed = nn.Conv2d(1, dim, 3, padding=1, bias=False)
        self.blocks = nn.Sequential(*[RestormerBlock(dim, heads, ffn_expansion) for _ in range(blocks)])

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.embed(x))


class HighFrequencyEncoder(nn.Module):
    """DHE: a ResNet18-style stack of basic blocks; no downsampling, so fine detail stays pixel-aligned."""

    def __init__(self, dim: int, blocks: int, norm: str = "layer") -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[BasicBlock(dim, norm) for _ in range(blocks)])

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(x)


class LowFrequencyEncoder(nn.Module):
    """DLE: a ViT over ``patch`` x ``patch`` tokens with sin-cos positions (any grid), unpatchified to pixels."""

    def __init__(self, dim: int, width: int, depth: int, heads: int, patch: int) -> None:
        super().__init__()
        self.patch = patch
        self.embed = nn.Conv2d(dim, width, patch, stride=patch)
        self.blocks = nn.Sequential(*[ViTBlock(width, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, dim * patch * patch)
        self.apply(init_vit_linear)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.embed(x)  # (N, width, H/p, W/p)
        n, c, gh, gw = tokens.shape
        seq = tokens.flatten(2).transpose(1, 2) + sincos_2d(gh, gw, c, x.device, tokens.dtype)
        seq = self.head(self.norm(self.blocks(seq)))  # (N, gh*gw, dim*p*p)
        grid = seq.transpose(1, 2).reshape(n, -1, gh, gw)
        return F.pixel_shuffle(grid, self.patch)


class Decoder(nn.Module):
    """RD: 1x1 reduce of the embedding, Restormer blocks, conv head, sigmoid to [0, 1]."""

    def __init__(self, in_dim: int, dim: int, heads: int, blocks: int, ffn_expansion: float) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(in_dim, dim, 1, bias=False)
        self.blocks = nn.Sequential(*[RestormerBlock(dim, heads, ffn_expansion) for _ in range(blocks)])
        self.head = nn.Sequential(nn.Conv2d(dim, dim // 2, 3, padding=1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(dim // 2, 1, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.head(self.blocks(self.reduce(x))))


class CrossModalityFusion(nn.Module):
    """Phase II: each embedding attends to the other (Q from itself, K/V from the other), then concat + reduce."""

    def __init__(self, dim: int, heads: int, ffn_expansion: float) -> None:
        super().__init__()
        self.attend_a = RestormerBlock(dim, heads, ffn_expansion)
        self.attend_b = RestormerBlock(dim, heads, ffn_expansion)
        self.norm = LayerNorm2d(2 * dim)
        self.reduce = nn.Conv2d(2 * dim, dim, 1, bias=False)

    def forward(self, phi_a: Tensor, phi_b: Tensor) -> Tensor:
        a_hat = self.attend_a(phi_a, context=phi_b)
        b_hat = self.attend_b(phi_b, context=phi_a)
        return self.reduce(self.norm(torch.cat([a_hat, b_hat], dim=1)))


class DAEFuse(FusionMethod):
    """The DAE-Fuse generator: shared encoders, cross-modality fusion and the reconstruction decoder.

    Modality alpha is the visible luminance (query of the first attention), beta the infrared.
    """

    trainable = True

    def __init__(self, dim: int = 32, heads: int = 4, se_blocks: int = 1, dhe_blocks: int = 4,
                 dle_dim: int = 64, dle_depth: int = 2, dle_heads: int = 4, dle_patch: int = 16,
                 dec_blocks: int = 1, ffn_expansion: float = 2.0, norm: str = "layer",
                 **provenance: Any) -> None:
        arch = {"dim": dim, "heads": heads, "se_blocks": se_blocks, "dhe_blocks": dhe_blocks,
                "dle_dim": dle_dim, "dle_depth": dle_depth, "dle_heads": dle_heads, "dle_patch": dle_patch,
                "dec_blocks": dec_blocks, "ffn_expansion": ffn_expansion, "norm": norm}
        super().__init__(**arch, **provenance)
        self.dle_patch = dle_patch
        self.shallow = ShallowEncoder(dim, heads, se_blocks, ffn_expansion)
        self.high = HighFrequencyEncoder(dim, dhe_blocks, norm)
        self.low = LowFrequencyEncoder(dim, dle_dim, dle_depth, dle_heads, dle_patch)
        # The embedding is 2*dim wide and so is the fusion output, so one decoder serves both phases.
        self.fusion = CrossModalityFusion(2 * dim, heads, ffn_expansion)
        self.decoder = Decoder(2 * dim, dim, heads, dec_blocks, ffn_expansion)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Eq. 1: (embedding, high-frequency features, low-frequency features) of (N, 1, H, W), H, W % patch == 0."""
        shallow = self.shallow(x)
        high, low = self.high(shallow), self.low(shallow)
        return torch.cat([high, low], dim=1), high, low

    def reconstruct(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Phase I (Eq. 2): (reconstruction, high, low) of one modality."""
        phi, high, low = self.encode(x)
        return self.decoder(phi), high, low

    def fuse_padded(self, ir: Tensor, vi: Tensor) -> Tensor:
        """Phase II (Eq. 4) on inputs whose size is a multiple of the ViT patch."""
        phi_a, _, _ = self.encode(vi)
        phi_b, _, _ = self.encode(ir)
        return self.decoder(self.fusion(phi_a, phi_b))

    def fuse(self, ir: Tensor, vi: Tensor) -> Tensor:
        """Any size: replicate-pad to a multiple of the ViT patch, fuse, crop back."""
        h, w = ir.shape[-2:]
        ph, pw = ceil_to(h, self.dle_patch) - h, ceil_to(w, self.dle_patch) - w
        if ph or pw:
            ir, vi = (F.pad(t, (0, pw, 0, ph), mode="replicate") for t in (ir, vi))
        return self.fuse_padded(ir, vi)[..., :h, :w]


def _cfg(**kwargs: Any) -> dict[str, Any]:
    """Family defaults: provenance of the weights plus the architecture."""
    return {"file": None, "sha256": None, "license": None, "origin_url": None,
            "paper": "arXiv:2409.10080", "notes": "", **kwargs}


default_cfgs: dict[str, dict[str, Any]] = {
    "daefuse": _cfg(
        file="daefuse.safetensors",
        sha256="1892c88a164159e04aa991afedebe21305bd02fa2917a4d7b7f613321858c745",
        license="MIT (weights trained by fusebench on MSRS/LLVIP train samples; research use per those datasets)",
        origin_url="https://github.com/fusebench/fusebench",
        notes="fusebench re-implementation from the paper; no official code or weights exist. Trained by "
              "fusebench (recipe in fusebench/weights/daefuse.json), so scores differ from the paper's Table I.",
        dim=16, heads=2, se_blocks=1, dhe_blocks=4, dle_dim=64, dle_depth=2, dle_heads=4, dle_patch=16,
        dec_blocks=1, norm="layer",
    ),
    "daefuse-test": _cfg(notes="tiny random-initialised architecture for tests", dim=8, heads=2, se_blocks=1,
                         dhe_blocks=1, dle_dim=16, dle_depth=1, dle_heads=2, dle_patch=8, dec_blocks=1,
                         norm="layer"),
}


def arch_from_weights(path: Path) -> dict[str, Any]:
    """The architecture recorded in a safetensors file's metadata by ``save_weights`` ({} if none)."""
    if path.suffix != ".safetensors" or not path.is_file():
        return {}
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        cfg = json.loads((handle.metadata() or {}).get("cfg", "{}"))
        if "norm" not in cfg and any(k.endswith("bn1.running_mean") for k in handle.keys()):  # noqa: SIM118
            cfg["norm"] = "batch"  # written before the norm setting existed: BatchNorm blocks
    return {k: cfg[k] for k in ARCH_KEYS if k in cfg}


def _create_daefuse(variant: str, weights: str | Path | None = None, pretrained: bool = True,
                    **kwargs: Any) -> DAEFuse:
    """Build a variant; ``weights`` (a file) wins over the shipped file; a file's architecture wins over defaults."""
    unknown = sorted(set(kwargs) - set(ARCH_KEYS))
    if unknown:
        raise TypeError(f"unknown DAE-Fuse option(s) {unknown}; valid: weights, pretrained, {', '.join(ARCH_KEYS)}")
    cfg = {**default_cfgs[variant], **kwargs}
    path = Path(weights) if weights is not None else None
    if path is None and pretrained and cfg["file"]:
        path = WEIGHTS_DIR / cfg["file"]
        if not path.is_file():
            raise WeightsError(f"{path}: the shipped DAE-Fuse weights are missing; train them with "
                               f"`fusebench train --method daefuse --dataset msrs --split train` and pass "
                               f"weights=<run>/daefuse.safetensors")
        if cfg["sha256"] and sha256_file(path) != cfg["sha256"]:
            raise WeightsError(f"{path}: sha256 differs from the registered {cfg['sha256']}; reinstall fusebench")
    if path is not None:
        cfg.update({**arch_from_weights(path), **kwargs})
    model = DAEFuse(**cfg)
    if path is not None:
        model.load_weights(path)
        model.cfg["weights"] = str(path)
    return model.eval()


def _train(*args: Any, **kwargs: Any) -> Path:
    from fusebench.methods.daefuse.train import train_daefuse

    return train_daefuse(*args, **kwargs)


def _train_test(*args: Any, **kwargs: Any) -> Path:
    from fusebench.methods.daefuse.train import train_daefuse

    return train_daefuse(*args, method="daefuse-test", **kwargs)


@register_method("daefuse", description="DAE-Fuse (re-implemented from the paper, fusebench-trained weights)",
                 trainable=True, train=_train, paper="arXiv:2409.10080")
def daefuse(**kwargs: Any) -> DAEFuse:
    return _create_daefuse("daefuse", **kwargs)


@register_method("daefuse-test", description="tiny random DAE-Fuse for tests", trainable=True,
                 train=_train_test, paper="arXiv:2409.10080")
def daefuse_test(**kwargs: Any) -> DAEFuse:
    return _create_daefuse("daefuse-test", **kwargs)
