"""CDDFuse: Correlation-Driven Dual-Branch Feature Decomposition, run as its official IVF test script runs it.

Paper: Zixiang Zhao, Haowen Bai, Jiangshe Zhang, Yulun Zhang, Shuang Xu, Zudi Lin, Radu Timofte, Luc Van Gool,
"CDDFuse: Correlation-Driven Dual-Branch Feature Decomposition for Multi-Modality Image Fusion", CVPR 2023.

Official code: ``Zhaozixiang1228/MMIF-CDDFuse`` @ ``fd8da1f39d8d403b7343e577bd5a30cba38c7b7b`` (``net.py``,
``test_IVF.py``, ``utils/img_read_save.py``). The repository has no licence file (all rights reserved), so
fusebench does not ship the weights; it downloads ``models/CDDFuse_IVF.pth`` from the repository on first use.

The official pipeline (``test_IVF.py``), reproduced by :class:`CDDFuse`:

1. both images through ``image_read_cv2(p, 'GRAY')``: ``cv2.imread`` (3-channel BGR) as float32, the float
   ``cvtColor(BGR2GRAY)``, ``np.round``; then ``/255.0`` (stays float32) and ``torch.FloatTensor``;
2. a shared Restormer encoder gives (base, detail, shallow) features of each image; the base features are
   summed and fused by a Lite-Transformer block (``BaseFuseLayer``), the detail features summed and fused by
   one invertible-network node (``DetailFuseLayer``);
3. the decoder adds the *visible* image to its last convolution's output before the sigmoid;
4. ``(x - min) / (max - min)`` over the tensor, ``* 255`` (float32) and ``skimage.io.imsave``: old
   scikit-image hands it to imageio's ``image_as_uint``, which sees a range beyond [0, 1] and min-max scales it
   *again* in float64 before ``floor(x * 255 + 0.499999999)``.

Quirks: the output is always stretched to the full 0..255 range (two min-max normalisations); the visible
image enters the decoder directly (the fused image leans towards the visible one); any size works (no padding,
no tiling). The checkpoint is a dict of the four ``nn.DataParallel`` state dicts (keys ``DIDF_Encoder``,
``DIDF_Decoder``, ``BaseFuseLayer``, ``DetailFuseLayer``; every tensor name starts with ``module.``).

The network code below is fusebench's own, with the official module and parameter names so that the official
file loads strictly. The layer norm keeps the official arithmetic (``(x - mean) / sqrt(var + 1e-5)``) rather
than ``nn.LayerNorm`` so that the float results match the official code to the last bits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusebench.methods.zoo._base import (
    ZooMethod,
    build_zoo,
    load_official,
    load_strict,
    read_checkpoint,
    register_zoo,
)
from fusebench.methods.zoo._io import Reader, image_as_uint
from fusebench.pretrained import PretrainedCfg, WeightFile

COMMIT = "fd8da1f39d8d403b7343e577bd5a30cba38c7b7b"
REPO = "Zhaozixiang1228/MMIF-CDDFuse"

PRETRAINED = PretrainedCfg(
    files=(
        WeightFile(
            url=f"https://github.com/{REPO}/raw/{COMMIT}/models/CDDFuse_IVF.pth",
            file="CDDFuse_IVF.pth",
        ),
    ),
    license="none",
    paper="Zhao et al., CDDFuse: Correlation-Driven Dual-Branch Feature Decomposition for Multi-Modality "
          "Image Fusion, CVPR 2023",
    origin=f"{REPO}@{COMMIT}",
    notes="The official weights (git blob d2794226bd48961132111bceff89ce3c955b3985) could not be downloaded "
          "where this port was written: their sha256 and size are not known here, and the port was checked "
          "against the official code run on a synthetic checkpoint in the official format.",
    extra={"git_blob": "d2794226bd48961132111bceff89ce3c955b3985"},
)

#: the four sub-networks of the checkpoint, in the order the official script loads them
CHECKPOINT_KEYS: tuple[str, ...] = ("DIDF_Encoder", "DIDF_Decoder", "BaseFuseLayer", "DetailFuseLayer")


# ---------------------------------------------------------------------------------------------------------------
# layers shared with EMMA (same authors, same code)
# ---------------------------------------------------------------------------------------------------------------
def to_tokens(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, H*W, C), a view where possible (as ``einops.rearrange`` gives)."""
    b, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, h * w, c)


