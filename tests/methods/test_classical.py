"""Classical baselines (laplacian, dwt, gff) against hand-computed cases and exact identities."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from fusebench.methods import create_method
from fusebench.methods.classical import (
    dwt_fuse,
    gff_fuse,
    gff_weights,
    guided_filter,
    laplacian_pyramid,
    reconstruct_laplacian,
)

CLASSICAL = ["laplacian", "dwt", "gff"]


def _haar2(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One orthonormal 2-D Haar level written out by hand: (A, H, V, D) of 2x2 blocks."""
    a, b, c, d = x[0::2, 0::2], x[0::2, 1::2], x[1::2, 0::2], x[1::2, 1::2]
    return (a + b + c + d) / 2, (a + b - c - d) / 2, (a - b + c - d) / 2, (a - b - c + d) / 2


def _ihaar2(ca: np.ndarray, ch: np.ndarray, cv: np.ndarray, cd: np.ndarray) -> np.ndarray:
    out = np.empty((2 * ca.shape[0], 2 * ca.shape[1]))
    out[0::2, 0::2] = (ca + ch + cv + cd) / 2
    out[0::2, 1::2] = (ca + ch - cv - cd) / 2
    out[1::2, 0::2] = (ca - ch + cv - cd) / 2
    out[1::2, 1::2] = (ca - ch - cv + cd) / 2
    return out


def _pick(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) >= np.abs(y), x, y)


@pytest.mark.parametrize("name", CLASSICAL)
@pytest.mark.parametrize("shape", [(37, 53), (5, 7), (64, 64)])
def test_self_fusion_returns_the_image(name: str, shape: tuple[int, int]) -> None:
    image = torch.rand(2, 1, *shape, dtype=torch.float64)
    fused = create_method(name).fuse(image, image)
    assert fused.shape == image.shape
    torch.testing.assert_close(fused, image, atol=1e-9, rtol=0)


@pytest.mark.parametrize("name", CLASSICAL)
def test_fuse_images_keeps_size_and_range(name: str) -> None:
    ir, vi = torch.rand(1, 1, 37, 53), torch.rand(1, 3, 37, 53)
    out = create_method(name).fuse_images(ir, vi)
    assert out.shape == vi.shape and torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1


def test_dwt_2x2_hand_computed() -> None:
    ir = np.array([[0.8, 0.2], [0.0, 0.0]])
    vi = np.array([[0.1, 0.1], [0.1, 0.5]])
    # by hand: A = 0.5 / 0.4 -> mean 0.45; H = 0.5 / -0.2 -> 0.5; V = 0.3 / -0.2 -> 0.3; D = 0.3 / 0.2 -> 0.3
    expected = _ihaar2(np.array([[0.45]]), np.array([[0.5]]), np.array([[0.3]]), np.array([[0.3]]))
    np.testing.assert_allclose(expected, [[0.775, 0.175], [-0.025, -0.025]], atol=1e-12)
    np.testing.assert_allclose(dwt_fuse(ir, vi, wavelet="haar", level=1), expected, atol=1e-12)


def test_dwt_4x4_two_levels_hand_computed() -> None:
    rng = np.random.default_rng(3)
    ir, vi = rng.random((4, 4)), rng.random((4, 4))
    (a1, *d1_ir), (b1, *d1_vi) = _haar2(ir), _haar2(vi)
    (a2, *d2_ir), (b2, *d2_vi) = _haar2(a1), _haar2(b1)
    top = _ihaar2((a2 + b2) / 2, *[_pick(x, y) for x, y in zip(d2_ir, d2_vi)])
    expected = _ihaar2(top, *[_pick(x, y) for x, y in zip(d1_ir, d1_vi)])
    np.testing.assert_allclose(dwt_fuse(ir, vi, wavelet="haar", level=2), expected, atol=1e-12)


