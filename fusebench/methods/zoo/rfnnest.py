"""RFN-Nest: a nest-connection auto-encoder with residual fusion networks, run as its official test script runs it.

Paper: H. Li, X.-J. Wu, J. Kittler, "RFN-Nest: An end-to-end residual fusion network for infrared and visible
images", Information Fusion 73, 2021. Official code: ``hli1221/imagefusion-rfn-nest`` @
``76e4e0500a3d818068f31942d7d5ed874c36c37b`` (``test_21pairs.py``, ``net.py``, ``utils.py``,
``args_fusion.py``). The repository has no licence file: all rights reserved, so fusebench downloads the
weights from the authors and never redistributes them.

The official pipeline (``alpha_list=[700]``, ``w_all_list=[[6.0, 3.0]]``, ``fs_type='res'``,
``use_strategy=False``, ``flag_img=False``):

1. ``scipy.misc.imread(p, mode='L')`` (PIL ``convert('L')``) as float 0..255, **not** normalised.
2. If H > 512 or W > 512, four overlapping crops ``[0:hc+3, 0:wc+3]``, ``[0:hc+3, wc-2:W]``,
   ``[hc-2:H, 0:wc+3]``, ``[hc-2:H, wc-2:W]`` (hc = H//2, wc = W//2) are fused separately and stitched by
   accumulating them in that order and dividing by the overlap count; otherwise the whole image is fused.
3. ``NestFuse_light2_nodense([64,112,160,208,256], 1, 1, deepsupervision=False)``: a four-scale encoder for
   each image; ``Fusion_network(nb_filter, 'res')`` fuses each scale with a residual block; ``decoder_eval``
   decodes through nest connections, upsampling by nearest x2 and reflection-padding to the skip size (left =
   d//2, right = d - d//2). The last layer is a 1x1 ``ConvLayer`` *with* a ReLU (``is_last=False``).
4. ``save_image_test``, ``args.cuda=1`` branch: no clamp, ``(x - min) / (max - min + 1e-5) * 255`` in float32,
   then ``.astype('uint8')`` (truncation), saved with ``scipy.misc.imsave``. The eps is below float32's
   resolution for large ranges, so the maximum can still reach 255.

Quirks, as constructor options whose default is the official behaviour:

- ``crop_large`` (True) and ``crop_threshold`` (512): the 4-crop path for images larger than 512 px on a side.
- ``minmax_eps`` (1e-5): the eps of the final min-max.
- ``clamp_before_minmax`` (False): the ``args.cuda=0`` branch of ``save_image_test`` clamps to [0, 255] before
  the min-max; the official run takes the cuda branch.
- ``if lef_right%2 is 0.0`` in ``UpsampleReshape_eval`` is never true, but both branches pad the same.
- The weights are two legacy (PyTorch 1.5) state_dicts published inside zip archives (``models/nestfuse.zip``,
  ``models/rfn_twostage.zip``); the member paths inside the archives are inferred from the scripts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusebench.methods.zoo._base import ZooMethod, build_zoo, official_loader, register_zoo
from fusebench.methods.zoo.densefuse import ConvLayer  # the same author's layer (net.py of both ports)
from fusebench.pretrained import PretrainedCfg, WeightFile

_COMMIT = "76e4e0500a3d818068f31942d7d5ed874c36c37b"
_RAW = f"https://github.com/hli1221/imagefusion-rfn-nest/raw/{_COMMIT}/models"
NEST_FILE = "nestfuse_gray_1e2.model"
RFN_FILE = "Final_epoch_2_alpha_700_wir_6.0_wvi_3.0_ssim_vi.model"
NB_FILTER = (64, 112, 160, 208, 256)

PRETRAINED = PretrainedCfg(
    files=(
        WeightFile(url=f"{_RAW}/nestfuse.zip", file=NEST_FILE, sha256=None, size=None, member=NEST_FILE),
        WeightFile(url=f"{_RAW}/rfn_twostage.zip", file=RFN_FILE, sha256=None, size=None, member=f"6.0/{RFN_FILE}"),
    ),
    license="none",
    paper="Li, Wu & Kittler, RFN-Nest: An end-to-end residual fusion network for infrared and visible images, "
    "Information Fusion 2021",
    origin=f"hli1221/imagefusion-rfn-nest@{_COMMIT}",
    notes="Two legacy (PyTorch 1.5) state_dicts inside zip archives (git blobs 25848abd, 9e36a34e); archive "
    "sizes and sha256 unknown, member paths inferred from args_fusion.py and test_21pairs.py. Verified here "
    "only on a synthetic checkpoint.",
)


class DenseBlockLight(nn.Module):
    """``DenseBlock_light``: a 3x3 ConvLayer to half the input channels, then a 1x1 ConvLayer."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3) -> None:
        super().__init__()
        mid = in_ch // 2
        self.denseblock = nn.Sequential(ConvLayer(in_ch, mid, kernel_size), ConvLayer(mid, out_ch, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.denseblock(x)


def upsample_to(skip: Tensor, x: Tensor) -> Tensor:
    """``UpsampleReshape_eval``: nearest x2, then reflection-pad to ``skip``'s size (left d//2, right the rest)."""
    x = F.interpolate(x, scale_factor=2, mode="nearest")
    dh, dw = skip.shape[2] - x.shape[2], skip.shape[3] - x.shape[3]
    if dh or dw:
        x = F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2), mode="reflect")
    return x


