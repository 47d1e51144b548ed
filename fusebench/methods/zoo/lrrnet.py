"""LRRNet (Li, Xu, Wu, Lu, Kittler; IEEE TPAMI 2023), run as its official test script runs it.

Paper: "LRRNet: A Novel Representation Learning Guided Fusion Network for Infrared and Visible Images",
doi:10.1109/TPAMI.2023.3268209. Official code: ``hli1221/imagefusion-LRRNet`` @
``e489fc325ea6acb9b7327b1de2c0cc4a09172ba4`` (``testing_fusion_lrr.py``, ``net_lista.py``, ``utils.py``,
``args.py``). The repository has no licence file (all rights reserved): fusebench downloads the weights from
the authors' repository and never ships them.

The network is ``LRR_NET(s=3, n=128, channel=1, stride=1, num_block=4, fusion_type='cat')``: two learned
low-rank-representation encoders (an unrolled LISTA solver with soft thresholding, one per modality) split
each image into a low-rank part and a sparse part (128 channels each), and a small decoder fuses the two
parts separately by concatenation and adds them.

The official pipeline (reproduced by :meth:`LRRNet.fuse_uint8`):

1. ``cv2.imread(p, cv2.IMREAD_GRAYSCALE)`` for both images, as float32 0..255. On a colour JPEG this is
   libjpeg's Y plane, not the usual BT.601 luma of the RGB decode (reader ``cv2_gray``).
2. ``normalize_tensor``: ``(x - min) / (max - min + 1e-5)`` per image, in float32.
3. ``model.eval()``; ``out = model(ir, vi)['fuse']`` (the decoder's ``low + high``).
4. ``save_image``, ``args.cuda = 1`` branch: **no clamp**, ``(x - min) / (max - min + 1e-5) * 255`` in float32
   (NumPy 2 scalar rules), then ``.astype('uint8')``: truncation. The maximum is therefore 254, never 255.
   Written with ``cv2.imwrite`` as PNG.

Quirk: with ``args.cuda = 0`` the same ``save_image`` clamps the raw output to [0, 255] *before* the min-max.
The raw output is small and partly negative, so that changes the image; ``clamp_before_minmax=True`` selects
that branch. The official default (and the authors' published results) is the cuda branch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from fusebench.methods.zoo._base import ZooMethod, build_zoo, official_loader, register_zoo
from fusebench.pretrained import PretrainedCfg, WeightFile

__all__ = ["PRETRAINED", "LRRNet", "LRRNetModel"]

ORIGIN_COMMIT = "e489fc325ea6acb9b7327b1de2c0cc4a09172ba4"
WEIGHTS_FILE = "final_lrr_net_lam2_1.5_wir_3.0_lam3_gram_2000_epoch_4_block_4.model"
#: ``EPSILON`` of the official ``utils.py`` (both min-max normalisations)
EPS = 1e-5

PRETRAINED = PretrainedCfg(
    files=(
        WeightFile(
            url=f"https://github.com/hli1221/imagefusion-LRRNet/raw/{ORIGIN_COMMIT}/model/{WEIGHTS_FILE}",
            file=WEIGHTS_FILE,
            sha256="1de9dd8dee9b650ce69c74ea53e3b9a6b749222f1059a689aabf28f68ee63e29",
            size=218_515,
        ),
    ),
    license="none",
    paper="doi:10.1109/TPAMI.2023.3268209",
    origin=f"hli1221/imagefusion-LRRNet@{ORIGIN_COMMIT}",
    notes=(
        "testing_fusion_lrr.py: cv2 IMREAD_GRAYSCALE inputs, per-image min-max with eps 1e-5, "
        "LRR_NET(3, 128, 1, 1, 4, 'cat'), cuda-branch save_image (no clamp, min-max + eps, x255, truncate)."
    ),
)


# -- the network (official parameter names: net_lista.py) -------------------------------------------------------
class ConvLayer(nn.Module):
    """Reflection padding of ``k // 2`` followed by a convolution (``reflection_pad`` + ``conv2d``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2d(self.reflection_pad(x))


def soft_threshold(r: Tensor, lam: Tensor) -> Tensor:
    """``sign(r) * max(|r| - lam, 0)`` with one threshold per channel (``lam`` of shape (1, C)): official ``eta_l1``.

    Computed as ``r - clamp(r, -lam, lam)``, which is bit-identical for ``lam >= 0`` (``r - lam`` and
    ``r + lam`` round exactly like ``|r| - lam`` up to the sign) and takes 2 passes over the features instead
    of 5; channels with a negative threshold (one exists in the official weights) use the official formula.
    """
    lam4 = lam.reshape(1, -1, 1, 1)
    out = r.clamp(-lam4, lam4)
    torch.sub(r, out, out=out)
    negative = (lam.reshape(-1) < 0).nonzero().flatten()
    if negative.numel():
        rn, ln = r[:, negative], lam4[:, negative]
        out[:, negative] = torch.sign(rn) * torch.clamp(torch.abs(rn) - ln, 0)
    return out


class LRRBlock(nn.Module):
    """One unrolled LISTA step: ``Z <- soft(lam_z * Z + W_t(x - W(Z)), lam)`` (official ``LRR_Block_lista``)."""

    def __init__(self, s: int, n: int, c: int, stride: int) -> None:
        super().__init__()
        self.conv_Wdz = ConvLayer(n, c, s, stride)
        self.conv_Wdtz = ConvLayer(c, n, s, stride)

    def forward(self, x: Tensor, z: Tensor, lam_theta: Tensor, lam_z: Tensor) -> Tensor:
        residual = x - self.conv_Wdz(z)
        # official: lam_z * z + conv_Wdtz(residual); the sum is commutative, so accumulate in place
        c = self.conv_Wdtz(residual)
        c += lam_z * z
        return soft_threshold(c, lam_theta)


