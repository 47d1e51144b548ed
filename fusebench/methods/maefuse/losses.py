"""MaeFuse's training losses: feature alignment (paper Eq. 5, as printed and content-weighted) and the two
fusion losses.

- ``paper``: Eq. 4, L1(F, max(V, I)) + alpha * L1(|grad F|, max(|grad V|, |grad I|)), with
  |grad x| = |Sobel_x x| + |Sobel_y x| (raw Sobel kernels, zero padding), images in [0, 1].
- ``official``: what ``util/loss.py::Fusionloss`` of the released code computes (reference 1.7): Sobel L1
  + 2 * L1 of the *signed* 8-neighbour Laplacian against the max of the sources' Laplacians, no intensity
  term, on images scaled to [0, 255].

The kernels are applied with one ``conv2d`` (a 3-filter bank) rather than ``fusebench.metrics._filters``:
training calls them every step on the accelerator, where one fused convolution is the fast path; the
tests check them against the metrics' Sobel.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from fusebench.training.distributed import batch_mean

FusionLossName = Literal["paper", "official"]

# Correlation kernels (as the official code's conv2d): Sobel x, Sobel y, 8-neighbour Laplacian.
_KERNELS = torch.tensor([
    [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]],
    [[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]],
    [[1.0, 1.0, 1.0], [1.0, -8.0, 1.0], [1.0, 1.0, 1.0]],
])[:, None]


def _filter_bank(x: Tensor) -> Tensor:
    """(N, 1, H, W) -> (N, 3, H, W): Sobel x, Sobel y, Laplacian; zero padding, same size."""
    return F.conv2d(x, _KERNELS.to(x.device, x.dtype), padding=1)


def sobel_magnitude(x: Tensor) -> Tensor:
    """|Sobel_x| + |Sobel_y| of (N, 1, H, W), zero padded, same size."""
    g = _filter_bank(x)[:, :2]
    return g.abs().sum(1, keepdim=True)


def laplacian(x: Tensor) -> Tensor:
    """Signed 8-neighbour Laplacian [[1,1,1],[1,-8,1],[1,1,1]] of (N, 1, H, W), zero padded."""
    return _filter_bank(x)[:, 2:]


def alignment_loss(tokens: Tensor, phi_v: Tensor, phi_i: Tensor) -> Tensor:
    """Eq. 5: MSE between the fusion layer's tokens and the mean of the two encoder features."""
    return F.mse_loss(tokens, (phi_v + phi_i) / 2)


def content_alignment_loss(tokens: Tensor, phi_v: Tensor, phi_i: Tensor) -> dict[str, Tensor]:
    """Eq. 5 split into the part shared by all tokens of an image and the part that varies between them.

    The encoder's tokens (after its final LayerNorm) are dominated by a per-channel offset that every
    token carries: on TNO the variation *between* tokens, which is all the image content the decoder
    sees, is about 0.3 % of the tokens' variance. Plain Eq. 5 therefore reaches a "small" loss (0.01)
    by matching the offset alone, and the decoded alignment output is a content-free grid (CC ~ 0 with
    the sources). Here the offset term (MSE of the per-image token means) and the content term (MSE of
    the centred tokens, relative to the target's centred energy, so 1 = no content) weigh equally.

    The energy is the global batch's under DDP (equal shares, all-reduced): each rank's content term is then
    its share's MSE over the global constant, and DDP's average of the ranks' gradients is one process's.
    """
    target = (phi_v + phi_i) / 2
    t_mean, g_mean = tokens.mean(1, keepdim=True), target.mean(1, keepdim=True)
    offset = F.mse_loss(t_mean, g_mean)
    centred = target - g_mean
    energy = batch_mean(centred.pow(2).mean().detach())
    content = F.mse_loss(tokens - t_mean, centred) / energy.clamp_min(1e-12)
    return {"loss": offset + content, "offset": offset, "content": content}


def paper_fusion_loss(fused: Tensor, ir: Tensor, vi: Tensor, alpha: float = 1.0) -> dict[str, Tensor]:
    """Eq. 4 on (N, 1, H, W) images in [0, 1]; returns ``loss`` and its ``int``/``grad`` terms."""
    l_int = F.l1_loss(fused, torch.maximum(vi, ir))
    l_grad = F.l1_loss(sobel_magnitude(fused), torch.maximum(sobel_magnitude(vi), sobel_magnitude(ir)))
    return {"loss": l_int + alpha * l_grad, "int": l_int, "grad": l_grad}


def official_fusion_loss(fused: Tensor, ir: Tensor, vi: Tensor, alpha: float = 1.0,
                         beta: float = 2.0) -> dict[str, Tensor]:
    """The released code's Sobel + beta * signed Laplacian L1, on images scaled to [0, 255]."""
    fused, ir, vi = fused * 255.0, ir * 255.0, vi * 255.0
    l_grad = F.l1_loss(sobel_magnitude(fused), torch.maximum(sobel_magnitude(vi), sobel_magnitude(ir)))
    l_lap = F.l1_loss(laplacian(fused), torch.maximum(laplacian(vi), laplacian(ir)))
    return {"loss": alpha * l_grad + beta * l_lap, "grad": l_grad, "lap": l_lap}


def fusion_loss(name: FusionLossName, fused: Tensor, ir: Tensor, vi: Tensor, alpha: float = 1.0) -> dict[str, Tensor]:
    """Dispatch by name; ``alpha`` weighs the gradient term in both."""
    if name == "paper":
        return paper_fusion_loss(fused, ir, vi, alpha=alpha)
    if name == "official":
        return official_fusion_loss(fused, ir, vi, alpha=alpha)
    raise ValueError(f"loss must be 'paper' or 'official', got {name!r}")
