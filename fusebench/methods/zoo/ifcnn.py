"""IFCNN (Zhang, Liu, Sun, Yan, Zhao, Zhang; Information Fusion 2020), IFCNN-MAX as its official script runs it.

Paper: "IFCNN: A general image fusion framework based on convolutional neural network",
doi:10.1016/j.inffus.2019.07.011. Official code: ``uzeful/IFCNN`` @ ``8fe59c2b1553e52acc793986208ca479d134a8da``
(``Code/IFCNN_Main.py`` section 3, dataset ``'IV'``; ``Code/model.py``; ``Code/utils/myDatasets.py``,
``Code/utils/myTransforms.py``). The repository has no licence file (all rights reserved): fusebench downloads
the weights from it and never ships them.

The network (``myIFCNN(fuse_scheme=0)``): each input goes through ``conv1`` (ResNet-101's first 7x7 conv,
re-strided to 1 and unpadded, after a replicate pad of 3) and ``conv2`` (conv-BN-ReLU); the two feature maps
are fused by an elementwise maximum; ``conv3`` (conv-BN-ReLU) and a 1x1 ``conv4`` reconstruct an RGB image.

The official pipeline for infrared-visible images (reproduced by :meth:`IFCNN.fuse_uint8`):

1. ``ImagePair(visible, infrared)``: PIL ``convert('RGB')`` for both (reader ``pil_RGB``), so a grey infrared
   image becomes R=G=B and **a colour visible image stays colour**.
2. ``ToTensor()`` then ``Normalize(mean=[0, 0, 0], std=[1, 1, 1])``: float32 /255, the normalisation an
   identity (the ImageNet statistics belong to the multi-focus setting only).
3. ``model.eval()``; ``model(vi, ir)`` (the MAX fusion makes the order irrelevant).
4. ``denorm`` (identity), ``clamp(0, 1) * 255``, ``.astype('uint8')``: truncation; an (H, W, 3) RGB image.
5. ``cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)`` (OpenCV fixed-point luma), saved as a PNG with PIL.

Quirks:

- ``conv1`` is borrowed from an ImageNet ``resnet101(pretrained=True)`` only for its shape; the checkpoint
  overwrites it. Here it is built directly as ``Conv2d(3, 64, 7, stride=1, padding=0, bias=False)``, with no
  torchvision download.
- The checkpoint predates BatchNorm's ``num_batches_tracked`` buffers (PyTorch < 0.4.1); they are not
  required from the file (PyTorch's own loader accepts such files under ``strict=True`` too).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusebench.methods.zoo._base import ZooMethod, build_zoo, official_loader, register_zoo
from fusebench.pretrained import PretrainedCfg, WeightFile

__all__ = ["IFCNN", "PRETRAINED", "IFCNNModel"]

ORIGIN_COMMIT = "8fe59c2b1553e52acc793986208ca479d134a8da"

PRETRAINED = PretrainedCfg(
    files=(
        WeightFile(
            url=f"https://github.com/uzeful/IFCNN/raw/{ORIGIN_COMMIT}/Code/snapshots/IFCNN-MAX.pth",
            file="IFCNN-MAX.pth",
            sha256="6022b44c88a2f0367ba9b08fcdf0d663745d9a966fca0ee1f41867797b6ff53f",
            size=337_094,
        ),
    ),
    license="none",
    paper="doi:10.1016/j.inffus.2019.07.011",
    origin=f"uzeful/IFCNN@{ORIGIN_COMMIT}",
    notes=(
        "IFCNN_Main.py, dataset 'IV': PIL RGB /255 for both (colour VI stays colour), identity normalisation, "
        "myIFCNN(fuse_scheme=0) in eval, clamp(0,1)*255 truncated, cv2 RGB2GRAY."
    ),
)

FUSE_SCHEMES = {0: "max", 1: "sum", 2: "mean"}


# -- the network (official parameter names: Code/model.py) ----------------------------------------------------
class ConvBlock(nn.Module):
    """Official ``ConvBlock``: replicate pad 1, 3x3 conv without bias, BatchNorm, ReLU."""

    def __init__(self, inplane: int, outplane: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(inplane, outplane, kernel_size=3, padding=0, stride=1, bias=False)
        self.bn = nn.BatchNorm2d(outplane)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(F.pad(x, (1, 1, 1, 1), "replicate"))))


class IFCNNModel(nn.Module):
    """Official ``IFCNN``: shared feature extraction per input, elementwise fusion, reconstruction to RGB.

    Args:
        fuse_scheme: 0 = MAX (the IFCNN-MAX weights), 1 = SUM, 2 = MEAN, as in the official code.
    """

    def __init__(self, fuse_scheme: int = 0) -> None:
        super().__init__()
        self.fuse_scheme = fuse_scheme
        self.conv2 = ConvBlock(64, 64)
        self.conv3 = ConvBlock(64, 64)
        self.conv4 = nn.Conv2d(64, 3, kernel_size=1, padding=0, stride=1, bias=True)
        # resnet101's conv1 (7x7, 3 -> 64, no bias) as the official model re-strides and un-pads it
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=1, padding=0, bias=False)

    def forward(self, *tensors: Tensor) -> Tensor:
        feats = [self.conv2(self.conv1(F.pad(t, (3, 3, 3, 3), "replicate"))) for t in tensors]
        out = feats[0]
        if self.fuse_scheme in (1, 2):
            for f in feats[1:]:
                out = out + f
            if self.fuse_scheme == 2:
                out = out / len(feats)
        else:  # 0 and any other value: MAX, as the official code
            for f in feats[1:]:
                out = torch.max(out, f)
        return self.conv4(self.conv3(out))


# -- the method -------------------------------------------------------------------------------------------------
class IFCNN(ZooMethod):
    """IFCNN-MAX on its official weights, with the official infrared-visible reading and writing."""

    ir_reader = "pil_RGB"
    vi_reader = "pil_RGB"
    out_channels = 1

    def __init__(self) -> None:
        super().__init__()
        self.net = IFCNNModel(fuse_scheme=0)

    def _to_input(self, img: np.ndarray) -> Tensor:
        """uint8 (H, W, 3) RGB -> float32 (1, 3, H, W) in [0, 1] on the model's device (``ToTensor``)."""
        x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.uint8)).to(self.device)
        return x.permute(2, 0, 1).float().div(255)[None]

    def fuse_uint8(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        out = self.net(self._to_input(vi), self._to_input(ir))  # official order: (visible, infrared)
        out = out[0].clamp(0, 1) * 255
        rgb = out.float().cpu().numpy().astype(np.uint8).transpose(1, 2, 0)  # truncation
        return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


# the checkpoint predates BatchNorm's num_batches_tracked (PyTorch < 0.4.1)
_LOAD = official_loader("net", tolerate_missing=("num_batches_tracked",))


@register_zoo("ifcnn", model=IFCNN, pretrained=PRETRAINED,
    description="IFCNN-MAX (Information Fusion 2020), official weights, official IV pipeline (RGB in, grey out)",
)
def ifcnn(weights: str | Path | None = None, random_init: bool = False, **options: object) -> IFCNN:
    return build_zoo(IFCNN, "ifcnn", PRETRAINED, _LOAD, weights=weights, random_init=random_init,
                     **options)