def to_map(x: Tensor, h: int, w: int) -> Tensor:
    """(B, H*W, C) -> (B, C, H, W)."""
    b, _, c = x.shape
    return x.reshape(b, h, w, c).permute(0, 3, 1, 2)


class WithBiasLayerNorm(nn.Module):
    """Layer norm over the last dimension, computed as the official ``WithBias_LayerNorm`` computes it."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        mu = x.mean(-1, keepdim=True)
        sigma = x.var(-1, keepdim=True, unbiased=False)
        return (x - mu) / torch.sqrt(sigma + 1e-5) * self.weight + self.bias


class LayerNorm2d(nn.Module):
    """Channel layer norm of an (B, C, H, W) map; the parameters live in ``body`` as in the official code."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = WithBiasLayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        return to_map(self.body(to_tokens(x)), h, w)


def channel_attention(q: Tensor, k: Tensor, v: Tensor, heads: int, scale: Tensor) -> Tensor:
    """Transposed (channel-to-channel) attention of Restormer on (B, C, H, W) maps; returns (B, C, H, W)."""
    b, c, h, w = q.shape
    q, k, v = (t.reshape(b, heads, c // heads, h * w) for t in (q, k, v))
    q = F.normalize(q, dim=-1)
    k = F.normalize(k, dim=-1)
    attn = ((q @ k.transpose(-2, -1)) * scale).softmax(dim=-1)
    return (attn @ v).reshape(b, c, h, w)


class AttentionBase(nn.Module):
    """Channel attention of the Lite-Transformer base branch: 1x1 then full 3x3 conv to q, k, v."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv1 = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=qkv_bias)
        self.qkv2 = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, bias=qkv_bias)
        self.proj = nn.Conv2d(dim, dim, kernel_size=1, bias=qkv_bias)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv2(self.qkv1(x)).chunk(3, dim=1)
        return self.proj(channel_attention(q, k, v, self.num_heads, self.scale))


class GatedMlp(nn.Module):
    """Gated conv MLP: 1x1 expand to 2*hidden, 3x3 conv grouped in pairs of channels, GELU gate, 1x1 project.

    ``groups`` is ``hidden`` in the base branch's ``Mlp`` (two channels per group) and ``2 * hidden`` in the
    Restormer ``FeedForward`` (depthwise).
    """

    def __init__(self, dim: int, hidden: int, groups: int, out_dim: int | None = None, bias: bool = False,
                 padding_mode: str = "zeros") -> None:
        super().__init__()
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, kernel_size=3, stride=1, padding=1, groups=groups,
                                bias=bias, padding_mode=padding_mode)
        self.project_out = nn.Conv2d(hidden, out_dim or dim, kernel_size=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class BaseFeatureExtraction(nn.Module):
    """Lite-Transformer block of the base (low-frequency) branch: channel attention then gated MLP.

    EMMA's ``GlobalFeatureExtraction`` is the same block with a reflect-padded MLP convolution.
    """

    def __init__(self, dim: int, num_heads: int, ffn_expansion_factor: float = 1.0, qkv_bias: bool = False,
                 mlp_padding_mode: str = "zeros") -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.norm1 = LayerNorm2d(dim)
        self.attn = AttentionBase(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.norm2 = LayerNorm2d(dim)
        self.mlp = GatedMlp(dim, hidden, groups=hidden, padding_mode=mlp_padding_mode)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


# ---------------------------------------------------------------------------------------------------------------
# CDDFuse
# ---------------------------------------------------------------------------------------------------------------
class InvertedResidualBlock(nn.Module):
    """MobileNet-v2 bottleneck without BN: 1x1, ReLU6, reflect-padded depthwise 3x3, ReLU6, 1x1."""

    def __init__(self, inp: int, oup: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(inp * expand_ratio)
        self.bottleneckBlock = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, bias=False),
            nn.ReLU6(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(hidden, hidden, 3, groups=hidden, bias=False),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, oup, 1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.bottleneckBlock(x)


class DetailNode(nn.Module):
    """One affine-coupling node of the invertible detail branch (32 + 32 channels)."""

    def __init__(self) -> None:
        super().__init__()
        self.theta_phi = InvertedResidualBlock(32, 32, expand_ratio=2)
        self.theta_rho = InvertedResidualBlock(32, 32, expand_ratio=2)
        self.theta_eta = InvertedResidualBlock(32, 32, expand_ratio=2)
        self.shffleconv = nn.Conv2d(64, 64, kernel_size=1, stride=1, padding=0, bias=True)

    def forward(self, z1: Tensor, z2: Tensor) -> tuple[Tensor, Tensor]:
        z = self.shffleconv(torch.cat((z1, z2), dim=1))
        half = z.shape[1] // 2
        z1, z2 = z[:, :half], z[:, half:]
        z2 = z2 + self.theta_phi(z1)
        z1 = z1 * torch.exp(self.theta_rho(z2)) + self.theta_eta(z2)
        return z1, z2


class DetailFeatureExtraction(nn.Module):
    """The invertible-network detail (high-frequency) branch: ``num_layers`` coupling nodes."""

    def __init__(self, num_layers: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(*[DetailNode() for _ in range(num_layers)])

    def forward(self, x: Tensor) -> Tensor:
        half = x.shape[1] // 2
        z1, z2 = x[:, :half], x[:, half:]
        for node in self.net:
            z1, z2 = node(z1, z2)
        return torch.cat((z1, z2), dim=1)


class Attention(nn.Module):
    """Restormer MDTA: 1x1 then depthwise 3x3 conv to q, k, v, channel attention, 1x1 projection."""

    def __init__(self, dim: int, num_heads: int, bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, stride=1, padding=1, groups=dim * 3,
                                    bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        return self.project_out(channel_attention(q, k, v, self.num_heads, self.temperature))


class TransformerBlock(nn.Module):
    """Restormer block: ``x + MDTA(LN(x))``, then ``x + GDFN(LN(x))``."""

    def __init__(self, dim: int, num_heads: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.norm1 = LayerNorm2d(dim)
        self.attn = Attention(dim, num_heads, bias)
        self.norm2 = LayerNorm2d(dim)
        self.ffn = GatedMlp(dim, hidden, groups=hidden * 2, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class OverlapPatchEmbed(nn.Module):
    """3x3 convolution from the image to ``embed_dim`` channels."""

    def __init__(self, in_c: int = 1, embed_dim: int = 64, bias: bool = False) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_c, embed_dim, kernel_size=3, stride=1, padding=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class RestormerEncoder(nn.Module):
    """Shared encoder: patch embedding, Restormer blocks, then the base and detail branches."""

    def __init__(self, inp_channels: int = 1, dim: int = 64, num_blocks: int = 4, heads: int = 8,
                 ffn_expansion_factor: float = 2, bias: bool = False) -> None:
        super().__init__()
        self.patch_embed = OverlapPatchEmbed(inp_channels, dim)
        self.encoder_level1 = nn.Sequential(*[TransformerBlock(dim, heads, ffn_expansion_factor, bias)
                                              for _ in range(num_blocks)])
        self.baseFeature = BaseFeatureExtraction(dim=dim, num_heads=heads)
        self.detailFeature = DetailFeatureExtraction()

    def forward(self, img: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        shallow = self.encoder_level1(self.patch_embed(img))
        return self.baseFeature(shallow), self.detailFeature(shallow), shallow


class RestormerDecoder(nn.Module):
    """Decoder: 1x1 channel reduction of [base, detail], Restormer blocks, two 3x3 convs, + image, sigmoid."""

    def __init__(self, out_channels: int = 1, dim: int = 64, num_blocks: int = 4, heads: int = 8,
                 ffn_expansion_factor: float = 2, bias: bool = False) -> None:
        super().__init__()
        self.reduce_channel = nn.Conv2d(dim * 2, dim, kernel_size=1, bias=bias)
        self.encoder_level2 = nn.Sequential(*[TransformerBlock(dim, heads, ffn_expansion_factor, bias)
                                              for _ in range(num_blocks)])
        self.output = nn.Sequential(
            nn.Conv2d(dim, dim // 2, kernel_size=3, stride=1, padding=1, bias=bias),
            nn.LeakyReLU(),
            nn.Conv2d(dim // 2, out_channels, kernel_size=3, stride=1, padding=1, bias=bias),
        )
        self.sigmoid = nn.Sigmoid()

    def forward(self, img: Tensor | None, base: Tensor, detail: Tensor) -> tuple[Tensor, Tensor]:
        feat = self.reduce_channel(torch.cat((base, detail), dim=1))
        out = self.output(self.encoder_level2(feat))
        if img is not None:
            out = out + img
        return self.sigmoid(out), feat


class CDDFuse(ZooMethod):
    """CDDFuse (IVF model) as ``test_IVF.py`` runs it; the four sub-networks carry the checkpoint's keys."""

    ir_reader: ClassVar[Reader] = "cv2_float_gray_round"
    vi_reader: ClassVar[Reader] = "cv2_float_gray_round"
    out_channels: ClassVar[int] = 1

    def __init__(self) -> None:
        super().__init__()
        self.DIDF_Encoder = RestormerEncoder()
        self.DIDF_Decoder = RestormerDecoder()
        self.BaseFuseLayer = BaseFeatureExtraction(dim=64, num_heads=8)
        self.DetailFuseLayer = DetailFeatureExtraction(num_layers=1)

    def network(self, ir: Tensor, vi: Tensor) -> Tensor:
        """The official forward on (N, 1, H, W) float32 tensors in [0, 1]: the decoder's sigmoid output."""
        v_base, v_detail, _ = self.DIDF_Encoder(vi)
        i_base, i_detail, _ = self.DIDF_Encoder(ir)
        f_base = self.BaseFuseLayer(v_base + i_base)
        f_detail = self.DetailFuseLayer(v_detail + i_detail)
        out, _ = self.DIDF_Decoder(vi, f_base, f_detail)
        return out

    @torch.no_grad()
    def fuse_float(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        """The float32 (H, W) map in [0, 255] the official script hands to ``imsave``.

        ``ir``/``vi``: the official reader's float32 grey images (0..255, whole numbers).
        """
        dev = self.device
        ir_t = torch.from_numpy(np.ascontiguousarray(ir, dtype=np.float32) / 255.0)[None, None].to(dev)
        vi_t = torch.from_numpy(np.ascontiguousarray(vi, dtype=np.float32) / 255.0)[None, None].to(dev)
        out = self.network(ir_t, vi_t)
        out = (out - torch.min(out)) / (torch.max(out) - torch.min(out))
        return np.squeeze((out * 255).cpu().numpy())

    def fuse_uint8(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        """Official output: :meth:`fuse_float`, then old scikit-image ``imsave`` (min-max again, round)."""
        return image_as_uint(self.fuse_float(ir, vi))


def _load(model: ZooMethod, paths: list[Path]) -> None:
    """Load the official checkpoint (dict of four DataParallel state dicts) strictly."""
    checkpoint = read_checkpoint(paths[0])
    for key in CHECKPOINT_KEYS:
        state = load_official(paths[0], key=key, strip_prefix="module.", checkpoint=checkpoint)
        load_strict(model, key, state, paths[0])


@register_zoo("cddfuse", model=CDDFuse, pretrained=PRETRAINED,
              description="CDDFuse (CVPR 2023), official IVF model and test pipeline")
def cddfuse(**kwargs: Any) -> CDDFuse:
    """CDDFuse with its official weights (``weights=`` a local ``CDDFuse_IVF.pth``, else downloaded)."""
    return build_zoo(CDDFuse, "cddfuse", PRETRAINED, _load, **kwargs)
