"""Classical multi-scale fusion baselines: Laplacian pyramid, DWT and guided-filter fusion (GFF).

They need no training and give the tables non-learned reference rows, as VIFB does. Each is a few lines
on top of torch (Laplacian pyramid), PyWavelets (DWT) or scipy.ndimage (GFF); all keep the input size.

References:
    Burt & Adelson, "The Laplacian pyramid as a compact image code", IEEE Trans. Commun. 1983.
    Li, Manjunath & Mitra, "Multisensor image fusion using the wavelet transform", GMIP 1995.
    Li, Kang & Hu, "Image fusion with guided filtering", IEEE TIP 22(7), 2013, doi:10.1109/TIP.2013.2244222.
    He, Sun & Tang, "Guided image filtering", IEEE TPAMI 35(6), 2013, doi:10.1109/TPAMI.2012.213.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from fusebench.methods.base import FusionMethod, register_method

_BINOMIAL = (1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16)  # Burt & Adelson's generating kernel, a = 0.375


def max_abs(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> Tensor | np.ndarray:
    """Pick, per coefficient, the one with the larger magnitude (``a`` on ties)."""
    if isinstance(a, Tensor):
        return torch.where(a.abs() >= b.abs(), a, b)
    return np.where(np.abs(a) >= np.abs(b), a, b)


# -- Laplacian pyramid ---------------------------------------------------------------------------------------
def _blur(x: Tensor) -> Tensor:
    k = torch.tensor(_BINOMIAL, device=x.device, dtype=x.dtype)
    kernel = (k[:, None] * k[None, :]).expand(x.shape[1], 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), kernel, groups=x.shape[1])


def _expand(x: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def laplacian_pyramid(x: Tensor, levels: int) -> list[Tensor]:
    """``levels`` band-pass layers (finest first) plus the low-pass residual; stops when a side reaches 1 px."""
    pyramid = []
    for _ in range(levels):
        if min(x.shape[-2:]) < 2:
            break
        down = _blur(x)[..., ::2, ::2]
        pyramid.append(x - _expand(down, x.shape[-2:]))
        x = down
    return [*pyramid, x]


def reconstruct_laplacian(pyramid: list[Tensor]) -> Tensor:
    """Inverse of :func:`laplacian_pyramid` (exact: each layer stores what expanding the next one misses)."""
    x = pyramid[-1]
    for layer in reversed(pyramid[:-1]):
        x = layer + _expand(x, layer.shape[-2:])
    return x


class LaplacianFusion(FusionMethod):
    """Laplacian-pyramid fusion: max-abs band-pass layers, mean low-pass residual."""

    def __init__(self, levels: int = 4) -> None:
        super().__init__(levels=levels)
        self.levels = levels

    def fuse(self, ir: Tensor, vi: Tensor) -> Tensor:
        pa, pb = laplacian_pyramid(ir, self.levels), laplacian_pyramid(vi, self.levels)
        fused = [max_abs(a, b) for a, b in zip(pa[:-1], pb[:-1])] + [(pa[-1] + pb[-1]) / 2]
        return reconstruct_laplacian(fused)


# -- discrete wavelet transform ---------------------------------------------------------------------------
def dwt_fuse(a: np.ndarray, b: np.ndarray, wavelet: str = "db2", level: int = 3,
             mode: str = "symmetric") -> np.ndarray:
    """Fuse two (H, W) images: mean approximation, max-abs details at every level; same size out.

    The level is capped at PyWavelets' ``dwt_max_level`` for the image and wavelet.
    """
    import pywt

    level = min(level, pywt.dwt_max_level(min(a.shape), pywt.Wavelet(wavelet).dec_len))
    ca, cb = pywt.wavedec2(a, wavelet, mode=mode, level=level), pywt.wavedec2(b, wavelet, mode=mode, level=level)
    fused = [(ca[0] + cb[0]) / 2] + [tuple(max_abs(x, y) for x, y in zip(da, db)) for da, db in zip(ca[1:], cb[1:])]
    return pywt.waverec2(fused, wavelet, mode=mode)[: a.shape[0], : a.shape[1]]


def _per_image(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], ir: Tensor, vi: Tensor) -> Tensor:
    """Apply a numpy two-image function to each (ir, vi) pair in float64; result on the input's device."""
    a, b = ir.detach().cpu().double().numpy(), vi.detach().cpu().double().numpy()
    out = np.stack([fn(x[0], y[0])[None] for x, y in zip(a, b)])
    return torch.from_numpy(out).to(ir.device, ir.dtype)


