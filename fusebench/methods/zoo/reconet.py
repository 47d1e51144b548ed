"""ReCoNet (Huang et al., ECCV 2022), v0 "archive" parameters, run as its official ``archive/fuse.py`` runs it.

Paper: "ReCoNet: Recurrent Correction Network for Fast and Efficient Multi-modality Image Fusion". Official
repository ``dlut-dimt/ReCoNet`` @ ``0870f5f37852ace85850d9fd2d4570eb57682d22``: ``archive/fuse.py`` and
``archive/model.py`` (``Fuser(loop_num=3, feather_num=64)``), weights ``archive/params.pth``. Licence: MIT,
(c) 2022 Zhanbo Huang.

The official pipeline (``python fuse.py --ir I --vi V --dst D``, defaults ``--loop 3 --dim 64``):

1. IR and VI: ``cv2.imread(p, IMREAD_GRAYSCALE) / 255.0`` (float64), then ``FloatTensor``. On a colour VI this is
   libjpeg's Y plane (JPEG) or libpng's ``rgb_to_gray`` (PNG), not the usual BT.601 luma.
2. ``net.eval()``; ``im_f, _, _ = net([ir, vi])``: ``im_f[0] = max(ir, vi)``, then ``loop_num`` recurrent
   corrections, each from spatial attention on IR and VI, three dilated conv-BN-ReLU branches and a conv-BN-Tanh
   fusion layer. The script keeps ``im_f[-1]``.
3. ``tensor_to_image(x) * 255.`` (float32, **no clamp**) to ``cv2.imwrite``: OpenCV rounds half to even and
   saturates, so the negative part of the ``tanh`` output becomes 0.

Quirks: the zero clipping is large on dark scenes (79 % of the pixels of MSRS ``00004N`` are 0). The official
file lists come from unsorted ``glob`` and are zipped with the names asserted equal; here a pair is given
explicitly. Options ``loop_num`` and ``feather_num`` are ``fuse.py --loop --dim`` (the weights need 3 and 64).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from fusebench.methods.zoo._base import ZooMethod, build_zoo, official_loader, register_zoo
from fusebench.methods.zoo._io import Reader, cv2_round_u8
from fusebench.pretrained import PretrainedCfg, WeightFile

__all__ = ["RECONET_CFG", "Fuser", "ReCoNet"]

RECONET_CFG = PretrainedCfg(
    files=(
        WeightFile(
            url="https://github.com/dlut-dimt/ReCoNet/raw/0870f5f37852ace85850d9fd2d4570eb57682d22/archive/params.pth",
            file="params.pth",
            sha256="d4f013c85e48d10d4f6c8b6574f16e4fe9cb5df48c77fc17c1e524f04bb3c290",
            size=40_395,
        ),
    ),
    license="MIT",
    paper="Huang et al., ReCoNet: Recurrent Correction Network for Fast and Efficient Multi-modality Image "
    "Fusion, ECCV 2022",
    origin="dlut-dimt/ReCoNet@0870f5f37852ace85850d9fd2d4570eb57682d22 (archive/fuse.py, archive/model.py)",
    notes="v0 'archive' parameters; MIT, (c) 2022 Zhanbo Huang. Both inputs read with cv2 IMREAD_GRAYSCALE; the "
    "tanh output is written without a clamp, so negative values become 0.",
)


# -- network (official module and parameter names) -----------------------------------------------------------
def _conv_bn_relu(in_ch: int, out_ch: int, dilation: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, 1, dilation, dilation), nn.BatchNorm2d(out_ch), nn.ReLU())


class Fuser(nn.Module):
    """ReCoNet v0's recurrent fusion network.

    ``forward((ir, vi))`` returns the list of fused estimates (``max(ir, vi)`` then one per loop) and the
    attention maps of both inputs per loop, as the official module does.
    """

    def __init__(self, loop_num: int = 3, feather_num: int = 64) -> None:
        super().__init__()
        self.loop_num = loop_num
        # spatial attention from (channel max, channel mean) of [input, current estimate]
        self.att_a_conv = nn.Conv2d(2, 1, 3, padding=1, bias=False)
        self.att_b_conv = nn.Conv2d(2, 1, 3, padding=1, bias=False)
        # three dilation rates over [attended a, estimate, attended b]
        self.dil_conv_1 = _conv_bn_relu(3, feather_num, 1)
        self.dil_conv_2 = _conv_bn_relu(3, feather_num, 2)
        self.dil_conv_3 = _conv_bn_relu(3, feather_num, 3)
        self.fus_conv = nn.Sequential(nn.Conv2d(3 * feather_num, 1, 3, padding=1), nn.BatchNorm2d(1), nn.Tanh())

    def forward(self, im_p: tuple[Tensor, Tensor] | list[Tensor]) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        im_a, im_b = im_p
        im_f = [torch.max(im_a, im_b)]
        att_a: list[Tensor] = []
        att_b: list[Tensor] = []
        for _ in range(self.loop_num):
            f, a, b = self._correct(im_a, im_b, im_f[-1])
            im_f.append(f)
            att_a.append(a)
            att_b.append(b)
        return im_f, att_a, att_b

    def _correct(self, im_a: Tensor, im_b: Tensor, im_f: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One recurrent step: attention on both inputs, dilated features, a new estimate."""
        att_a = self._attention(self.att_a_conv, im_a, im_f)
        att_b = self._attention(self.att_b_conv, im_b, im_f)
        im_cat = torch.cat([im_a * att_a, im_f, im_b * att_b], dim=1)
        feats = torch.cat([self.dil_conv_1(im_cat), self.dil_conv_2(im_cat), self.dil_conv_3(im_cat)], dim=1)
        return self.fus_conv(feats), att_a, att_b

    @staticmethod
    def _attention(att_conv: nn.Conv2d, im_x: Tensor, im_f: Tensor) -> Tensor:
        x = torch.cat([im_x, im_f], dim=1)
        x_max, _ = torch.max(x, dim=1, keepdim=True)
        x_avg = torch.mean(x, dim=1, keepdim=True)
        return torch.sigmoid(att_conv(torch.cat([x_max, x_avg], dim=1)))


