"""Building blocks of DAE-Fuse: Restormer channel-transformer, ResNet basic block, ViT block.

All blocks are fusebench's own code (no timm). The channel ("transposed") attention of Restormer attends
over channels, so its cost is linear in the number of pixels and it runs on any image size; the same
module, given a second input, is the cross-modality attention of Phase II.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LayerNorm2d(nn.Module):
    """LayerNorm over channels at every pixel of an (N, C, H, W) map (Restormer's ``WithBias`` norm)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ChannelAttention(nn.Module):
    """Restormer MDTA: heads attend channel-to-channel; ``context`` given -> cross-attention (K, V from it)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.to_q = nn.Sequential(nn.Conv2d(dim, dim, 1, bias=False),
                                  nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False))
        self.to_kv = nn.Sequential(nn.Conv2d(dim, 2 * dim, 1, bias=False),
                                   nn.Conv2d(2 * dim, 2 * dim, 3, padding=1, groups=2 * dim, bias=False))
        self.proj = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        n, c, h, w = x.shape
        q = self.to_q(x)
        k, v = self.to_kv(x if context is None else context).chunk(2, dim=1)
        q, k, v = (t.reshape(n, self.heads, c // self.heads, h * w) for t in (q, k, v))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        return self.proj((attn @ v).reshape(n, c, h, w))


class GatedFFN(nn.Module):
    """Restormer GDFN: 1x1 expand, depthwise 3x3, GELU gate, 1x1 project."""

    def __init__(self, dim: int, expansion: float = 2.0) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, 2 * hidden, 1, bias=False)
        self.dwconv = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden, bias=False)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class RestormerBlock(nn.Module):
    """``x + MDTA(LN(x))`` then ``x + GDFN(LN(x))``; with ``context``, the attention is cross-modality."""

    def __init__(self, dim: int, heads: int, ffn_expansion: float = 2.0) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(dim)
        self.attn = ChannelAttention(dim, heads)
        self.norm2 = LayerNorm2d(dim)
        self.ffn = GatedFFN(dim, ffn_expansion)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        ctx = None if context is None else self.norm1(context)
        x = x + self.attn(self.norm1(x), ctx)
        return x + self.ffn(self.norm2(x))


def make_norm2d(kind: str, dim: int) -> nn.Module:
    """The normalisation of the high-frequency encoder's basic blocks.

    ``"layer"`` (default): LayerNorm over channels at every pixel; no running statistics, so training and
    eval compute the same thing, whatever the batch holds (one modality, both, one rank's share of a DDP
    batch) and whatever the image size. ``"batch"``: BatchNorm2d, the original ResNet choice, kept to load
    weights trained before (its running statistics mixed visible and infrared; see docs/daefuse.md).
    """
    if kind == "layer":
        return LayerNorm2d(dim)
    if kind == "batch":
        return nn.BatchNorm2d(dim)
    raise ValueError(f"norm must be 'layer' or 'batch', got {kind!r}")


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 conv-norm, identity shortcut), kept at full resolution."""

    def __init__(self, dim: int, norm: str = "layer") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, padding=1, bias=False)
        self.bn1 = make_norm2d(norm, dim)
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1, bias=False)
        self.bn2 = make_norm2d(norm, dim)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(out)))


def sincos_2d(h: int, w: int, dim: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Fixed 2-D sine-cosine position embedding (MAE style) for an h x w grid: (h*w, dim); any grid size."""
    if dim % 4:
        raise ValueError(f"ViT width {dim} must be divisible by 4 for the 2-D sin-cos position embedding")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, device=device, dtype=torch.float32) / (dim // 4))
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    parts = [f(t.reshape(-1, 1) * omega) for t in (ys, xs) for f in (torch.sin, torch.cos)]
    return torch.cat(parts, dim=1).to(dtype)


class ViTBlock(nn.Module):
    """Pre-norm transformer block over tokens: multi-head self-attention (SDPA) and a GELU MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"ViT width {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        n, t, c = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(n, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        x = x + self.proj(attn.transpose(1, 2).reshape(n, t, c))
        return x + self.mlp(self.norm2(x))


def init_vit_linear(module: nn.Module) -> None:
    """Xavier-uniform linear layers with zero bias (the ViT/MAE initialisation)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def ceil_to(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)
