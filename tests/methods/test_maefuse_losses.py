"""MaeFuse losses against NumPy/SciPy re-computations of the paper's Eq. 4/5 and the official Fusionloss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from fusebench.methods.maefuse.losses import (
    alignment_loss,
    content_alignment_loss,
    fusion_loss,
    laplacian,
    official_fusion_loss,
    paper_fusion_loss,
    sobel_magnitude,
)

SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
SOBEL_Y = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64)
LAPLACE = np.array([[1, 1, 1], [1, -8, 1], [1, 1, 1]], dtype=np.float64)


def _corr(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return ndimage.correlate(img, kernel, mode="constant", cval=0.0)


def _grad(img: np.ndarray) -> np.ndarray:
    return np.abs(_corr(img, SOBEL_X)) + np.abs(_corr(img, SOBEL_Y))


def _images() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return tuple(torch.rand(2, 1, 19, 23, generator=g, dtype=torch.float64) for _ in range(3))  # type: ignore[return-value]


def test_filters_match_scipy_correlation() -> None:
    x = torch.rand(1, 1, 11, 14, dtype=torch.float64)
    np.testing.assert_allclose(sobel_magnitude(x)[0, 0].numpy(), _grad(x[0, 0].numpy()), atol=1e-12)
    np.testing.assert_allclose(laplacian(x)[0, 0].numpy(), _corr(x[0, 0].numpy(), LAPLACE), atol=1e-12)


def test_paper_loss_matches_numpy_reference() -> None:
    fused, ir, vi = _images()
    alpha = 0.7
    f, i, v = (t[:, 0].numpy() for t in (fused, ir, vi))
    l_int = np.abs(f - np.maximum(v, i)).mean()
    grads = [np.stack([_grad(x) for x in t]) for t in (f, v, i)]
    l_grad = np.abs(grads[0] - np.maximum(grads[1], grads[2])).mean()
    out = paper_fusion_loss(fused, ir, vi, alpha=alpha)
    assert out["int"].item() == pytest.approx(l_int, rel=1e-10)
    assert out["grad"].item() == pytest.approx(l_grad, rel=1e-10)
    assert out["loss"].item() == pytest.approx(l_int + alpha * l_grad, rel=1e-10)


def test_official_loss_matches_numpy_reference_on_0_255() -> None:
    fused, ir, vi = _images()
    f, i, v = (t[:, 0].numpy() * 255.0 for t in (fused, ir, vi))
    grads = [np.stack([_grad(x) for x in t]) for t in (f, v, i)]
    laps = [np.stack([_corr(x, LAPLACE) for x in t]) for t in (f, v, i)]
    l_grad = np.abs(grads[0] - np.maximum(grads[1], grads[2])).mean()
    l_lap = np.abs(laps[0] - np.maximum(laps[1], laps[2])).mean()  # signed max, as the official code
    out = official_fusion_loss(fused, ir, vi)
    assert out["loss"].item() == pytest.approx(l_grad + 2 * l_lap, rel=1e-10)


def test_fused_equal_to_the_max_has_zero_intensity_loss() -> None:
    _, ir, vi = _images()
    assert paper_fusion_loss(torch.maximum(ir, vi), ir, vi)["int"].item() == 0.0


def test_alignment_loss_is_mse_to_the_mean() -> None:
    v, i, t = torch.randn(3, 2, 5, 8).unbind(0)
    assert alignment_loss((v + i) / 2, v, i).item() == 0.0
    expected = ((t.numpy() - (v.numpy() + i.numpy()) / 2) ** 2).mean()
    assert alignment_loss(t, v, i).item() == pytest.approx(expected, rel=1e-5)


def test_content_alignment_sees_the_content_that_plain_mse_misses() -> None:
    """Encoder tokens = a large per-channel offset shared by all tokens + a small per-token content (as the
    compact MAE's: the content is ~0.3 % of the variance). Outputting the offset alone scores a "small" Eq. 5
    MSE, but the content term says 1 (nothing of the content); the exact mean scores 0 on both."""
    g = torch.Generator().manual_seed(0)
    offset = 2.0 * torch.randn(1, 1, 16, generator=g)
    v = offset + 0.05 * torch.randn(2, 30, 16, generator=g)
    i = offset + 0.05 * torch.randn(2, 30, 16, generator=g)
    target = (v + i) / 2
    content_free = target.mean(1, keepdim=True).expand_as(target)
    assert alignment_loss(content_free, v, i).item() < 0.01
    out = content_alignment_loss(content_free, v, i)
    assert out["content"].item() == pytest.approx(1.0, rel=1e-5) and out["offset"].item() < 1e-10
    exact = content_alignment_loss(target, v, i)
    assert exact["loss"].item() < 1e-10
    shifted = content_alignment_loss(target + 0.5, v, i)  # right content, wrong offset
    assert shifted["content"].item() < 1e-10 and shifted["offset"].item() == pytest.approx(0.25, rel=1e-5)


def test_unknown_loss_name_is_rejected() -> None:
    fused, ir, vi = _images()
    with pytest.raises(ValueError, match="loss must be 'paper' or 'official'"):
        fusion_loss("ssim", fused, ir, vi)  # type: ignore[arg-type]
