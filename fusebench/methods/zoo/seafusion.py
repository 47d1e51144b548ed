"""SeAFusion (Tang, Yuan & Ma, Information Fusion 82, 2022), run as its official ``test.py`` runs it.

Paper: "Image fusion in the loop of high-level vision tasks: A semantic-aware real-time infrared and visible
image fusion network". Official repository ``Linfeng-Tang/SeAFusion`` (no licence file: all rights reserved):
``test.py`` @ ``b882b25b1223db52338e2fc28bf7ac5c6568625d``, ``FusionNet.py`` and ``TaskFusion_dataset.py`` @
``5fd9c52cacd9cd1154cf32c37fa402392d75be26``. The weights are the author's copy in ``Linfeng-Tang/VIF-Benchmark``
@ ``23f2e51f`` (``Checkpoint/SeAFusion/SeAFusion.pth``).

The official pipeline, for one pair (``--batch_size 1``):

1. VI: ``np.array(Image.open(vi))`` as float32 / 255 (RGB; a grey file must be R=G=B RGB, the official reader
   crashes on ``L`` files), IR: ``cv2.imread(ir, 0)`` as float32 / 255.
2. ``RGB2YCrCb`` in float32 without clamping: ``Y = 0.299R + 0.587G + 0.114B``, ``Cr = (R-Y)*0.713 + 0.5``,
   ``Cb = (B-Y)*0.564 + 0.5``.
3. ``FusionNet(Y, IR)``: two encoders (a conv and two gradient residual dense blocks each), a four-layer decoder
   ending in ``tanh/2 + 0.5``. The decoder's BatchNorm layers are built but never called, so train/eval mode
   makes no difference.
4. ``cat(Y_fused, Cr, Cb)`` then ``YCrCb2RGB`` as a float32 matrix product, clamp to [0, 1].
5. Min-max over the whole array (all three channels jointly), then ``np.uint8(255 * x)``: truncation. The PNG
   written is RGB, even for grey inputs.

Quirks: the min-max always maps the darkest and brightest channel value to 0 and 255 (``minmax=False`` skips it
and truncates the clamped image instead; not official). With the older default ``--batch_size 32`` the min-max
ran over a whole batch; a single pair is what is reproduced here. A layout detail matters for exactness: the
official ``RGB2YCrCb`` returns a channels-last view of a (pixels, 3) array, so the visible branch's convolutions
run channels-last, which rounds differently (fed a contiguous Y, 6-40 values per image differ by one level);
:func:`rgb_to_ycrcb` returns the same layout.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusebench.methods.zoo._base import ZooMethod, build_zoo, official_loader, register_zoo
from fusebench.methods.zoo._io import Reader
from fusebench.pretrained import PretrainedCfg, WeightFile

__all__ = ["SEAFUSION_CFG", "FusionNet", "SeAFusion"]

SEAFUSION_CFG = PretrainedCfg(
    files=(
        WeightFile(
            url="https://github.com/Linfeng-Tang/VIF-Benchmark/raw/23f2e51fc1b084310d998999222ce02dc364b6eb/"
            "Checkpoint/SeAFusion/SeAFusion.pth",
            file="SeAFusion.pth",
            sha256="8d65a7f9a50f36349803368cf9920f40420776995e7e8cc8a56d8d30e499431d",
            size=682_043,
        ),
    ),
    license="none",
    paper="Tang, Yuan & Ma, Image fusion in the loop of high-level vision tasks: a semantic-aware real-time "
    "infrared and visible image fusion network, Information Fusion 82, 2022",
    origin="Linfeng-Tang/SeAFusion@b882b25b1223db52338e2fc28bf7ac5c6568625d (test.py; FusionNet.py and "
    "TaskFusion_dataset.py @ 5fd9c52cacd9cd1154cf32c37fa402392d75be26)",
    notes="Weights from the author's VIF-Benchmark@23f2e51f (Checkpoint/SeAFusion/SeAFusion.pth; that repository "
    "is MIT, (c) 2023 Linfeng Tang); the SeAFusion repository, which has no licence file, holds "
    "model/Fusion/fusionmodel_final.pth, not verified to be byte-identical. Output is RGB, min-max stretched.",
    extra={
        "alternative_url": "https://github.com/Linfeng-Tang/SeAFusion/raw/"
        "3340b26442257cbcb458e57b761ceafa90f4b328/model/Fusion/fusionmodel_final.pth",
        "weights_host_license": "MIT (Linfeng-Tang/VIF-Benchmark)",
    },
)


# -- network (official module and parameter names) -----------------------------------------------------------
class ConvLeakyRelu2d(nn.Module):
    """3x3 convolution, leaky ReLU (slope 0.2)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(self.conv(x), negative_slope=0.2)


