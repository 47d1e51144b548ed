"""DenseFuse (grey model): the PyTorch port's dense-block auto-encoder, run as its official test script runs it.

Paper: H. Li, X.-J. Wu, "DenseFuse: A Fusion Approach to Infrared and Visible Images", IEEE TIP 28(5), 2019.
Official code (the authors' PyTorch port): ``hli1221/densefuse-pytorch`` @
``4394b63e9295db1c6b7a5c3664551c90f0605f2b`` (``test_image.py``, ``net.py``, ``utils.py``,
``args_fusion.py``). The repository has no licence file: all rights reserved, so fusebench downloads the
weights from the authors and never redistributes them.

The official pipeline (``main()``: ``in_c=1``, ``mode='L'``, strategy ``'addition'``):

1. ``scipy.misc.imread(p, mode='L')`` (PIL ``convert('L')``) as float 0..255, **not** divided by 255.
2. ``DenseFuse_net(1, 1)`` in eval (it has no BatchNorm or active dropout): ``conv1`` and a three-layer dense
   block encode each image into 64 channels.
3. ``net.fusion`` averages the two encodings, ``(en_ir + en_vi) / 2``, whatever strategy name it is given.
4. Four 3x3 convolutions decode; every layer, the last included, ends in a ReLU.
5. ``.clamp(0, 255)`` then ``.astype('uint8')`` (truncation), saved as PNG with ``scipy.misc.imsave`` (a uint8
   array passes through unchanged).

Quirks: the script needs PyTorch < 1.0 and SciPy <= 1.1 and lacks ``import os``; the weights are a plain
state_dict. Only the grey model is registered; the RGB model (``DenseFuse_net(3, 3)``, ``densefuse_rgb.model``)
was not run by the reference, so it is not offered. Since every layer ends in a ReLU, the raw output is never
negative and the clamp only acts above 255.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusebench.methods.zoo._base import ZooMethod, build_zoo, official_loader, register_zoo
from fusebench.methods.zoo._io import truncate_u8
from fusebench.pretrained import PretrainedCfg, WeightFile

_COMMIT = "4394b63e9295db1c6b7a5c3664551c90f0605f2b"

PRETRAINED = PretrainedCfg(
    files=(
        WeightFile(
            url=f"https://github.com/hli1221/densefuse-pytorch/raw/{_COMMIT}/models/densefuse_gray.model",
            file="densefuse_gray.model",
            sha256="b34cf3650f04161b31ac2467decfeedf7eba39165b7618f846e0f298ecd2ac65",
            size=300_413,
        ),
    ),
    license="none",
    paper="Li & Wu, DenseFuse: A Fusion Approach to Infrared and Visible Images, IEEE TIP 2019",
    origin=f"hli1221/densefuse-pytorch@{_COMMIT}",
    notes="Grey model of the PyTorch port; inputs 0..255 unnormalised, features averaged, output clamped to "
    "[0, 255] and truncated.",
)


class ConvLayer(nn.Module):
    """Reflection padding, a convolution, then a ReLU unless ``is_last`` (keys ``<name>.conv2d.*``)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, is_last: bool = False) -> None:
        super().__init__()
        self.pad = kernel_size // 2
        self.conv2d = nn.Conv2d(in_ch, out_ch, kernel_size, stride)
        self.is_last = is_last

    def forward(self, x: Tensor) -> Tensor:
        if self.pad:
            x = F.pad(x, (self.pad,) * 4, mode="reflect")
        out = self.conv2d(x)
        return out if self.is_last else F.relu(out)


class DenseConv2d(nn.Module):
    """A ConvLayer whose output is concatenated after its input (keys ``<name>.dense_conv.conv2d.*``)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.dense_conv = ConvLayer(in_ch, out_ch, kernel_size, stride)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.dense_conv(x)], 1)


class DenseBlock(nn.Module):
    """Three dense layers, each adding 16 channels (keys ``<name>.denseblock.<i>.*``)."""

    def __init__(self, in_ch: int, kernel_size: int = 3, stride: int = 1, growth: int = 16) -> None:
        super().__init__()
        self.denseblock = nn.Sequential(
            *(DenseConv2d(in_ch + i * growth, growth, kernel_size, stride) for i in range(3))
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.denseblock(x)


class DenseFuseNet(nn.Module):
    """``DenseFuse_net(input_nc, output_nc)`` with the official parameter names."""

    def __init__(self, input_nc: int = 1, output_nc: int = 1) -> None:
        super().__init__()
        nb = [16, 64, 32, 16]
        self.conv1 = ConvLayer(input_nc, nb[0], 3)
        self.DB1 = DenseBlock(nb[0])
        self.conv2 = ConvLayer(nb[1], nb[1], 3)
        self.conv3 = ConvLayer(nb[1], nb[2], 3)
        self.conv4 = ConvLayer(nb[2], nb[3], 3)
        self.conv5 = ConvLayer(nb[3], output_nc, 3)

    def encoder(self, x: Tensor) -> Tensor:
        return self.DB1(self.conv1(x))

    @staticmethod
    def fusion(en_ir: Tensor, en_vi: Tensor) -> Tensor:
        return (en_ir + en_vi) / 2

    def decoder(self, f: Tensor) -> Tensor:
        return self.conv5(self.conv4(self.conv3(self.conv2(f))))


class DenseFuse(ZooMethod):
    """DenseFuse (TIP 2019), grey model of the official PyTorch port, with its test pipeline."""

    out_channels = 1

    def __init__(self) -> None:
        super().__init__()
        self.net = DenseFuseNet(1, 1)

    @torch.no_grad()
    def fuse_float(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        """The decoder output (H, W) float32 on the 0..255 scale, before the clamp and the 8-bit cast."""
        x_ir, x_vi = (torch.from_numpy(np.asarray(x, dtype=np.float32))[None, None].to(self.device) for x in (ir, vi))
        out = self.net.decoder(self.net.fusion(self.net.encoder(x_ir), self.net.encoder(x_vi)))
        return out[0, 0].float().cpu().numpy()

    def fuse_uint8(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        return truncate_u8(self.fuse_float(ir, vi))


_load = official_loader("net")  # a plain state dict of DenseFuse_net


@register_zoo("densefuse", model=DenseFuse,
    pretrained=PRETRAINED,
    description="DenseFuse (TIP 2019) grey model, official PyTorch port weights and test pipeline",
)
def densefuse(weights: str | Path | None = None, random_init: bool = False, **options: object) -> ZooMethod:
    return build_zoo(DenseFuse, "densefuse", PRETRAINED, _load, weights=weights, random_init=random_init, **options)
