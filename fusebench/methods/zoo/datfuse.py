"""DATFuse (Tang, He, Liu, Duan, Si; IEEE TCSVT 2023), run as its official test script runs it.

Paper: "DATFuse: Infrared and Visible Image Fusion via Dual Attention Transformer",
doi:10.1109/TCSVT.2023.3234340. Official code: ``tthinking/DATFuse`` @
``0cd93f15fb5552c7aef79b7be56726c863d6c5ba`` (``Test.py``, ``Networks/network.py``). The repository has no
licence file (all rights reserved): fusebench downloads the weights from it and never ships them.

The network (``MODEL(in_channel=2)``, other arguments default) is a small CNN-Transformer: a 5x5 conv on the
stacked (IR, VI) pair, a dual-attention residual module (channel and spatial attention around a shared
conv-BN pair), two Swin-style transformer blocks, the same dual-attention module again (same weights), and a
1x1 conv with ``tanh``. Built with timm's layers (``Mlp``, ``DropPath``, ``to_2tuple``, ``trunc_normal_``),
as the official code is.

The official pipeline (reproduced by :meth:`DATFuse.fuse_uint8`):

1. PIL ``Image.open(p).convert('L')`` for both images (reader ``pil_L``), ``ToTensor()`` (float32 /255), and
   ``cat((ir, vi), 0)``: channel 0 is the infrared image, channel 1 the visible one.
2. ``model.eval()`` (BatchNorm uses running statistics); the output is ``tanh``, in (-1, 1).
3. ``np.squeeze(out)``, then ``(x * 255).astype(np.uint8)`` in float32 with **no clip**: truncation toward
   zero, and negative values **wrap modulo 256** on x86 (-13.97 -> -13 -> 243). Written losslessly as BMP.

Quirks:

- The wrap-around is the official x86 behaviour (the C cast is undefined behaviour; ARM saturates to 0);
  ``negatives="saturate"`` maps negative values to 0 instead. Only ``llvip_190001`` among the reference pairs
  has negative outputs (5 pixels, written as ~243 by the official script).
- The transformer block reinterprets the (B, C, H, W) feature memory as (B, H, W, C) with ``view`` (no
  permute), and back at the end; reproduced as is, since the weights were trained that way.
- ``window_size=1`` and ``shift_size=0``: each "window" is one position, so the attention softmax is over one
  key (exactly 1) and the shifted-window mask the official code builds for sizes other than 30x30 is all
  zeros; both are kept in the computation for fidelity, the mask only where it is non-zero (``shift_size>0``).
- ``patch_embed.norm`` (a LayerNorm over 96 channels) is in the checkpoint but never used in ``forward``.
- ``Test.py`` runs the model without ``no_grad`` (no numeric effect).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, to_2tuple, trunc_normal_
from torch import Tensor, nn

from fusebench.methods.zoo._base import ZooMethod, build_zoo, official_loader, register_zoo
from fusebench.methods.zoo._io import truncate_u8
from fusebench.methods.zoo.swinfusion import (  # Swin Transformer's own
    shifted_window_mask,
    window_partition,
    window_reverse,
)
from fusebench.pretrained import PretrainedCfg, WeightFile

__all__ = ["PRETRAINED", "DATFuse", "DATFuseModel"]

ORIGIN_COMMIT = "0cd93f15fb5552c7aef79b7be56726c863d6c5ba"

PRETRAINED = PretrainedCfg(
    files=(
        WeightFile(
            url=f"https://github.com/tthinking/DATFuse/raw/{ORIGIN_COMMIT}/model_10.pth",
            file="model_10.pth",
            sha256="075b636954cbd425fc29be808bcfb42232e29b203f054c2a637ed301300d5a1d",
            size=65_189,
        ),
    ),
    license="none",
    paper="doi:10.1109/TCSVT.2023.3234340",
    origin=f"tthinking/DATFuse@{ORIGIN_COMMIT}",
    notes=(
        "Test.py: PIL 'L' /255, cat(IR, VI), MODEL(in_channel=2) in eval, tanh, (x*255).astype(uint8) with no clip "
        "(negatives wrap modulo 256 on x86)."
    ),
)


# -- the network (official parameter names: Networks/network.py) ----------------------------------------------
class ConvBNReLU5(nn.Module):
    """Official ``Convlutioanl``: replicate pad 2, 5x5 conv, BatchNorm, ReLU."""

    def __init__(self, in_channel: int, out_channel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channel, out_channel, kernel_size=5, padding=0, stride=1)
        self.bn = nn.BatchNorm2d(out_channel)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(F.pad(x, (2, 2, 2, 2), "replicate"))))


class ConvTanh(nn.Module):
    """Official ``Convlutioanl_out``: 1x1 conv then ``tanh``."""

    def __init__(self, in_channel: int, out_channel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channel, out_channel, kernel_size=1, padding=0, stride=1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.conv(x))


class FeatureModule(nn.Module):
    """Official ``Fem``: (replicate pad 1, conv3x3, BN) twice with the *same* conv and BN, a ReLU between."""

    def __init__(self, in_channel: int, out_channel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channel, out_channel, kernel_size=3, padding=0, stride=1)
        self.bn = nn.BatchNorm2d(out_channel)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn(self.conv(F.pad(x, (1, 1, 1, 1), "replicate"))))
        return self.bn(self.conv(F.pad(out, (1, 1, 1, 1), "replicate")))


class ChannelAttention(nn.Module):
    """Official ``Channel_attention``: global average pool, 1x1 bottleneck (``fc``), sigmoid."""

    def __init__(self, channel: int, reduction: int = 4) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Conv2d(channel, channel // reduction, 1), nn.ReLU(inplace=True), nn.Conv2d(channel // reduction, channel, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.fc(self.avg_pool(x)))


class SpatialAttention(nn.Module):
    """Official ``Spatial_attention``: conv-BN-ReLU, conv-BN to one map, sigmoid (``body``)."""

    def __init__(self, channel: int, reduction: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channel, channel // reduction, 3, padding=1),
            nn.BatchNorm2d(channel // reduction),
            nn.ReLU(True),
            nn.Conv2d(channel // reduction, 1, 3, padding=1),
            nn.BatchNorm2d(1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class WindowAttention(nn.Module):
    """Window multi-head self-attention with a relative position bias (official ``WindowAttention``)."""

    def __init__(
        self, dim: int, window_size: tuple[int, int], num_heads: int, qkv_bias: bool = True,
        qk_scale: float | None = None, attn_drop: float = 0.0, proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        wh, ww = window_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * wh - 1) * (2 * ww - 1), num_heads))
        coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
        rel[:, :, 0] += wh - 1
        rel[:, :, 1] += ww - 1
        rel[:, :, 0] *= 2 * ww - 1
        self.register_buffer("relative_position_index", rel.sum(-1))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        b_, n, c = x.shape
        qkv = self.qkv(x).reshape(b_, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        area = self.window_size[0] * self.window_size[1]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(area, area, -1)
        attn = attn + bias.permute(2, 0, 1).contiguous().unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(b_ // nw, nw, self.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, n, n)
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(b_, n, c)
        return self.proj_drop(self.proj(x))


class SwinTransformerBlock(nn.Module):
    """Official ``SwinTransformerBlock``, including its (B, C, H, W) -> (B, H, W, C) ``view`` reinterpretation."""

    def __init__(
        self, dim: int, input_resolution: tuple[int, int], num_heads: int, window_size: int = 1,
        shift_size: int = 0, mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale: float | None = None,
        drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.input_resolution = input_resolution
        self.num_heads = num_heads
        self.window_size = window_size
        self.shift_size = shift_size
        if min(input_resolution) <= window_size:
            self.shift_size = 0
            self.window_size = min(input_resolution)
        if not 0 <= self.shift_size < self.window_size:
            raise ValueError("shift_size must be in [0, window_size)")
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, to_2tuple(self.window_size), num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)
        mask = shifted_window_mask(input_resolution, self.window_size, self.shift_size) if self.shift_size > 0 \
            else None
        self.register_buffer("attn_mask", mask)

    def forward(self, x: Tensor, x_size: tuple[int, int]) -> Tensor:
        b, c, h, w = x.shape
        x = x.view(b, h, w, c)  # official: a reinterpretation of the memory, not a permute
        shortcut = x
        x = self.norm1(x.view(h * w * b, c)).view(b, h, w, c)
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
        windows = window_partition(x, self.window_size).view(-1, self.window_size * self.window_size, c)
        if self.shift_size == 0:
            # the official mask for other sizes is all zeros here, and adding zeros changes nothing
            mask = None
        elif tuple(self.input_resolution) == tuple(x_size):
            mask = self.attn_mask
        else:
            mask = shifted_window_mask(x_size, self.window_size, self.shift_size, x.device)
        windows = self.attn(windows, mask=mask).view(-1, self.window_size, self.window_size, c)
        x = window_reverse(windows, self.window_size, h, w)
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        x = shortcut + self.drop_path(x)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x.view(b, c, h, w)


class BasicLayer(nn.Module):
    """A stack of transformer blocks, alternately unshifted and shifted by half a window (``blocks``)."""

    def __init__(
        self, dim: int, input_resolution: tuple[int, int], depth: int, num_heads: int, window_size: int,
        mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale: float | None = None, drop: float = 0.0,
        attn_drop: float = 0.0, drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(
                dim, input_resolution, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2, mlp_ratio,
                qkv_bias, qk_scale, drop, attn_drop, drop_path,
            )
            for i in range(depth)
        )

    def forward(self, x: Tensor, x_size: tuple[int, int]) -> Tensor:
        for blk in self.blocks:
            x = blk(x, x_size)
        return x


class PatchEmbedNorm(nn.Module):
    """Official ``PatchEmbed`` as the model holds it: only its LayerNorm, which ``forward`` never uses."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim)