class ConvBnLeakyRelu2d(ConvLeakyRelu2d):
    """The official decoder layer: its ``bn`` holds weights but is not applied."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels)
        self.bn = nn.BatchNorm2d(out_channels)  # unused in forward, as in the official code


class ConvBnTanh2d(nn.Module):
    """Last decoder layer: ``tanh(conv(x)) / 2 + 0.5``; ``bn`` is unused, as in the official code."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.conv(x)) / 2 + 0.5


class Conv1(nn.Module):
    """1x1 convolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Sobelxy(nn.Module):
    """Depthwise Sobel gradient magnitude ``|Gx| + |Gy|`` (the kernels are stored in the checkpoint)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        kernel = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        self.convx = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.convy = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        with torch.no_grad():
            self.convx.weight.copy_(kernel.expand_as(self.convx.weight))
            self.convy.weight.copy_(kernel.T.expand_as(self.convy.weight))

    def forward(self, x: Tensor) -> Tensor:
        return torch.abs(self.convx(x)) + torch.abs(self.convy(x))


class DenseBlock(nn.Module):
    """Two densely connected 3x3 conv layers: output has 3x the input channels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLeakyRelu2d(channels, channels)
        self.conv2 = ConvLeakyRelu2d(2 * channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.cat((x, self.conv1(x)), dim=1)
        return torch.cat((x, self.conv2(x)), dim=1)


class RGBD(nn.Module):
    """Gradient residual dense block: dense path plus a Sobel path, summed, leaky ReLU (slope 0.1)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.dense = DenseBlock(in_channels)
        self.convdown = Conv1(3 * in_channels, out_channels)
        self.sobelconv = Sobelxy(in_channels)
        self.convup = Conv1(in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        dense = self.convdown(self.dense(x))
        grad = self.convup(self.sobelconv(x))
        return F.leaky_relu(dense + grad, negative_slope=0.1)


class FusionNet(nn.Module):
    """SeAFusion's fusion network: ``forward(ycrcb_or_y, ir)`` uses channel 0 of the first input (Y)."""

    def __init__(self, output: int = 1) -> None:
        super().__init__()
        del output  # the official constructor overrides it with 1
        vis_ch = inf_ch = (16, 32, 48)
        self.vis_conv = ConvLeakyRelu2d(1, vis_ch[0])
        self.vis_rgbd1 = RGBD(vis_ch[0], vis_ch[1])
        self.vis_rgbd2 = RGBD(vis_ch[1], vis_ch[2])
        self.inf_conv = ConvLeakyRelu2d(1, inf_ch[0])
        self.inf_rgbd1 = RGBD(inf_ch[0], inf_ch[1])
        self.inf_rgbd2 = RGBD(inf_ch[1], inf_ch[2])
        self.decode4 = ConvBnLeakyRelu2d(vis_ch[2] + inf_ch[2], vis_ch[1] + vis_ch[1])
        self.decode3 = ConvBnLeakyRelu2d(vis_ch[1] + inf_ch[1], vis_ch[0] + inf_ch[0])
        self.decode2 = ConvBnLeakyRelu2d(vis_ch[0] + inf_ch[0], vis_ch[0])
        self.decode1 = ConvBnTanh2d(vis_ch[0], 1)

    def forward(self, image_vis: Tensor, image_ir: Tensor) -> Tensor:
        vis = self.vis_rgbd2(self.vis_rgbd1(self.vis_conv(image_vis[:, :1])))
        inf = self.inf_rgbd2(self.inf_rgbd1(self.inf_conv(image_ir)))
        x = self.decode4(torch.cat((vis, inf), dim=1))
        return self.decode1(self.decode2(self.decode3(x)))


# -- colour conversions of the official test.py (float32, no clamping) --------------------------------------
def rgb_to_ycrcb(rgb: Tensor) -> Tensor:
    """(N, 3, H, W) RGB -> (N, 3, H, W) channels (Y, Cr, Cb), the official float32 arithmetic.

    The result has the official memory layout, a channels-last view of a (pixels, 3) array. That matters: the
    network's first convolution then runs channels-last, and so does the whole visible branch, whose
    convolution kernels round differently from the contiguous ones.
    """
    n, _, h, w = rgb.shape
    flat = rgb.permute(0, 2, 3, 1).reshape(-1, 3)
    r, g, b = flat[:, 0], flat[:, 1], flat[:, 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cr = (r - y) * 0.713 + 0.5
    cb = (b - y) * 0.564 + 0.5
    ycrcb = torch.stack((y, cr, cb), dim=1)
    return ycrcb.reshape(n, h, w, 3).permute(0, 3, 1, 2)


def ycrcb_to_rgb(ycrcb: Tensor) -> Tensor:
    """(N, 3, H, W) (Y, Cr, Cb) -> RGB as the official code computes it: a (pixels, 3) x (3, 3) matrix product."""
    n, _, h, w = ycrcb.shape
    flat = ycrcb.permute(0, 2, 3, 1).reshape(-1, 3)
    mat = torch.tensor([[1.0, 1.0, 1.0], [1.403, -0.714, 0.0], [0.0, -0.344, 1.773]], device=ycrcb.device)
    bias = torch.tensor([0.0 / 255, -0.5, -0.5], device=ycrcb.device)
    return (flat + bias).mm(mat).reshape(n, h, w, 3).permute(0, 3, 1, 2)


# -- the method -----------------------------------------------------------------------------------------------
class SeAFusion(ZooMethod):
    """SeAFusion with its official pre- and post-processing; the output is RGB.

    Args:
        minmax: stretch the clamped RGB output to 0..255 with its own min and max before truncating, as the
            official ``test.py`` does (default). ``False`` truncates ``255 * clamp(x)`` directly (not official).
    """

    ir_reader: ClassVar[Reader] = "cv2_gray"  # cv2.imread(ir, 0)
    vi_reader: ClassVar[Reader] = "pil_RGB"  # np.array(Image.open(vi)); a grey file converted to R=G=B first
    out_channels: ClassVar[int] = 3

    def __init__(self, minmax: bool = True) -> None:
        super().__init__(minmax=minmax)
        self.minmax = minmax
        self.net = FusionNet(output=1)

    def fuse_uint8(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        """uint8 IR (H, W) and RGB VI (H, W, 3) -> the official uint8 RGB output (H, W, 3)."""
        device = self.device
        vi_f = np.asarray(vi, dtype=np.float32).transpose((2, 0, 1)) / 255.0  # float32 division, as official
        ir_f = np.asarray(ir, dtype=np.float32) / 255.0
        vi_t = torch.from_numpy(np.ascontiguousarray(vi_f))[None].to(device)
        ir_t = torch.from_numpy(ir_f)[None, None].to(device)
        ycrcb = rgb_to_ycrcb(vi_t)
        fused_y = self.net(ycrcb, ir_t)
        rgb = ycrcb_to_rgb(torch.cat((fused_y, ycrcb[:, 1:2], ycrcb[:, 2:]), dim=1))
        rgb = rgb.clamp(0.0, 1.0)
        arr = rgb.cpu().numpy().transpose((0, 2, 3, 1))[0]  # float32 (H, W, 3)
        if self.minmax:
            lo, hi = arr.min(), arr.max()
            if hi == lo:  # the official division would produce NaN; give a black image instead
                return np.zeros(arr.shape, dtype=np.uint8)
            arr = (arr - lo) / (hi - lo)
        return np.uint8(255.0 * arr)


_load = official_loader("net")  # the official state dict of the network


@register_zoo("seafusion", model=SeAFusion,
    pretrained=SEAFUSION_CFG,
    description="SeAFusion (Tang et al., InfFus 2022), official weights and test.py pipeline; RGB output",
)
def seafusion(**kwargs: Any) -> ZooMethod:
    return build_zoo(SeAFusion, "seafusion", SEAFUSION_CFG, _load, **kwargs)
