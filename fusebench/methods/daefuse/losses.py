"""DAE-Fuse training losses (paper Eq. 6-17), all differentiable, on (N, C, H, W) float tensors.

Phase I: correlation-decomposition loss (CDDFuse, Eq. 8), content loss ||x - D(x)||^2 + (1 - SSIM) (Eq. 9)
and adversarial losses (Eq. 7, 10). Phase II: max-gradient texture loss (Eq. 15), max-intensity loss
(Eq. 16) and adversarial losses (Eq. 14). The generator's adversarial term is the non-saturating
``-log D(fake)`` rather than the paper's ``log(1 - D(fake))`` (same fixed point, useful gradients early
on); logits go through ``binary_cross_entropy_with_logits`` for numerical stability.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def _gaussian_window(size: int, sigma: float, like: Tensor) -> Tensor:
    r = torch.arange(size, device=like.device, dtype=like.dtype) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(x: Tensor, y: Tensor, *, window: int = 11, sigma: float = 1.5, data_range: float = 1.0) -> Tensor:
    """Per-image mean SSIM (Wang et al. 2004; Gaussian window, K1 = 0.01, K2 = 0.03), replicate padding: (N,).

    A conv2d implementation (fast under autocast and on GPU) for training; fusebench's evaluation SSIM
    lives in ``fusebench.metrics``.
    """
    g = _gaussian_window(window, sigma, x)
    kernel = (g[:, None] * g[None, :]).expand(x.shape[1], 1, window, window)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(F.pad(t, (window // 2,) * 4, mode="replicate"), kernel, groups=t.shape[1])

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    ssim_map = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return ssim_map.flatten(1).mean(1)


def content_loss(x: Tensor, recon: Tensor) -> Tensor:
    """Eq. 9: mean squared error plus (1 - SSIM), averaged over the batch."""
    return F.mse_loss(recon, x) + (1 - ssim(x, recon)).mean()


def correlation(a: Tensor, b: Tensor, eps: float = 1e-8) -> Tensor:
    """Pearson correlation over space per (image, channel), averaged; clamped to [-1, 1] (CDDFuse ``cc``)."""
    a = a.flatten(2) - a.flatten(2).mean(-1, keepdim=True)
    b = b.flatten(2) - b.flatten(2).mean(-1, keepdim=True)
    cc = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1) + eps)
    return cc.clamp(-1.0, 1.0).mean()


def decomposition_loss(high_a: Tensor, high_b: Tensor, low_a: Tensor, low_b: Tensor,
                       eps: float = 1.01) -> Tensor:
    """Eq. 8: CC(high_a, high_b)^2 / (CC(low_a, low_b) + eps); low when details differ and bases agree.

    The correlations are batch means; in a distributed run they are averaged over the ranks first (a
    differentiable all-reduce), so the loss is that of the global batch, as in one process.
    """
    from fusebench.training.distributed import batch_mean

    return batch_mean(correlation(high_a, high_b)) ** 2 / (batch_mean(correlation(low_a, low_b)) + eps)


def gradient_magnitude(x: Tensor) -> Tensor:
    """|Sobel_x| + |Sobel_y| with the raw kernel and zero padding (SeAFusion's texture operator)."""
    kx = torch.tensor(_SOBEL_X, device=x.device, dtype=x.dtype)
    kernel = torch.stack([kx, kx.t()])[:, None].repeat(x.shape[1], 1, 1, 1)
    g = F.conv2d(x, kernel, padding=1, groups=x.shape[1])
    return g.abs().reshape(x.shape[0], x.shape[1], 2, *x.shape[-2:]).sum(2)


def texture_loss(fused: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Eq. 15: mean |grad F - max(|grad a|, |grad b|)|."""
    target = torch.maximum(gradient_magnitude(a), gradient_magnitude(b))
    return F.l1_loss(gradient_magnitude(fused), target)


def intensity_loss(fused: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Eq. 16: mean |F - max(a, b)|."""
    return F.l1_loss(fused, torch.maximum(a, b))


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Eq. 10: -log D(real) - log(1 - D(fake)), batch means."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_adversarial_loss(fake_logits: Tensor) -> Tensor:
    """Eq. 7/14 in non-saturating form: -log D(fake), batch mean."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
