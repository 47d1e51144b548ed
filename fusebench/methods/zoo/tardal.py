"""TarDAL (Liu et al., CVPR 2022), run as its official ``fuse.py`` (before v1.0) runs it.

Paper: "Target-aware Dual Adversarial Learning and a Multi-scenario Multi-Modality Benchmark to Fuse Infrared and
Visible for Object Detection". Official repository ``JinyuanLiu-CV/TarDAL`` @
``1d1d1e99b96e7de0cd4e4f57aa0d321e5b5e2727`` (the commit that uploaded ``weights/*.pt``): ``fuse.py``,
``modules/generator.py`` (``Generator(dim=32, depth=3)``), ``pipeline/eval.py``, ``utils/image_pair.py``; the same
code at ``8ef276f6`` (last commit with the weights). No licence file at these commits (GPL-3.0 came with v1.0,
which removed these weights and this code), so all rights reserved.

Three weight files, three registered methods: ``tardal`` (``tardal.pt``, run as ``fuse.py`` runs by default),
``tardal-plus`` (``tardal+.pt``) and ``tardal-plusplus`` (``tardal++.pt``), which TarDAL's README runs with
``--eval``.

The official pipeline (``python fuse.py --src S --dst D --weights weights/tardal.pt``):

1. IR: ``cv2.imread(ir, IMREAD_GRAYSCALE) / 255.`` (float64) then ``.float()``; VI: ``cv2.imread(vi,
   IMREAD_COLOR)``, ``cv2.cvtColor(BGR2GRAY)`` (uint8 fixed-point luma), ``/ 255.``, ``.float()``.
2. ``Generator(ir, vi)``: ``cat([ir, vi])``, conv-BN-ReLU encoder, three densely connected conv-BN-ReLU layers,
   four fusion convolutions ending in ``Tanh``; then ``.clip(0, 1)``.
3. ``tensor_to_image(fus) * 255.`` (float32) to ``cv2.imwrite``: OpenCV rounds half to even and saturates.

Quirk: ``net.eval()`` is only called with ``--eval``. By default the BatchNorm layers run in train mode under
``no_grad``, i.e. each image is normalised with its own batch statistics (the running statistics are updated but
never used). Option ``eval_bn`` (default ``False`` for ``tardal``, ``True`` for ``tardal-plus`` and
``tardal-plusplus``) switches to the running statistics. The two differ by 20-55 grey levels on average. Here
the batch statistics are computed explicitly, so the runner's ``.eval()`` does not change them, and the stored
running statistics are never modified. ``--color`` (colourise with the VI's CrCb) is not reproduced.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusebench.methods.zoo._base import ZooMethod, build_zoo, official_loader, register_zoo
from fusebench.methods.zoo._io import Reader, cv2_round_u8
from fusebench.pretrained import PretrainedCfg, WeightFile

__all__ = ["TARDAL_CFGS", "Generator", "PerImageBatchNorm2d", "TarDAL"]

_REPO = "JinyuanLiu-CV/TarDAL"
_WEIGHTS_COMMIT = "8ef276f6559b4aa4c696f77b7c623db3148e64d8"
_PAPER = ("Liu et al., Target-aware Dual Adversarial Learning and a Multi-scenario Multi-Modality Benchmark to "
          "Fuse Infrared and Visible for Object Detection, CVPR 2022")
_ORIGIN = (f"{_REPO}@1d1d1e99b96e7de0cd4e4f57aa0d321e5b5e2727 (fuse.py, modules/generator.py, pipeline/eval.py, "
           "utils/image_pair.py; identical at 8ef276f6 except type hints)")


def _cfg(file: str, url_name: str, sha256: str, size: int, notes: str) -> PretrainedCfg:
    return PretrainedCfg(
        files=(WeightFile(url=f"https://github.com/{_REPO}/raw/{_WEIGHTS_COMMIT}/weights/{url_name}", file=file,
                          sha256=sha256, size=size),),
        license="none",
        paper=_PAPER,
        origin=_ORIGIN,
        notes=notes + " No licence file at this commit (GPL-3.0 was added with v1.0, which removed the weights).",
    )


#: registered name -> pretrained config
TARDAL_CFGS: dict[str, PretrainedCfg] = {
    "tardal": _cfg(
        "tardal.pt", "tardal.pt", "e0fa61e25cffa9fb14ff17b47ea7ba237a6e8c6f37e1b9b115d63354ff0f13e1", 1_203_451,
        "fuse.py defaults: BatchNorm in train mode (per-image statistics); eval_bn=True is fuse.py --eval.",
    ),
    "tardal-plus": _cfg(
        "tardal+.pt", "tardal%2B.pt", "cff3756548b511e3e415616debc557cdc85b3bb19393ca158cac8d08f232897c",
        1_201_819, "Run with --eval as TarDAL's README does (eval_bn=True; eval_bn=False is fuse.py's default).",
    ),
    "tardal-plusplus": _cfg(
        "tardal++.pt", "tardal%2B%2B.pt", "7009d125e36db043d6918d9358e10c6dca7fdf2dd08ada09c5ecd294f45f98c5",
        1_201_819, "Run with --eval as TarDAL's README does (eval_bn=True; eval_bn=False is fuse.py's default).",
    ),
}


# -- network (official module and parameter names) -----------------------------------------------------------
class PerImageBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose statistics are chosen by ``batch_stats``, not by ``self.training``.

    ``batch_stats=True`` normalises with the input's own statistics (what the official script does, because it
    never calls ``.eval()``) without touching the running statistics; ``False`` uses the running statistics.
    """

    def __init__(self, num_features: int, batch_stats: bool = True) -> None:
        super().__init__(num_features)
        self.batch_stats = batch_stats

    def forward(self, x: Tensor) -> Tensor:
        if self.batch_stats:
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