# -- the method -----------------------------------------------------------------------------------------------
class ReCoNet(ZooMethod):
    """ReCoNet v0 with the official ``archive/fuse.py`` pre- and post-processing (grey output).

    Args:
        loop_num, feather_num: ``fuse.py --loop --dim`` (the official weights need 3 and 64).
    """

    ir_reader: ClassVar[Reader] = "cv2_gray"  # cv2.imread(p, IMREAD_GRAYSCALE) for both inputs
    vi_reader: ClassVar[Reader] = "cv2_gray"
    out_channels: ClassVar[int] = 1

    def __init__(self, loop_num: int = 3, feather_num: int = 64) -> None:
        super().__init__(loop_num=loop_num, feather_num=feather_num)
        self.net = Fuser(loop_num=loop_num, feather_num=feather_num)

    def fuse_uint8(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        """uint8 grey IR and VI (H, W) -> the official uint8 output (H, W)."""
        device = self.device
        ir_t = torch.from_numpy(ir / 255.0).float()[None, None].to(device)  # float64 division, then float32
        vi_t = torch.from_numpy(vi / 255.0).float()[None, None].to(device)
        im_f, _, _ = self.net((ir_t, vi_t))
        return cv2_round_u8(im_f[-1][0, 0].cpu().numpy() * 255.0)  # no clamp: cv2.imwrite saturates


_load = official_loader("net")  # the official state dict of the network


@register_zoo("reconet", model=ReCoNet,
    pretrained=RECONET_CFG,
    description="ReCoNet (Huang et al., ECCV 2022), v0 archive weights, official archive/fuse.py pipeline",
)
def reconet(**kwargs: Any) -> ZooMethod:
    return build_zoo(ReCoNet, "reconet", RECONET_CFG, _load, **kwargs)
