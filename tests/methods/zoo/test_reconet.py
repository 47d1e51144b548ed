"""ReCoNet: official weights load strictly, outputs equal the official archive/fuse.py's, wrong files refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fusebench.methods.base import create_method
from fusebench.methods.zoo.reconet import ReCoNet
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
    return zoo / "reconet" / "weights"


@pytest.fixture(scope="module")
def method(weights: Path) -> ReCoNet:
    return create_method("reconet", weights=weights)


def test_official_weights_load_strictly(weights: Path, method: ReCoNet) -> None:
    from_file = create_method("reconet", weights=weights / "params.pth")
    official = torch.load(weights / "params.pth", map_location="cpu", weights_only=True)
    for m in (method, from_file):
        assert_state_equal(m.net.state_dict(), official)
    assert not method.training


@pytest.mark.parametrize("pair", PAIR_KEYS)
def test_matches_official_output(pair: str, method: ReCoNet, zoo: Path, pair_files) -> None:
    assert_official_pair(method, pair_files, pair, zoo / "reconet" / "official")


def test_wrong_weights_are_refused(zoo: Path, weights: Path, tmp_path: Path) -> None:
    assert_refused("reconet", zoo / "seafusion" / "weights" / "SeAFusion.pth", "SeAFusion.pth")
    assert_refused("reconet", truncated_copy(weights / "params.pth", tmp_path / "params.pth", 5000))



def test_fuse_images_on_decoded_tensors(method: ReCoNet) -> None:
    ir, vi = random_uint8_pair(0)
    for v in (vi, vi[:, :1]):
        out = method.fuse_images(ir, v)
        assert out.shape == (1, 1, 37, 53) and out.dtype == torch.float32
        assert out.min() >= 0 and out.max() <= 1


@pytest.mark.gpu
def test_cuda_close_to_cpu(method: ReCoNet, cuda: torch.device) -> None:
    ir, vi = random_uint8_pair(2)
    want = method.fuse_images(ir, vi)
    gpu = create_method("reconet", weights=method.cfg["weights_files"][0]).to(cuda)
    got = gpu.fuse_images(ir.to(cuda), vi.to(cuda))
    assert got.device.type == "cuda"
    assert (got.cpu() - want).abs().max() <= 1 / 255 + 1e-6
