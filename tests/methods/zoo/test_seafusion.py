"""SeAFusion: official weights load strictly, outputs equal the official test.py's, wrong files are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fusebench.methods.base import create_method
from fusebench.methods.zoo.seafusion import SeAFusion
from tests.methods.zoo.conftest import (
    PAIRS,
    assert_official_pair,
    assert_refused,
    assert_state_equal,
    random_uint8_pair,
    truncated_copy,
)

PAIR_KEYS = [pytest.param(k, marks=pytest.mark.slow) if k.startswith("llvip") else k for k in PAIRS]


@pytest.fixture(scope="module")
def weights(zoo: Path) -> Path:
    return zoo / "seafusion" / "weights"


@pytest.fixture(scope="module")
def method(weights: Path) -> SeAFusion:
    return create_method("seafusion", weights=weights)


def test_official_weights_load_strictly(weights: Path, method: SeAFusion) -> None:
    from_file = create_method("seafusion", weights=weights / "SeAFusion.pth")
    official = torch.load(weights / "SeAFusion.pth", map_location="cpu", weights_only=True)
    for m in (method, from_file):
        assert_state_equal(m.net.state_dict(), official)
    assert type(method).out_channels == 3 and not method.training


@pytest.mark.parametrize("pair", PAIR_KEYS)
def test_matches_official_output(pair: str, method: SeAFusion, zoo: Path, pair_files) -> None:
    assert_official_pair(method, pair_files, pair, zoo / "seafusion" / "official")


def test_wrong_weights_are_refused(zoo: Path, weights: Path, tmp_path: Path) -> None:
    assert_refused("seafusion", zoo / "tardal" / "weights" / "tardal.pt", "tardal.pt")
    assert_refused("seafusion", truncated_copy(weights / "SeAFusion.pth", tmp_path / "SeAFusion.pth", 5000))


def test_fuse_images_on_decoded_tensors(method: SeAFusion) -> None:
    ir, vi = random_uint8_pair(0)
    for v in (vi, vi[:, :1]):  # a grey visible image is read as R=G=B RGB
        out = method.fuse_images(ir, v)
        assert out.shape == (1, 3, 37, 53) and out.dtype == torch.float32
        assert out.min() >= 0 and out.max() <= 1
        assert out.min() == 0 and out.max() == 1  # the official min-max stretch
    assert method.fuse(ir, vi[:, :1]).shape == (1, 1, 37, 53)


def test_fuse_uint8_grey_visible_is_rgb(method: SeAFusion) -> None:
    """A grey VI converted to RGB (R=G=B) gives the same output as that RGB file."""
    rng = np.random.default_rng(1)
    ir = rng.integers(0, 256, (20, 24), dtype=np.uint8)
    grey = rng.integers(0, 256, (20, 24), dtype=np.uint8)
    with torch.inference_mode():
        out = method.fuse_uint8(ir, np.repeat(grey[..., None], 3, axis=2))
    assert out.shape == (20, 24, 3) and out.dtype == np.uint8


@pytest.mark.gpu
def test_cuda_close_to_cpu(method: SeAFusion, cuda: torch.device) -> None:
    ir, vi = random_uint8_pair(2)
    want = method.fuse_images(ir, vi)
    gpu = create_method("seafusion", weights=method.cfg["weights_files"][0]).to(cuda)
    got = gpu.fuse_images(ir.to(cuda), vi.to(cuda))
    assert got.device.type == "cuda"
    assert (got.cpu() - want).abs().max() <= 1 / 255 + 1e-6
