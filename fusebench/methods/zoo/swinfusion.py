"""SwinFusion (infrared-visible model), run as its official test script runs it.

Paper: Jiayi Ma, Linfeng Tang, Fan Fan, Jun Huang, Xiaoguang Mei, Yong Ma, "SwinFusion: Cross-domain Long-range
Learning for General Image Fusion via Swin Transformer", IEEE/CAA Journal of Automatica Sinica 9(7), 2022.

Official code: ``Linfeng-Tang/SwinFusion`` @ ``ceeec3fe935630b4d1f2f545984a7a6cb5133f62``
(``models/network_swinfusion1.py``, ``test_swinfusion.py``, ``utils/utils_image.py``, ``data/dataloder.py``).
The repository has no licence file (all rights reserved), so fusebench does not ship the weights; it downloads
``Model/Infrared_Visible_Fusion/Infrared_Visible_Fusion/models/10000_E.pth`` on first use (a plain state dict
that includes the persistent buffers ``attn_mask`` and ``relative_position_index``; a ``'params'`` sub-dict
is used if present, as the script does).

The official pipeline (README's IVF command ``--A_dir IR --B_dir VI_Y``), reproduced by :class:`SwinFusion`:

1. the IR (A) and VI (B) files through ``cv2.imread(p, 0)`` (IMREAD_GRAYSCALE: libjpeg's Y plane for colour
   JPEGs, libpng's ``rgb_to_gray`` for colour PNGs), then ``np.float32(img / 255.)``;
2. symmetric padding to a multiple of the window (8): ``pad = (h // 8 + 1) * 8 - h``, which is **always
   >= 1 and 8 when h is already a multiple of 8** (same for w), taken by concatenating the flipped image and
   cropping (the edge pixel is repeated);
3. ``SwinFusion(A, B)``: shallow convs, Swin extraction per modality, two cross-attention fusion stages,
   Swin reconstruction and three convs; the result is cropped back to h x w;
4. ``tensor2uint``: ``clamp(0, 1) * 255.0``, ``np.round`` (half to even), uint8; written with ``cv2.imwrite``.

Quirks kept: ``define_model`` passes ``depths=[6, 6, 6, 6], num_heads=[6, 6, 6, 6]``, which the constructor
swallows in ``**kwargs``: the real network uses ``Ex_depths=[4], Fusion_depths=[2, 2], Re_depths=[4]`` with 6
heads, ``embed_dim=60``, ``window_size=8``, ``mlp_ratio=2``, ``img_size=128``; the visible branch
(``forward_features_Ex_B``) reuses the *infrared* branch's first two convolutions, so ``conv_first1_B`` and
``conv_first2_B`` are loaded but never used; the shifted-window masks stored in the checkpoint are for 128x128
inputs and are recomputed for any other size; the script checks that ``10000_G.pth`` exists but loads
``10000_E.pth`` (the EMA weights). The padding rule is the constructor option ``pad_always`` (default True, the
official rule; False pads only up to the next multiple of 8, i.e. not at all for multiples of 8).
The image mean is zero for one input channel (``img_range`` 1), so the official mean subtraction and addition
are identities and are left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, to_2tuple, trunc_normal_
from torch import Tensor, nn

from fusebench.methods.zoo._base import (
    ZooMethod,
    build_zoo,
    load_official,
    load_strict,
    read_checkpoint,
    register_zoo,
)
from fusebench.methods.zoo._io import Reader
from fusebench.pretrained import PretrainedCfg, WeightFile

COMMIT = "ceeec3fe935630b4d1f2f545984a7a6cb5133f62"
REPO = "Linfeng-Tang/SwinFusion"
#: windows whose attention is computed at once (memory bound only; the numbers do not depend on it)
WINDOW_CHUNK = 128
WEIGHTS_PATH = "Model/Infrared_Visible_Fusion/Infrared_Visible_Fusion/models/10000_E.pth"

PRETRAINED = PretrainedCfg(
    files=(WeightFile(url=f"https://github.com/{REPO}/raw/{COMMIT}/{WEIGHTS_PATH}", file="10000_E.pth"),),
    license="none",
    paper="Ma et al., SwinFusion: Cross-domain Long-range Learning for General Image Fusion via Swin "
          "Transformer, IEEE/CAA JAS 2022",
    origin=f"{REPO}@{COMMIT}",
    notes="Infrared-visible model. The official weights (git blob 67788c10509e2e63b81190ad56c206de5eb514c5) "
          "could not be downloaded where this port was written: their sha256 and size are not known here, and "
          "the port was checked against the official code run on a synthetic checkpoint in the official format.",
    extra={"git_blob": "67788c10509e2e63b81190ad56c206de5eb514c5"},
)


# ---------------------------------------------------------------------------------------------------------------
# windows
# ---------------------------------------------------------------------------------------------------------------
def window_partition(x: Tensor, ws: int) -> Tensor:
    """(B, H, W, C) -> (B * H/ws * W/ws, ws, ws, C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, ws, ws, c)