class LowRankSparseEncoder(nn.Module):
    """Official ``GetLS_Net``: split an image into low-rank (first n) and sparse (last n) feature channels."""

    def __init__(self, s: int, n: int, channel: int, stride: int, num_block: int) -> None:
        super().__init__()
        self.n = n
        self.num_block = num_block
        self.conv_W00 = ConvLayer(channel, 2 * n, s, stride)
        self.lamj = nn.Parameter(torch.rand(1, 2 * n))  # per-channel soft thresholds
        self.lamz = nn.Parameter(torch.rand(1, 1))
        # the official module also holds an unused, parameter-free nn.Upsample; left out
        for i in range(num_block):
            self.add_module(f"lrrblock{i}", LRRBlock(s, 2 * n, channel, stride))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = soft_threshold(self.conv_W00(x), self.lamj)
        for i in range(self.num_block):
            z = getattr(self, f"lrrblock{i}")(x, z, self.lamj, self.lamz)
        return z[:, : self.n], z[:, self.n : 2 * self.n]


class LRRDecoder(nn.Module):
    """Official ``Decoder_simple``: reconstruct each part per modality, fuse low and high parts, add them."""

    def __init__(self, s: int, n: int, channel: int, stride: int, fusion_type: str) -> None:
        super().__init__()
        self.type = fusion_type
        self.conv_ReZx = ConvLayer(n, channel, s, stride)
        self.conv_ReUx = ConvLayer(n, channel, s, stride)
        self.conv_ReZy = ConvLayer(n, channel, s, stride)
        self.conv_ReUy = ConvLayer(n, channel, s, stride)
        fused_in = 2 * channel if "cat" in fusion_type else channel
        self.conv_ReL = ConvLayer(fused_in, channel, s, stride)
        self.conv_ReH = ConvLayer(fused_in, channel, s, stride)

    def forward(self, z_x: Tensor, u_x: Tensor, z_y: Tensor, u_y: Tensor) -> Tensor:
        x_l, x_h = self.conv_ReZx(z_x), self.conv_ReUx(u_x)
        y_l, y_h = self.conv_ReZy(z_y), self.conv_ReUy(u_y)
        if "cat" in self.type:
            low = self.conv_ReL(torch.cat([x_l, y_l], 1))
            high = self.conv_ReH(torch.cat([x_h, y_h], 1))
        else:
            low = self.conv_ReL(x_l + y_l)
            high = self.conv_ReH(x_h + y_h)
        return low + high


class LRRNetModel(nn.Module):
    """Official ``LRR_NET``; :meth:`forward` returns only the fused image (the official dict's ``'fuse'``)."""

    def __init__(
        self, s: int = 3, n: int = 128, channel: int = 1, stride: int = 1, num_block: int = 4,
        fusion_type: str = "cat",
    ) -> None:
        super().__init__()
        self.get_ls1 = LowRankSparseEncoder(s, n, channel, stride, num_block)
        self.get_ls2 = LowRankSparseEncoder(s, n, channel, stride, num_block)
        self.decoder = LRRDecoder(s, n, channel, stride, fusion_type)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        x_low, x_sparse = self.get_ls1(x)
        y_low, y_sparse = self.get_ls2(y)
        return self.decoder(x_low, x_sparse, y_low, y_sparse)


def normalize_minmax(t: Tensor) -> Tensor:
    """Official ``normalize_tensor`` for one image: ``(t - min) / (max - min + 1e-5)`` in the tensor's dtype."""
    lo, hi = t.min(), t.max()
    return (t - lo) / (hi - lo + EPS)


# -- the method -------------------------------------------------------------------------------------------------
class LRRNet(ZooMethod):
    """LRRNet on its official weights, with the official reading, normalisation and 8-bit quantisation.

    Args:
        clamp_before_minmax: the ``args.cuda = 0`` branch of the official ``save_image`` (clamp the raw output
            to [0, 255] before the min-max). Default False: the official cuda branch, no clamp.
    """

    ir_reader = "cv2_gray"
    vi_reader = "cv2_gray"
    out_channels = 1

    def __init__(self, clamp_before_minmax: bool = False) -> None:
        super().__init__(clamp_before_minmax=clamp_before_minmax)
        self.clamp_before_minmax = clamp_before_minmax
        self.net = LRRNetModel(s=3, n=128, channel=1, stride=1, num_block=4, fusion_type="cat")

    def _to_input(self, img: np.ndarray) -> Tensor:
        """uint8 (H, W) -> float32 0..255 (1, 1, H, W) on the model's device, then per-image min-max."""
        x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.uint8)).to(self.device).float()[None, None]
        return normalize_minmax(x)

    def fuse_uint8(self, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = self.net(self._to_input(ir), self._to_input(vi))
        if self.clamp_before_minmax:
            out = out.clamp(0, 255)
        arr = out[0, 0].float().cpu().numpy()  # float32 (H, W)
        lo, hi = arr.min(), arr.max()  # float32 scalars: NumPy 2 keeps the eps sum in float32
        arr = (arr - lo) / (hi - lo + np.float32(EPS)) * np.float32(255)
        return arr.astype(np.uint8)  # in [0, 255), so a plain truncation


@register_zoo("lrrnet", model=LRRNet, pretrained=PRETRAINED,
    description="LRRNet (TPAMI 2023), official weights, official test pipeline (cv2 grey, min-max, truncate)",
)
def lrrnet(weights: str | Path | None = None, random_init: bool = False, **options: object) -> LRRNet:
    return build_zoo(LRRNet, "lrrnet", PRETRAINED, official_loader("net"), weights=weights, random_init=random_init,
                     **options)
