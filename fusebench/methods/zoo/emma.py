"""EMMA: Equivariant Multi-Modality imAge fusion, run as its official test script runs it.

Paper: Zixiang Zhao, Haowen Bai, Jiangshe Zhang, Yulun Zhang, Kai Zhang, Shuang Xu, Dongdong Chen, Radu Timofte,
Luc Van Gool, "Equivariant Multi-Modality Image Fusion", CVPR 2024.

Official code: ``Zhaozixiang1228/MMIF-EMMA`` @ ``9983ca2f627588cd001ed08e21eadf1ab5c48beb`` (``nets/Ufuser.py``,
``test.py``, ``utils.py``). The repository has no licence file (all rights reserved), so fusebench does not ship
the weights; it downloads ``model/EMMA.pth`` (a plain ``Ufuser`` state dict) from the repository on first use.
``Ai.pth``/``Av.pth`` (Google Drive) are the training-time imaging modules and are not needed for fusion.

The official pipeline (``test.py``), reproduced by :class:`EMMA`:

1. both images through ``image_read_cv2(p, 'GRAY')`` (``cv2.imread`` BGR as float32, float ``cvtColor``,
   ``np.round``), then ``/255`` (float32) and ``torch.FloatTensor``;
2. ``Ufuser(ir, vi)``: a four-level U-Net of Restormer-CNN blocks (channel attention + residual convs) with
   separate IR and VI encoders, fusion blocks per level and a sigmoid output;
3. if H and W are multiples of 32: ``(x - min) / (max - min) * 255`` over the tensor;
4. otherwise **four tiles** of (H - H%32) x (W - W%32): the top-left tile, then the top-right, bottom-left and
   bottom-right tiles, each contributing only the strip (or corner) the earlier tiles did not cover. Each
   tile's sigmoid output is ``* 255`` with no per-tile normalisation; the assembled float32 map gets one
   numpy min-max and ``* 255``;
5. ``skimage.io.imsave``: old scikit-image's ``image_as_uint`` sees a range beyond [0, 1], min-max scales again
   in float64 and rounds (``floor(x * 255 + 0.499999999)``).

Quirks: the network itself only needs sizes divisible by 8, but the script tiles on a 32 grid, so seams are
possible where tiles meet; images smaller than 32 pixels on a side cannot be fused (a tile would be empty);
the output is always stretched to the full 0..255 range. The tile grid is the constructor option
``tile_multiple`` (default 32, the official value; any multiple of 8 works).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from fusebench.methods.zoo._base import ZooMethod, build_zoo, official_loader, register_zoo
from fusebench.methods.zoo._io import Reader, image_as_uint
from fusebench.methods.zoo.cddfuse import BaseFeatureExtraction
from fusebench.pretrained import PretrainedCfg, WeightFile

COMMIT = "9983ca2f627588cd001ed08e21eadf1ab5c48beb"
REPO = "Zhaozixiang1228/MMIF-EMMA"

PRETRAINED = PretrainedCfg(
    files=(WeightFile(url=f"https://github.com/{REPO}/raw/{COMMIT}/model/EMMA.pth", file="EMMA.pth"),),
    license="none",
    paper="Zhao et al., Equivariant Multi-Modality Image Fusion, CVPR 2024",
    origin=f"{REPO}@{COMMIT}",
    notes="The official weights (git blob 46f382475767323b83f3f7f52dc2bed0ac6b7476) could not be downloaded "
          "where this port was written: their sha256 and size are not known here, and the port was checked "
          "against the official code run on a synthetic checkpoint in the official format.",
    extra={"git_blob": "46f382475767323b83f3f7f52dc2bed0ac6b7476"},
)

CHANNELS = (8, 16, 32, 32)


def _conv3(cin: int, cout: int, *, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=bias, padding_mode="reflect")


class ResBlock(nn.Module):
    """Two reflect-padded 3x3 convs with a ReLU between them and an identity shortcut."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv3(in_channels, out_channels, bias=True), nn.ReLU(),
                                  _conv3(out_channels, out_channels, bias=True))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) + x


class LocalFeatureExtraction(nn.Module):
    """The local (CNN) branch: ``num_blocks`` residual blocks."""

    def __init__(self, dim: int = 64, num_blocks: int = 2) -> None:
        super().__init__()
        self.Extraction = nn.Sequential(*[ResBlock(dim, dim) for _ in range(num_blocks)])

    def forward(self, x: Tensor) -> Tensor:
        return self.Extraction(x)