class NestFuseNet(nn.Module):
    """``NestFuse_light2_nodense(nb_filter, 1, 1, deepsupervision=False)``: encoder and nest-connected decoder."""

    def __init__(self, nb_filter: tuple[int, ...] = NB_FILTER, input_nc: int = 1, output_nc: int = 1) -> None:
        super().__init__()
        n0, n1, n2, n3 = nb_filter[:4]
        self.conv0 = ConvLayer(input_nc, 16, 1)
        self.DB1_0 = DenseBlockLight(16, n0)
        self.DB2_0 = DenseBlockLight(n0, n1)
        self.DB3_0 = DenseBlockLight(n1, n2)
        self.DB4_0 = DenseBlockLight(n2, n3)
        self.DB1_1 = DenseBlockLight(n0 + n1, n0)
        self.DB2_1 = DenseBlockLight(n1 + n2, n1)
        self.DB3_1 = DenseBlockLight(n2 + n3, n2)
        self.DB1_2 = DenseBlockLight(n0 * 2 + n1, n0)
        self.DB2_2 = DenseBlockLight(n1 * 2 + n2, n1)
        self.DB1_3 = DenseBlockLight(n0 * 3 + n1, n0)
        self.conv_out = ConvLayer(n0, output_nc, 1)

    def encoder(self, x: Tensor) -> list[Tensor]:
        x1 = self.DB1_0(self.conv0(x))
        x2 = self.DB2_0(F.max_pool2d(x1, 2, 2))
        x3 = self.DB3_0(F.max_pool2d(x2, 2, 2))
        x4 = self.DB4_0(F.max_pool2d(x3, 2, 2))
        return [x1, x2, x3, x4]

    def decoder_eval(self, f: list[Tensor]) -> Tensor:
        x1_1 = self.DB1_1(torch.cat([f[0], upsample_to(f[0], f[1])], 1))
        x2_1 = self.DB2_1(torch.cat([f[1], upsample_to(f[1], f[2])], 1))
        x1_2 = self.DB1_2(torch.cat([f[0], x1_1, upsample_to(f[0], x2_1)], 1))
        x3_1 = self.DB3_1(torch.cat([f[2], upsample_to(f[2], f[3])], 1))
        x2_2 = self.DB2_2(torch.cat([f[1], x2_1, upsample_to(f[1], x3_1)], 1))
        x1_3 = self.DB1_3(torch.cat([f[0], x1_1, x1_2, upsample_to(f[0], x2_2)], 1))
        return self.conv_out(x1_3)


