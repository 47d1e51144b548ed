"""DIDFuse: deep image decomposition for infrared and visible image fusion, run as its official test script runs it.

Paper: Z. Zhao, S. Xu, C. Zhang, J. Liu, J. Zhang, P. Li, "DIDFuse: Deep Image Decomposition for Infrared
and Visible Image Fusion", IJCAI 2020. Official code: ``Zhaozixiang1228/IVIF-DIDFuse`` @
``5f287300dce7cbc90b9e08e6872455af6baa279f`` (``test.py``, ``utils_didfuse.py``, ``DIDFuse.py``). The
repository has no licence file: all rights reserved, so fusebench downloads the weights from the authors and
never redistributes them.

The official pipeline (``test.py`` as written: ``Test_data_TNO``, ``addition_mode='Sum'``):

1. ``PIL.Image.open`` then ``np.array(img, 'float32') / 255``, shaped (1, 1, H, W). The script expects grey
   files; colour files are converted with PIL ``convert('L')`` first (reader ``pil_L``).
2. Encoder and decoder in eval mode (BatchNorm uses its running statistics). The encoder maps each image to
   four feature maps (two shallow ones, a base and a detail map).
3. The IR and VI feature maps are summed pairwise (``'Sum'``: a sum, not an average) and decoded; the decoder
   ends in BatchNorm and a sigmoid.
4. ``skimage.io.imsave`` of the [0, 1] float map: ``floor(x*255 + 0.499999999)``, i.e. rounding.

Quirks, as constructor options whose default is the official behaviour:

- ``addition_mode``: ``"sum"`` (official), ``"average"`` or ``"l1_norm"``, the other two branches of
  ``Test_fusion``. The official ``l1_norm`` box filter is a full 64->64 convolution with a constant kernel, so
  its activity map sums |features| over *all* channels of the 3x3 window (divided by 9), not per channel; it is
  reproduced as such.
- The official weights are two files (encoder and decoder), each a dict ``{'weight': state_dict, 'epoch': int}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusebench.methods.zoo._base import ZooMethod, build_zoo, official_loader, register_zoo
from fusebench.methods.zoo._io import image_as_uint
from fusebench.pretrained import PretrainedCfg, WeightFile

_COMMIT = "5f287300dce7cbc90b9e08e6872455af6baa279f"
_RAW = f"https://github.com/Zhaozixiang1228/IVIF-DIDFuse/raw/{_COMMIT}/Models"

PRETRAINED = PretrainedCfg(
    files=(
        WeightFile(
            url=f"{_RAW}/Encoder_weight_IJCAI.pkl",
            file="Encoder_weight_IJCAI.pkl",
            sha256="4d84a4e64e58469d3d4591f83c6683ead3e422498519db99bb617cb29d268471",
            size=454_838,
        ),
        WeightFile(
            url=f"{_RAW}/Decoder_weight_IJCAI.pkl",
            file="Decoder_weight_IJCAI.pkl",
            sha256="c6974e2a7c66ab579a77bacb086023237a229e769d459783bad8ff43e52e9986",
            size=600_772,
        ),
    ),
    license="none",
    paper="Zhao et al., DIDFuse: Deep Image Decomposition for Infrared and Visible Image Fusion, IJCAI 2020",
    origin=f"Zhaozixiang1228/IVIF-DIDFuse@{_COMMIT}",
    notes="Two files, each a dict {'weight': state_dict, 'epoch': 120}; the official test script sums the IR "
    "and VI features ('Sum') and writes the sigmoid output with skimage (rounding).",
)

CHANNELS = 64
AdditionMode = Literal["sum", "average", "l1_norm"]


class _Cov(nn.Module):
    """One official ``CovN`` block: [ReflectionPad] Conv3x3 - BN - activation, held as attribute ``name``.

    The official keys are ``covN.covN.<i>.*``: this module is the outer ``covN``, its Sequential the inner one.
    """

    def __init__(self, name: str, in_ch: int, out_ch: int, act: nn.Module, *, reflect: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = (
            [nn.ReflectionPad2d(1), nn.Conv2d(in_ch, out_ch, 3, padding=0)]
            if reflect
            else [nn.Conv2d(in_ch, out_ch, 3, padding=1)]
        )
        self._name = name
        self.add_module(name, nn.Sequential(*layers, nn.BatchNorm2d(out_ch), act))

    def forward(self, x: Tensor) -> Tensor:
        return getattr(self, self._name)(x)


class DIDFuseEncoder(nn.Module):
    """``AE_Encoder``: image (N, 1, H, W) -> (shallow 1, shallow 2, base, detail), 64 channels each."""

    def __init__(self) -> None:
        super().__init__()
        self.cov1 = _Cov("cov1", 1, CHANNELS, nn.PReLU(), reflect=True)
        self.cov2 = _Cov("cov2", CHANNELS, CHANNELS, nn.PReLU(), reflect=False)
        self.cov3 = _Cov("cov3", CHANNELS, CHANNELS, nn.Tanh(), reflect=False)
        self.cov4 = _Cov("cov4", CHANNELS, CHANNELS, nn.Tanh(), reflect=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        f1 = self.cov1(x)
        f2 = self.cov2(f1)
        return f1, f2, self.cov3(f2), self.cov4(f2)


class DIDFuseDecoder(nn.Module):
    """``AE_Decoder``: (shallow 1, shallow 2, base, detail) -> image in (0, 1) through BN and a sigmoid."""

    def __init__(self) -> None:
        super().__init__()
        self.cov5 = _Cov("cov5", 2 * CHANNELS, CHANNELS, nn.PReLU(), reflect=False)
        self.cov6 = _Cov("cov6", 2 * CHANNELS, CHANNELS, nn.PReLU(), reflect=False)
        self.cov7 = _Cov("cov7", 2 * CHANNELS, 1, nn.Sigmoid(), reflect=True)

    def forward(self, f1: Tensor, f2: Tensor, base: Tensor, detail: Tensor) -> Tensor:
        out = self.cov5(torch.cat([base, detail], 1))
        out = self.cov6(torch.cat([out, f2], 1))
        return self.cov7(torch.cat([out, f1], 1))


def l1_addition(a: Tensor, b: Tensor, window: int = 1) -> Tensor:
    """The official ``l1_addition``: weights from a box-filtered |feature| activity, summed over all channels."""
    k = 2 * window + 1
    c = a.shape[1]
    kernel = torch.full((c, c, k, k), 1.0 / k**2, dtype=torch.float32, device=a.device)
    act_a = F.conv2d(a.abs(), kernel, padding=window)
    act_b = F.conv2d(b.abs(), kernel, padding=window)
    return act_a / (act_a + act_b) * a + act_b / (act_a + act_b) * b


class DIDFuse(ZooMethod):
    """DIDFuse (IJCAI 2020) with the official encoder/decoder weights and test pipeline."""

    ir_reader = "pil_L"
    vi_reader = "pil_L"
    out_channels = 1

    def __init__(self, addition_mode: AdditionMode = "sum") -> None:
        super().__init__()
        if addition_mode not in ("sum", "average", "l1_norm"):
            raise ValueError(f"addition_mode must be 'sum', 'average' or 'l1_norm'; got {addition_mode!r}")
        self.addition_mode = addition_mode
        self.encoder = DIDFuseEncoder()
        self.decoder = DIDFuseDecoder()

    def _combine(self, a: Tensor, b: Tensor) -> Tensor:
        if self.addition_mode == "sum":
            return a + b
        if self.addition_mode == "average":
            return (a + b) / 2
        return l1_addition(a, b)

    @torch.no_grad()
    def fuse_float(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        """The decoder's sigmoid output (H, W) float32 in [0, 1], before the 8-bit writer."""
        tensors = [torch.from_numpy(np.asarray(x, dtype=np.float32) / 255)[None, None].to(self.device) for x in (ir, vi)]
        feats_ir = self.encoder(tensors[0])
        feats_vi = self.encoder(tensors[1])
        f1, f2, base, detail = (self._combine(a, b) for a, b in zip(feats_ir, feats_vi, strict=True))
        out = self.decoder(f1, f2, base, detail)
        return out[0, 0].float().cpu().numpy()

    def fuse_uint8(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        return image_as_uint(self.fuse_float(ir, vi))


_load = official_loader("encoder", "decoder", key="weight")


@register_zoo("didfuse", model=DIDFuse,
    pretrained=PRETRAINED,
    description="DIDFuse (IJCAI 2020), official weights and test pipeline (feature sum, sigmoid, rounding)",
)
def didfuse(weights: str | Path | None = None, random_init: bool = False, **options: object) -> ZooMethod:
    return build_zoo(DIDFuse, "didfuse", PRETRAINED, _load, weights=weights, random_init=random_init, **options)