class DWTFusion(FusionMethod):
    """DWT fusion (PyWavelets): mean approximation, max-abs detail coefficients."""

    devices = ("cpu",)

    def __init__(self, wavelet: str = "db2", level: int = 3, mode: str = "symmetric") -> None:
        super().__init__(wavelet=wavelet, level=level, mode=mode)
        self.wavelet, self.level, self.mode = wavelet, level, mode

    def fuse(self, ir: Tensor, vi: Tensor) -> Tensor:
        return _per_image(lambda a, b: dwt_fuse(a, b, self.wavelet, self.level, self.mode), ir, vi)


# -- guided-filter fusion -----------------------------------------------------------------------------------
def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter with (2r+1)^2 box means (scipy ``uniform_filter``, mirrored borders)."""
    size = 2 * radius + 1

    def box(x: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(x, size=size, mode="reflect")

    mean_i, mean_p = box(guide), box(src)
    a = (box(guide * src) - mean_i * mean_p) / (box(guide * guide) - mean_i**2 + eps)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


def gff_saliency(image: np.ndarray, radius: int = 5, sigma: float = 5.0) -> np.ndarray:
    """GFF saliency S = |Laplacian(I)| smoothed by a (2r+1)-wide Gaussian of ``sigma`` (replicated borders)."""
    high = np.abs(ndimage.laplace(image, mode="nearest"))
    return ndimage.gaussian_filter(high, sigma=sigma, truncate=radius / sigma, mode="nearest")


def gff_weights(a: np.ndarray, b: np.ndarray, radius: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Binary max-saliency maps refined by guided filtering with each source as guide, normalised to sum 1."""
    p_a = (gff_saliency(a) >= gff_saliency(b)).astype(np.float64)
    w_a, w_b = guided_filter(a, p_a, radius, eps), guided_filter(b, 1.0 - p_a, radius, eps)
    total = w_a + w_b
    total = np.where(np.abs(total) < 1e-12, 1.0, total)
    return w_a / total, w_b / total


def gff_fuse(a: np.ndarray, b: np.ndarray, base_size: int = 31, r1: int = 45, eps1: float = 0.3, r2: int = 7,
             eps2: float = 1e-6) -> np.ndarray:
    """Li, Kang & Hu (2013): two-scale split by a ``base_size`` mean filter, guided-filter weights per layer."""
    base_a, base_b = (ndimage.uniform_filter(x, size=base_size, mode="nearest") for x in (a, b))
    wb_a, wb_b = gff_weights(a, b, r1, eps1)
    wd_a, wd_b = gff_weights(a, b, r2, eps2)
    return wb_a * base_a + wb_b * base_b + wd_a * (a - base_a) + wd_b * (b - base_b)


class GFFusion(FusionMethod):
    """Guided-filter fusion (GFF) with the paper's parameters by default."""

    devices = ("cpu",)

    def __init__(self, base_size: int = 31, r1: int = 45, eps1: float = 0.3, r2: int = 7,
                 eps2: float = 1e-6) -> None:
        super().__init__(base_size=base_size, r1=r1, eps1=eps1, r2=r2, eps2=eps2)

    def fuse(self, ir: Tensor, vi: Tensor) -> Tensor:
        return _per_image(lambda a, b: gff_fuse(a, b, **self.cfg), ir, vi)


@register_method("laplacian", description="Laplacian-pyramid fusion (max-abs details, mean base)",
                 paper="doi:10.1109/TCOM.1983.1095851")
def laplacian(**kwargs: int) -> FusionMethod:
    return LaplacianFusion(**kwargs)


@register_method("dwt", description="DWT fusion (PyWavelets; max-abs details, mean approximation)",
                 paper="doi:10.1006/gmip.1995.1022")
def dwt(**kwargs: str | int) -> FusionMethod:
    return DWTFusion(**kwargs)  # type: ignore[arg-type]


@register_method("gff", description="guided-filter fusion (Li, Kang & Hu 2013)", paper="doi:10.1109/TIP.2013.2244222")
def gff(**kwargs: float) -> FusionMethod:
    return GFFusion(**kwargs)  # type: ignore[arg-type]