class FusionBlockRes(nn.Module):
    """``FusionBlock_res``: conv of the concatenation plus a bottleneck over per-modality convs."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_fusion = ConvLayer(2 * channels, channels, 3)
        self.conv_ir = ConvLayer(channels, channels, 3)
        self.conv_vi = ConvLayer(channels, channels, 3)
        self.bottelblock = nn.Sequential(  # sic: the official name
            ConvLayer(2 * channels, channels, 1), ConvLayer(channels, channels, 3), ConvLayer(channels, channels, 3)
        )

    def forward(self, x_ir: Tensor, x_vi: Tensor) -> Tensor:
        f_init = self.conv_fusion(torch.cat([x_ir, x_vi], 1))
        out = self.bottelblock(torch.cat([self.conv_ir(x_ir), self.conv_vi(x_vi)], 1))
        return f_init + out


class FusionNetwork(nn.Module):
    """``Fusion_network(nb_filter, 'res')``: one residual fusion block per encoder scale."""

    def __init__(self, nb_filter: tuple[int, ...] = NB_FILTER) -> None:
        super().__init__()
        self.fusion_block1 = FusionBlockRes(nb_filter[0])
        self.fusion_block2 = FusionBlockRes(nb_filter[1])
        self.fusion_block3 = FusionBlockRes(nb_filter[2])
        self.fusion_block4 = FusionBlockRes(nb_filter[3])

    def forward(self, en_ir: list[Tensor], en_vi: list[Tensor]) -> list[Tensor]:
        blocks = (self.fusion_block1, self.fusion_block2, self.fusion_block3, self.fusion_block4)
        return [block(a, b) for block, a, b in zip(blocks, en_ir, en_vi, strict=True)]


class RFNNest(ZooMethod):
    """RFN-Nest (Information Fusion 2021) with the official two-stage weights and test pipeline."""

    out_channels = 1

    def __init__(
        self,
        crop_large: bool = True,
        crop_threshold: int = 512,
        minmax_eps: float = 1e-5,
        clamp_before_minmax: bool = False,
    ) -> None:
        super().__init__()
        self.crop_large = crop_large
        self.crop_threshold = crop_threshold
        self.minmax_eps = minmax_eps
        self.clamp_before_minmax = clamp_before_minmax
        self.nest = NestFuseNet()
        self.fusion = FusionNetwork()

    def _fuse_tensor(self, ir: Tensor, vi: Tensor) -> Tensor:
        return self.nest.decoder_eval(self.fusion(self.nest.encoder(ir), self.nest.encoder(vi)))

    @torch.no_grad()
    def fuse_float(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        """The decoder output (H, W) float32 (ReLU'd, unnormalised) handed to the official 8-bit writer."""
        device = self.device
        x_ir, x_vi = (torch.from_numpy(np.asarray(x, dtype=np.float32))[None, None].to(device) for x in (ir, vi))
        h, w = ir.shape
        if not (self.crop_large and (h > self.crop_threshold or w > self.crop_threshold)):
            return self._fuse_tensor(x_ir, x_vi)[0, 0].float().cpu().numpy()
        hc, wc = h // 2, w // 2
        boxes = [
            (slice(0, hc + 3), slice(0, wc + 3)),
            (slice(0, hc + 3), slice(wc - 2, w)),
            (slice(hc - 2, h), slice(0, wc + 3)),
            (slice(hc - 2, h), slice(wc - 2, w)),
        ]
        parts = [self._fuse_tensor(x_ir[..., r, c].contiguous(), x_vi[..., r, c].contiguous()) for r, c in boxes]
        acc = torch.zeros(1, parts[0].shape[1], h, w, device=device)
        count = torch.zeros_like(acc)
        ones = torch.ones_like(acc)
        for (r, c), part in zip(boxes, parts, strict=True):
            acc[..., r, c] += part
            count[..., r, c] += ones[..., r, c]
        return (acc / count)[0, 0].float().cpu().numpy()

    def quantise(self, x: np.ndarray) -> np.ndarray:
        """``save_image_test``: [clamp,] float32 min-max with eps, x255, truncation."""
        x = np.asarray(x, dtype=np.float32)
        if self.clamp_before_minmax:
            x = np.clip(x, np.float32(0), np.float32(255))
        lo, hi = x.min(), x.max()
        x = (x - lo) / (hi - lo + np.float32(self.minmax_eps))
        return (x * np.float32(255)).astype(np.uint8)

    def fuse_uint8(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        return self.quantise(self.fuse_float(ir, vi))


_load = official_loader("nest", "fusion")  # auto-encoder (nestfuse_gray_1e2), then the fusion network (RFN)


@register_zoo("rfnnest", model=RFNNest,
    pretrained=PRETRAINED,
    description="RFN-Nest (Information Fusion 2021), official two-stage weights and test pipeline",
)
def rfnnest(weights: str | Path | None = None, random_init: bool = False, **options: object) -> ZooMethod:
    return build_zoo(RFNNest, "rfnnest", PRETRAINED, _load, weights=weights, random_init=random_init, **options)