def test_dwt_level_is_configurable_and_recorded() -> None:
    method = create_method("dwt", wavelet="haar", level=1)
    assert method.cfg == {"wavelet": "haar", "level": 1, "mode": "symmetric"}
    ir = torch.tensor([[[[0.8, 0.2], [0.0, 0.0]]]], dtype=torch.float64)
    vi = torch.tensor([[[[0.1, 0.1], [0.1, 0.5]]]], dtype=torch.float64)
    expected = torch.tensor([[[[0.775, 0.175], [-0.025, -0.025]]]], dtype=torch.float64)
    torch.testing.assert_close(method.fuse(ir, vi), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("shape", [(37, 53), (64, 64), (3, 2), (1, 9)])
def test_laplacian_pyramid_reconstructs_exactly(shape: tuple[int, int]) -> None:
    x = torch.rand(2, 1, *shape, dtype=torch.float64)
    pyramid = laplacian_pyramid(x, levels=5)
    torch.testing.assert_close(reconstruct_laplacian(pyramid), x, atol=1e-12, rtol=0)
    h, w = shape
    for layer in pyramid[:-1]:
        assert layer.shape[-2:] == (h, w)
        h, w = (h + 1) // 2, (w + 1) // 2
    assert pyramid[-1].shape[-2:] == (h, w)


def test_laplacian_fusion_of_flat_images_is_their_mean() -> None:
    # Flat images have zero band-pass layers, so only the mean residual survives.
    ir, vi = torch.full((1, 1, 20, 30), 0.2), torch.full((1, 1, 20, 30), 0.6)
    torch.testing.assert_close(create_method("laplacian").fuse(ir, vi), torch.full_like(ir, 0.4))


def test_laplacian_fusion_keeps_the_stronger_edge() -> None:
    # An edge present only in vi (ir is flat) must survive at full contrast around the flat ir's level.
    ir = torch.full((1, 1, 32, 32), 0.5)
    vi = torch.zeros(1, 1, 32, 32)
    vi[..., 16:] = 1.0
    fused = create_method("laplacian", levels=1).fuse(ir, vi)
    # level 1: band-pass layer of vi (max-abs over ir's zero layer) + mean of the blurred halves
    lap_vi, low_vi = laplacian_pyramid(vi, 1)
    expected = lap_vi + torch.nn.functional.interpolate((low_vi + 0.5) / 2, size=(32, 32), mode="bilinear")
    torch.testing.assert_close(fused, expected)
    assert fused[..., 8, 4].item() == pytest.approx(0.25) and fused[..., 8, 28].item() == pytest.approx(0.75)


def test_guided_filter_with_flat_guide_is_a_double_box_filter() -> None:
    # Flat guide -> a = 0, b = mean(p), q = box(box(p)) (He et al. Eq. 7-8).
    src = np.random.default_rng(0).random((20, 24))
    guide = np.full((20, 24), 0.3)
    box_once = ndimage.uniform_filter(src, size=5, mode="reflect")
    box_twice = ndimage.uniform_filter(box_once, size=5, mode="reflect")
    np.testing.assert_allclose(guided_filter(guide, src, radius=2, eps=0.01), box_twice, atol=1e-12)


def test_guided_filter_preserves_the_guide_with_tiny_eps() -> None:
    guide = np.random.default_rng(1).random((30, 30))
    np.testing.assert_allclose(guided_filter(guide, guide, radius=3, eps=1e-12), guide, atol=1e-6)


def test_gff_weight_maps_follow_the_textured_source() -> None:
    checker = (np.indices((64, 64)).sum(0) % 2).astype(np.float64)
    ir = np.where(np.arange(64) < 32, checker, 0.5)  # texture on the left half only
    vi = np.where(np.arange(64) >= 32, checker, 0.5)  # texture on the right half only
    w_ir, w_vi = gff_weights(ir, vi, radius=7, eps=1e-6)
    np.testing.assert_allclose(w_ir + w_vi, 1.0, atol=1e-9)
    # Two box passes of radius 7 reach 14 px, so 16+ px from the seam the maps are exactly binary.
    np.testing.assert_allclose(w_ir[:, :16], 1.0, atol=1e-6)  # left interior: ir is the salient source
    np.testing.assert_allclose(w_ir[:, 48:], 0.0, atol=1e-6)  # right interior: vi is


def test_gff_of_complementary_halves_keeps_both_textures() -> None:
    checker = (np.indices((64, 64)).sum(0) % 2).astype(np.float64)
    ir = np.where(np.arange(64) < 32, checker, 0.5)
    vi = np.where(np.arange(64) >= 32, checker, 0.5)
    fused = gff_fuse(ir, vi)
    # both halves keep the checkerboard's full contrast far from the seam
    assert np.abs(np.diff(fused[:, :16], axis=1)).mean() > 0.9
    assert np.abs(np.diff(fused[:, 48:], axis=1)).mean() > 0.9