class RestormerCNNBlock(nn.Module):
    """EMMA's basic block: 3x3 embedding, a global (channel-attention) and a local (CNN) branch, 3x3 merge."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.embed = _conv3(in_dim, out_dim)
        self.GlobalFeature = BaseFeatureExtraction(dim=out_dim, num_heads=8, mlp_padding_mode="reflect")
        self.LocalFeature = LocalFeatureExtraction(dim=out_dim)
        self.FFN = _conv3(out_dim * 2, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.embed(x)
        return self.FFN(torch.cat((self.GlobalFeature(x), self.LocalFeature(x)), 1))


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.ReLU())


class Ufuser(nn.Module):
    """EMMA's fusion U-Net ``Ufuser``: IR and VI encoders, per-level fusion, decoder, sigmoid output."""

    def __init__(self) -> None:
        super().__init__()
        c = CHANNELS
        for side in ("V", "I"):
            setattr(self, f"{side}_en_1", RestormerCNNBlock(1, c[0]))
            for lvl in (2, 3, 4):
                setattr(self, f"{side}_en_{lvl}", RestormerCNNBlock(c[lvl - 2], c[lvl - 1]))
        for lvl in (1, 2, 3, 4):
            setattr(self, f"f_{lvl}", RestormerCNNBlock(c[lvl - 1] * 2, c[lvl - 1]))
        for side in ("V", "I"):
            for lvl in (1, 2, 3):
                setattr(self, f"{side}_down{lvl}", _conv3(c[lvl - 1], c[lvl - 1], stride=2))
        self.up4 = _up(c[3], c[2])
        self.up3 = _up(c[2], c[1])
        self.up2 = _up(c[1], c[0])
        self.de_1 = RestormerCNNBlock(c[0] * 2, c[0])
        self.de_2 = RestormerCNNBlock(c[1] * 2, c[1])
        self.de_3 = RestormerCNNBlock(c[2] * 2, c[2])
        self.de_4 = RestormerCNNBlock(c[3], c[3])
        self.last = nn.Sequential(nn.Conv2d(c[0], 1, kernel_size=3, stride=1, padding=1, padding_mode="reflect"),
                                  nn.Sigmoid())

    def _encode(self, x: Tensor, side: str) -> list[Tensor]:
        feats = [getattr(self, f"{side}_en_1")(x)]
        for lvl in (2, 3, 4):
            down = getattr(self, f"{side}_down{lvl - 1}")
            feats.append(getattr(self, f"{side}_en_{lvl}")(down(feats[-1])))
        return feats

    def forward(self, i: Tensor, v: Tensor) -> Tensor:
        ir_feats = self._encode(i, "I")
        vi_feats = self._encode(v, "V")
        f1, f2, f3, f4 = (getattr(self, f"f_{n}")(torch.cat((a, b), 1))
                          for n, a, b in zip((1, 2, 3, 4), ir_feats, vi_feats, strict=True))
        out = self.up4(self.de_4(f4))
        out = self.up3(self.de_3(torch.cat((out, f3), 1)))
        out = self.up2(self.de_2(torch.cat((out, f2), 1)))
        out = self.de_1(torch.cat((out, f1), 1))
        return self.last(out)


class EMMA(ZooMethod):
    """EMMA as its ``test.py`` runs it (tiled on a 32 grid for other sizes); parameters are ``Ufuser``'s."""

    ir_reader: ClassVar[Reader] = "cv2_float_gray_round"
    vi_reader: ClassVar[Reader] = "cv2_float_gray_round"
    out_channels: ClassVar[int] = 1

    def __init__(self, tile_multiple: int = 32) -> None:
        if tile_multiple <= 0 or tile_multiple % 8:
            raise ValueError(f"tile_multiple must be a positive multiple of 8 (the U-Net's 3 downsamplings); "
                             f"got {tile_multiple}")
        super().__init__(tile_multiple=tile_multiple)
        self.tile_multiple = tile_multiple
        self.model = Ufuser()

    @torch.no_grad()
    def fuse_float(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        """The float32 (H, W) map in [0, 255] the official script hands to ``imsave``.

        ``ir``/``vi``: the official reader's float32 grey images (0..255, whole numbers).
        """
        h, w = ir.shape[:2]
        m = self.tile_multiple
        if h < m or w < m:
            raise ValueError(f"EMMA's official tiling needs images of at least {m}x{m} pixels; got {w}x{h} (WxH)")
        dev = self.device
        ir_t = torch.from_numpy(np.ascontiguousarray(ir, dtype=np.float32) / 255)[None, None].to(dev)
        vi_t = torch.from_numpy(np.ascontiguousarray(vi, dtype=np.float32) / 255)[None, None].to(dev)
        h1, w1 = h - h % m, w - w % m
        h2, w2 = h % m, w % m
        if h1 == h and w1 == w:
            out = self.model(ir_t, vi_t)
            out = (out - torch.min(out)) / (torch.max(out) - torch.min(out))
            return np.squeeze((out * 255).cpu().numpy())

        def tile(rows: slice, cols: slice) -> np.ndarray:
            out = self.model(ir_t[:, :, rows, cols], vi_t[:, :, rows, cols])
            return np.squeeze((out * 255).cpu().numpy())

        fused = np.zeros((h, w), dtype=np.float32)
        fused[:h1, :w1] = tile(slice(None, h1), slice(None, w1))
        if w1 != w:
            fused[:h1, -w2:] = tile(slice(None, h1), slice(-w1, None))[:, -w2:]
        if h1 != h:
            fused[-h2:, :w1] = tile(slice(-h1, None), slice(None, w1))[-h2:, :]
        if h1 != h and w1 != w:
            fused[-h2:, -w2:] = tile(slice(-h1, None), slice(-w1, None))[-h2:, -w2:]
        fused = (fused - np.min(fused)) / (np.max(fused) - np.min(fused))
        return fused * 255

    def fuse_uint8(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        """Official output: :meth:`fuse_float`, then old scikit-image ``imsave`` (min-max again, round)."""
        return image_as_uint(self.fuse_float(ir, vi))


_load = official_loader("model")  # the official ``Ufuser`` state dict


@register_zoo("emma", model=EMMA, pretrained=PRETRAINED,
              description="EMMA (CVPR 2024), official fusion network and test pipeline (32-grid tiling)")
def emma(**kwargs: Any) -> EMMA:
    """EMMA with its official weights (``weights=`` a local ``EMMA.pth``, else downloaded)."""
    return build_zoo(EMMA, "emma", PRETRAINED, _load, **kwargs)