class DATFuseModel(nn.Module):
    """Official ``MODEL``: (N, 2, H, W) stacked IR and VI in [0, 1] -> (N, 1, H, W) ``tanh`` output."""

    def __init__(
        self, img_size: int = 120, patch_size: int = 4, embed_dim: int = 96, num_heads: int = 8,
        window_size: int = 1, in_channel: int = 2, out_channel: int = 16, output_channel: int = 1,
        mlp_ratio: float = 4.0, depth: int = 2,
    ) -> None:
        super().__init__()
        self.convolutional = ConvBNReLU5(in_channel, out_channel)
        self.convolutional_out = ConvTanh(out_channel, output_channel)
        self.fem = FeatureModule(out_channel, out_channel)
        self.cam = ChannelAttention(out_channel)
        self.sam = SpatialAttention(out_channel)
        self.patch_embed = PatchEmbedNorm(embed_dim)
        resolution = (img_size // patch_size, img_size // patch_size)
        self.basicLayer = BasicLayer(out_channel, resolution, depth, num_heads, window_size, mlp_ratio)

    def dual_attention(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The shared feature module and its channel- and spatially-attended copies."""
        fem = self.fem(x)
        return fem, fem * self.cam(fem), fem * self.sam(fem)

    def forward(self, x: Tensor) -> Tensor:
        shallow = self.convolutional(x)
        _, by_channel, by_space = self.dual_attention(shallow)
        encoded = F.relu(by_channel + by_space + shallow)
        deep = self.basicLayer(encoded, (encoded.shape[2], encoded.shape[3]))
        fem, by_channel, by_space = self.dual_attention(deep)
        return self.convolutional_out(by_channel + by_space + fem)


# -- the method -------------------------------------------------------------------------------------------------
class DATFuse(ZooMethod):
    """DATFuse on its official weights, with the official reading and 8-bit conversion.

    Args:
        negatives: what the 8-bit conversion does with negative outputs: ``"wrap"`` (default, the official
            x86 ``astype(np.uint8)``: truncate toward zero, then modulo 256) or ``"saturate"`` (0).
    """

    ir_reader = "pil_L"
    vi_reader = "pil_L"
    out_channels = 1

    def __init__(self, negatives: Literal["wrap", "saturate"] = "wrap") -> None:
        if negatives not in ("wrap", "saturate"):
            raise ValueError(f"negatives must be 'wrap' or 'saturate'. Got {negatives!r}.")
        super().__init__(negatives=negatives)
        self.negatives = negatives
        self.net = DATFuseModel(in_channel=2)

    def fuse_uint8(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        pair = np.stack([ir, vi])  # channel 0 = IR, channel 1 = VI, as cat((ir, vi), 0)
        x = torch.from_numpy(np.ascontiguousarray(pair, dtype=np.uint8)).to(self.device).float().div(255)[None]
        out = self.net(x)
        scaled = out[0, 0].float().cpu().numpy() * np.float32(255)  # float32, as (result * 255)
        return float_to_uint8(scaled, self.negatives)


def float_to_uint8(x: np.ndarray, negatives: Literal["wrap", "saturate"] = "wrap") -> np.ndarray:
    """NumPy's ``x.astype(np.uint8)`` on x86 for values below 256: truncate toward zero, then keep the low byte
    (``"wrap"``: -13.97 -> -13 -> 243); ``"saturate"`` clips to [0, 255] first (0 for negatives)."""
    if negatives == "saturate":
        return truncate_u8(x)
    return (np.trunc(x).astype(np.int64) % 256).astype(np.uint8)


@register_zoo("datfuse", model=DATFuse, pretrained=PRETRAINED,
    description="DATFuse (TCSVT 2023), official weights, official Test.py pipeline (PIL grey, tanh, uint8 wrap)",
)
def datfuse(weights: str | Path | None = None, random_init: bool = False, **options: object) -> DATFuse:
    return build_zoo(DATFuse, "datfuse", PRETRAINED, official_loader("net"), weights=weights, random_init=random_init,
                     **options)