def window_reverse(windows: Tensor, ws: int, h: int, w: int) -> Tensor:
    """Inverse of :func:`window_partition`: (B * nW, ws, ws, C) -> (B, H, W, C)."""
    b = int(windows.shape[0] / (h * w / ws / ws))
    x = windows.view(b, h // ws, w // ws, ws, ws, -1)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(b, h, w, -1)


def relative_position_index(ws: tuple[int, int]) -> Tensor:
    """(ws0*ws1, ws0*ws1) index into the (2*ws0-1)*(2*ws1-1) relative-position bias table."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws[0]), torch.arange(ws[1]), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += ws[0] - 1
    rel[:, :, 1] += ws[1] - 1
    rel[:, :, 0] *= 2 * ws[1] - 1
    return rel.sum(-1)


def shifted_window_mask(size: tuple[int, int], ws: int, shift: int, device: torch.device | None = None) -> Tensor:
    """(nW, ws*ws, ws*ws) additive mask (0 / -100) of the shifted windows of an H x W map."""
    h, w = size
    img_mask = torch.zeros((1, h, w, 1), device=device)
    cnt = 0
    for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
        for wsl in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            img_mask[:, hs, wsl, :] = cnt
            cnt += 1
    mask_windows = window_partition(img_mask, ws).view(-1, ws * ws)
    mask = mask_windows.unsqueeze(1) - mask_windows.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


class _RelPosWindowAttention(nn.Module):
    """Shared part of window attention: the relative-position bias and the masked softmax attention."""

    def __init__(self, dim: int, window_size: tuple[int, int], num_heads: int) -> None:
        super().__init__()
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size[0] - 1) * (2 * window_size[1] - 1), num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        """q, k, v: (B_, heads, N, head_dim) -> (B_, N, C) after the output projection.

        The official code builds the (B_, heads, N, N) attention of all windows at once (0.7 GB for a
        768x576 image, several copies alive). Here it is computed for ``WINDOW_CHUNK`` windows at a time: the
        same per-window operations, so the same numbers, with a fraction of the memory.
        """
        b_, _, n, _ = q.shape
        n_ws = self.window_size[0] * self.window_size[1]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n_ws, n_ws, -1)
        bias = bias.permute(2, 0, 1).contiguous().unsqueeze(0)
        q = q * self.scale
        n_w = b_ if mask is None else mask.shape[0]  # windows per image
        out = torch.empty_like(v)
        for first in range(0, b_, n_w):  # one image at a time, so that mask rows line up with windows
            for s in range(0, n_w, WINDOW_CHUNK):
                e = min(s + WINDOW_CHUNK, n_w)
                rows = slice(first + s, first + e)
                attn = q[rows] @ k[rows].transpose(-2, -1)
                attn = attn + bias
                if mask is not None:
                    attn = attn + mask[s:e].unsqueeze(1)
                out[rows] = attn.softmax(dim=-1) @ v[rows]
        return self.proj(out.transpose(1, 2).reshape(b_, n, self.dim))


class WindowAttention(_RelPosWindowAttention):
    """Window multi-head self-attention with relative-position bias (W-MSA / SW-MSA)."""

    def __init__(self, dim: int, window_size: tuple[int, int], num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__(dim, window_size, num_heads)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        b_, n, c = x.shape
        qkv = self.qkv(x).reshape(b_, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        return self._attend(qkv[0], qkv[1], qkv[2], mask)


class CrossWindowAttention(_RelPosWindowAttention):
    """Window cross-attention: queries from ``x``, keys and values from ``y``."""

    def __init__(self, dim: int, window_size: tuple[int, int], num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__(dim, window_size, num_heads)
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, y: Tensor, mask: Tensor | None = None) -> Tensor:
        b_, n, c = x.shape
        q = self.q(x).reshape(b_, n, 1, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        kv = self.kv(y).reshape(b_, n, 2, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        return self._attend(q[0], kv[0], kv[1], mask)


class _WindowBlockBase(nn.Module):
    """Window geometry of a (shifted) Swin block and its mask for the training resolution (a buffer)."""

    def __init__(self, input_resolution: tuple[int, int], window_size: int, shift_size: int) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        if min(input_resolution) <= window_size:
            shift_size, window_size = 0, min(input_resolution)
        self.window_size = window_size
        self.shift_size = shift_size
        mask = shifted_window_mask(input_resolution, window_size, shift_size) if shift_size > 0 else None
        self.register_buffer("attn_mask", mask)

    def _mask(self, x_size: tuple[int, int], device: torch.device) -> Tensor | None:
        if self.shift_size == 0:
            return None
        if tuple(self.input_resolution) == tuple(x_size):
            return self.attn_mask
        return shifted_window_mask(x_size, self.window_size, self.shift_size, device)

    def _windows(self, x: Tensor, h: int, w: int) -> Tensor:
        """(B, L, C) -> (nW*B, ws*ws, C), cyclically shifted first for SW-MSA."""
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
        return window_partition(x, self.window_size).view(-1, self.window_size * self.window_size, c)

    def _merge(self, windows: Tensor, b: int, h: int, w: int) -> Tensor:
        """Inverse of :meth:`_windows`: (nW*B, ws*ws, C) -> (B, L, C)."""
        c = windows.shape[-1]
        x = window_reverse(windows.view(-1, self.window_size, self.window_size, c), self.window_size, h, w)
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        return x.view(b, h * w, c)


class SwinTransformerBlock(_WindowBlockBase):
    """Swin block: ``x + (S)W-MSA(LN(x))``, then ``x + MLP(LN(x))``."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], num_heads: int, window_size: int = 8,
                 shift_size: int = 0, mlp_ratio: float = 2.0, drop_path: float = 0.0) -> None:
        super().__init__(input_resolution, window_size, shift_size)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, to_2tuple(self.window_size), num_heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio))

    def forward(self, x: Tensor, x_size: tuple[int, int]) -> Tensor:
        h, w = x_size
        shortcut = x
        windows = self.attn(self._windows(self.norm1(x), h, w), mask=self._mask(x_size, x.device))
        x = shortcut + self.drop_path(self._merge(windows, x.shape[0], h, w))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class CrossSwinTransformerBlock(_WindowBlockBase):
    """Two-stream Swin block: each stream attends to the other (A: q from x, kv from y; B the reverse)."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], num_heads: int, window_size: int = 8,
                 shift_size: int = 0, mlp_ratio: float = 2.0, drop_path: float = 0.0) -> None:
        super().__init__(input_resolution, window_size, shift_size)
        ws = to_2tuple(self.window_size)
        hidden = int(dim * mlp_ratio)
        self.norm1_A = nn.LayerNorm(dim)
        self.norm1_B = nn.LayerNorm(dim)
        self.attn_A = CrossWindowAttention(dim, ws, num_heads)
        self.attn_B = CrossWindowAttention(dim, ws, num_heads)
        self.drop_path_A = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.drop_path_B = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2_A = nn.LayerNorm(dim)
        self.norm2_B = nn.LayerNorm(dim)
        self.mlp_A = Mlp(in_features=dim, hidden_features=hidden)
        self.mlp_B = Mlp(in_features=dim, hidden_features=hidden)

    def forward(self, x: Tensor, y: Tensor, x_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        h, w = x_size
        b = x.shape[0]
        short_a, short_b = x, y
        xw = self._windows(self.norm1_A(x), h, w)
        yw = self._windows(self.norm1_B(y), h, w)
        mask = self._mask(x_size, x.device)
        attn_a = self.attn_A(xw, yw, mask=mask)
        attn_b = self.attn_B(yw, xw, mask=mask)
        x = short_a + self.drop_path_A(self._merge(attn_a, b, h, w))
        x = x + self.drop_path_A(self.mlp_A(self.norm2_A(x)))
        y = short_b + self.drop_path_B(self._merge(attn_b, b, h, w))
        y = y + self.drop_path_B(self.mlp_B(self.norm2_B(y)))
        return x, y


class BasicLayer(nn.Module):
    """``depth`` Swin blocks alternating regular and shifted windows."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], depth: int, num_heads: int, window_size: int,
                 mlp_ratio: float, drop_path: list[float], cross: bool = False) -> None:
        super().__init__()
        block = CrossSwinTransformerBlock if cross else SwinTransformerBlock
        self.blocks = nn.ModuleList([
            block(dim, input_resolution, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2,
                  mlp_ratio, drop_path[i])
            for i in range(depth)])

    def forward(self, x: Tensor, x_size: tuple[int, int]) -> Tensor:
        for blk in self.blocks:
            x = blk(x, x_size)
        return x

    def forward_cross(self, x: Tensor, y: Tensor, x_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        for blk in self.blocks:
            x, y = blk(x, y, x_size)
        return x, y


class RSTB(nn.Module):
    """Residual Swin Transformer Block as SwinFusion uses it: one :class:`BasicLayer` (no conv, no residual)."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], depth: int, num_heads: int, window_size: int,
                 mlp_ratio: float, drop_path: list[float]) -> None:
        super().__init__()
        self.residual_group = BasicLayer(dim, input_resolution, depth, num_heads, window_size, mlp_ratio,
                                         drop_path)

    def forward(self, x: Tensor, x_size: tuple[int, int]) -> Tensor:
        return self.residual_group(x, x_size)


class CRSTB(nn.Module):
    """Fusion stage: self-attention Swin layers per stream, then a cross-attention Swin layer."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], depth: int, num_heads: int, window_size: int,
                 mlp_ratio: float, drop_path: list[float]) -> None:
        super().__init__()
        args = (dim, input_resolution, depth, num_heads, window_size, mlp_ratio, drop_path)
        self.residual_group = BasicLayer(*args, cross=True)
        self.residual_group_A = BasicLayer(*args)
        self.residual_group_B = BasicLayer(*args)

    def forward(self, x: Tensor, y: Tensor, x_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        x = self.residual_group_A(x, x_size)
        y = self.residual_group_B(y, x_size)
        return self.residual_group.forward_cross(x, y, x_size)


class PatchEmbed(nn.Module):
    """(B, C, H, W) -> (B, H*W, C) tokens, layer-normed (patch size 1)."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.flatten(2).transpose(1, 2))


def patch_unembed(x: Tensor, x_size: tuple[int, int]) -> Tensor:
    """(B, H*W, C) tokens -> (B, C, H, W)."""
    b, _, c = x.shape
    return x.transpose(1, 2).view(b, c, x_size[0], x_size[1])


def _stochastic_depth(rate: float, depths: list[int]) -> list[list[float]]:
    """Per-layer drop-path rates (linearly increasing over all blocks of one group, as in SwinIR)."""
    dpr = [v.item() for v in torch.linspace(0, rate, sum(depths))]
    return [dpr[sum(depths[:i]):sum(depths[:i + 1])] for i in range(len(depths))]


class SwinFusionNet(nn.Module):
    """The SwinFusion network with the configuration the official IVF test really builds."""

    def __init__(self, img_size: int = 128, in_chans: int = 1, embed_dim: int = 60, ex_depths: tuple[int, ...] = (4,),
                 fusion_depths: tuple[int, ...] = (2, 2), re_depths: tuple[int, ...] = (4,), num_heads: int = 6,
                 window_size: int = 8, mlp_ratio: float = 2.0, drop_path_rate: float = 0.1) -> None:
        super().__init__()
        half = embed_dim // 2
        self.window_size = window_size
        res = to_2tuple(img_size)
        self.conv_first1_A = nn.Conv2d(in_chans, half, 3, 1, 1)
        self.conv_first1_B = nn.Conv2d(in_chans, half, 3, 1, 1)  # unused by the official forward
        self.conv_first2_A = nn.Conv2d(half, embed_dim, 3, 1, 1)
        self.conv_first2_B = nn.Conv2d(half, half, 3, 1, 1)  # unused by the official forward
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        self.patch_embed = PatchEmbed(embed_dim)
        stage = (embed_dim, res)
        ex_dpr = _stochastic_depth(drop_path_rate, list(ex_depths))
        fu_dpr = _stochastic_depth(drop_path_rate, list(fusion_depths))
        re_dpr = _stochastic_depth(drop_path_rate, list(re_depths))
        self.layers_Ex_A = nn.ModuleList([RSTB(*stage, d, num_heads, window_size, mlp_ratio, p)
                                          for d, p in zip(ex_depths, ex_dpr, strict=True)])
        self.norm_Ex_A = nn.LayerNorm(embed_dim)
        self.layers_Ex_B = nn.ModuleList([RSTB(*stage, d, num_heads, window_size, mlp_ratio, p)
                                          for d, p in zip(ex_depths, ex_dpr, strict=True)])
        self.norm_Ex_B = nn.LayerNorm(embed_dim)
        self.layers_Fusion = nn.ModuleList([CRSTB(*stage, d, num_heads, window_size, mlp_ratio, p)
                                            for d, p in zip(fusion_depths, fu_dpr, strict=True)])
        self.norm_Fusion_A = nn.LayerNorm(embed_dim)
        self.norm_Fusion_B = nn.LayerNorm(embed_dim)
        self.layers_Re = nn.ModuleList([RSTB(*stage, d, num_heads, window_size, mlp_ratio, p)
                                        for d, p in zip(re_depths, re_dpr, strict=True)])
        self.norm_Re = nn.LayerNorm(embed_dim)
        self.conv_after_body_Fusion = nn.Conv2d(2 * embed_dim, embed_dim, 3, 1, 1)
        self.conv_last1 = nn.Conv2d(embed_dim, half, 3, 1, 1)
        self.conv_last2 = nn.Conv2d(half, half // 2, 3, 1, 1)
        self.conv_last3 = nn.Conv2d(half // 2, in_chans, 3, 1, 1)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    def _pad_to_window(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.window_size, (-w) % self.window_size
        return F.pad(x, (0, pw, 0, ph), "reflect") if ph or pw else x

    def _extract(self, x: Tensor, layers: nn.ModuleList, norm: nn.LayerNorm) -> Tensor:
        # both modalities use the A convolutions (official quirk)
        x = self.lrelu(self.conv_first1_A(x))
        x = self.lrelu(self.conv_first2_A(x))
        x_size = (x.shape[2], x.shape[3])
        t = self.patch_embed(x)
        for layer in layers:
            t = layer(t, x_size)
        return patch_unembed(norm(t), x_size)

    def _fuse(self, x: Tensor, y: Tensor) -> Tensor:
        x_size = (x.shape[2], x.shape[3])
        tx, ty = self.patch_embed(x), self.patch_embed(y)
        for layer in self.layers_Fusion:
            tx, ty = layer(tx, ty, x_size)
        x = patch_unembed(self.norm_Fusion_A(tx), x_size)
        y = patch_unembed(self.norm_Fusion_B(ty), x_size)
        return self.lrelu(self.conv_after_body_Fusion(torch.cat([x, y], 1)))

    def _reconstruct(self, x: Tensor) -> Tensor:
        x_size = (x.shape[2], x.shape[3])
        t = self.patch_embed(x)
        for layer in self.layers_Re:
            t = layer(t, x_size)
        x = patch_unembed(self.norm_Re(t), x_size)
        x = self.lrelu(self.conv_last1(x))
        x = self.lrelu(self.conv_last2(x))
        return self.conv_last3(x)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """A (infrared) and B (visible), (N, 1, H, W) in [0, 1] -> raw fused map (N, 1, H, W), not clamped."""
        h, w = a.shape[2:]
        x = self._extract(self._pad_to_window(a), self.layers_Ex_A, self.norm_Ex_A)
        y = self._extract(self._pad_to_window(b), self.layers_Ex_B, self.norm_Ex_B)
        return self._reconstruct(self._fuse(x, y))[:, :, :h, :w]


def symmetric_pad(x: Tensor, pad_h: int, pad_w: int) -> Tensor:
    """The official padding: append the flipped image below / to the right, then crop (edge pixel repeated)."""
    h, w = x.shape[-2:]
    x = torch.cat([x, torch.flip(x, [2])], 2)[:, :, :h + pad_h, :]
    return torch.cat([x, torch.flip(x, [3])], 3)[:, :, :, :w + pad_w]


class SwinFusion(ZooMethod):
    """SwinFusion (IVF) as ``test_swinfusion.py`` runs it; the parameters are the network's (``net.``)."""

    ir_reader: ClassVar[Reader] = "cv2_gray"
    vi_reader: ClassVar[Reader] = "cv2_gray"
    out_channels: ClassVar[int] = 1

    def __init__(self, pad_always: bool = True) -> None:
        super().__init__(pad_always=pad_always)
        self.pad_always = pad_always
        self.net = SwinFusionNet()

    def padding(self, h: int, w: int) -> tuple[int, int]:
        """Rows and columns of symmetric padding for an h x w image."""
        ws = self.net.window_size
        if self.pad_always:
            return (h // ws + 1) * ws - h, (w // ws + 1) * ws - w
        return (-h) % ws, (-w) % ws

    @torch.no_grad()
    def fuse_float(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        """The float32 (H, W) map the official script hands to ``tensor2uint`` (before clamping).

        ``ir``/``vi``: uint8 (H, W) from ``cv2.imread(p, IMREAD_GRAYSCALE)``.
        """
        h, w = ir.shape[:2]
        ph, pw = self.padding(h, w)
        if ph > h or pw > w:
            raise ValueError(f"SwinFusion's symmetric padding needs images of at least 4x4 pixels; got {w}x{h} (WxH)")
        dev = self.device
        a = torch.from_numpy(np.float32(np.asarray(ir) / 255.0))[None, None].to(dev)
        b = torch.from_numpy(np.float32(np.asarray(vi) / 255.0))[None, None].to(dev)
        out = self.net(symmetric_pad(a, ph, pw), symmetric_pad(b, ph, pw))
        return out[0, 0, :h, :w].float().cpu().numpy()

    def fuse_uint8(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        """Official output: ``tensor2uint`` (clamp to [0, 1], ``* 255.0``, round half to even)."""
        return np.uint8((np.clip(self.fuse_float(ir, vi), 0, 1) * 255.0).round())


def _load(model: ZooMethod, paths: list[Path]) -> None:
    """Load the official state dict (or its ``'params'``) strictly, buffers included."""
    checkpoint = read_checkpoint(paths[0])
    key = "params" if isinstance(checkpoint, dict) and "params" in checkpoint else None
    load_strict(model, "net", load_official(paths[0], key=key, checkpoint=checkpoint), paths[0])


@register_zoo("swinfusion", model=SwinFusion, pretrained=PRETRAINED,
              description="SwinFusion (IEEE/CAA JAS 2022), official infrared-visible model and test pipeline")
def swinfusion(**kwargs: Any) -> SwinFusion:
    """SwinFusion (IVF) with its official weights (``weights=`` a local ``10000_E.pth``, else downloaded)."""
    return build_zoo(SwinFusion, "swinfusion", PRETRAINED, _load, **kwargs)