def _conv(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, (3, 3), (1, 1), 1)


class Generator(nn.Module):
    """TarDAL's fusion generator: ``forward(ir, vi)`` -> ``tanh`` output (N, 1, H, W)."""

    def __init__(self, dim: int = 32, depth: int = 3, batch_stats: bool = True) -> None:
        super().__init__()
        self.depth = depth

        def bn(ch: int) -> PerImageBatchNorm2d:
            return PerImageBatchNorm2d(ch, batch_stats=batch_stats)

        self.encoder = nn.Sequential(_conv(2, dim), bn(dim), nn.ReLU())
        self.dense = nn.ModuleList(
            nn.Sequential(_conv(dim * (i + 1), dim), bn(dim), nn.ReLU()) for i in range(depth)
        )
        self.fuse = nn.Sequential(
            nn.Sequential(_conv(dim * (depth + 1), dim * 4), nn.ReLU()),
            nn.Sequential(_conv(dim * 4, dim * 2), bn(dim * 2), nn.ReLU()),
            nn.Sequential(_conv(dim * 2, dim), bn(dim), nn.ReLU()),
            nn.Sequential(_conv(dim, 1), nn.Tanh()),
        )

    def forward(self, ir: Tensor, vi: Tensor) -> Tensor:
        x = self.encoder(torch.cat([ir, vi], dim=1))
        for layer in self.dense:
            x = torch.cat([x, layer(x)], dim=1)
        return self.fuse(x)


# -- the method -----------------------------------------------------------------------------------------------
class TarDAL(ZooMethod):
    """TarDAL's generator with the official ``fuse.py`` pre- and post-processing (grey output).

    Args:
        eval_bn: BatchNorm with the running statistics, i.e. ``fuse.py --eval``. ``False`` (``fuse.py``'s
            default) normalises each image with its own statistics, whatever ``.eval()``/``.train()`` say.
        dim, depth: ``fuse.py --dim --depth`` (the official weights need 32 and 3).
    """

    ir_reader: ClassVar[Reader] = "cv2_gray"  # cv2.imread(ir, IMREAD_GRAYSCALE)
    vi_reader: ClassVar[Reader] = "cv2_bgr2gray"  # cv2.imread(vi, IMREAD_COLOR) then cvtColor(BGR2GRAY)
    out_channels: ClassVar[int] = 1

    def __init__(self, eval_bn: bool = False, dim: int = 32, depth: int = 3) -> None:
        super().__init__(eval_bn=eval_bn, dim=dim, depth=depth)
        self.eval_bn = eval_bn
        self.net = Generator(dim=dim, depth=depth, batch_stats=not eval_bn)

    def fuse_uint8(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        """uint8 grey IR and VI (H, W) -> the official uint8 output (H, W)."""
        device = self.device
        ir_t = torch.from_numpy(ir / 255.0).float()[None, None].to(device)  # float64 division, then float32
        vi_t = torch.from_numpy(vi / 255.0).float()[None, None].to(device)
        fus = self.net(ir_t, vi_t).clip(0.0, 1.0)
        return cv2_round_u8(fus[0, 0].cpu().numpy() * 255.0)  # float32, then cv2.imwrite's rounding


_load = official_loader("net")  # the official state dict of the generator


@register_zoo("tardal", model=TarDAL,
    pretrained=TARDAL_CFGS["tardal"],
    description="TarDAL (Liu et al., CVPR 2022), tardal.pt, official fuse.py pipeline (BatchNorm in train mode)",
)
def tardal(eval_bn: bool = False, **kwargs: Any) -> ZooMethod:
    return build_zoo(TarDAL, "tardal", TARDAL_CFGS["tardal"], _load, eval_bn=eval_bn, **kwargs)


@register_zoo("tardal-plus", model=TarDAL,
    pretrained=TARDAL_CFGS["tardal-plus"],
    description="TarDAL (Liu et al., CVPR 2022), tardal+.pt, official fuse.py --eval",
)
def tardal_plus(eval_bn: bool = True, **kwargs: Any) -> ZooMethod:
    return build_zoo(TarDAL, "tardal-plus", TARDAL_CFGS["tardal-plus"], _load, eval_bn=eval_bn, **kwargs)


@register_zoo("tardal-plusplus", model=TarDAL,
    pretrained=TARDAL_CFGS["tardal-plusplus"],
    description="TarDAL (Liu et al., CVPR 2022), tardal++.pt, official fuse.py --eval",
)
def tardal_plusplus(eval_bn: bool = True, **kwargs: Any) -> ZooMethod:
    return build_zoo(TarDAL, "tardal-plusplus", TARDAL_CFGS["tardal-plusplus"], _load, eval_bn=eval_bn, **kwargs)
