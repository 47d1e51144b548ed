"""ReCoNet: official weights load strictly, outputs equal the official archive/fuse.py's, wrong files refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fusebench.methods.base import WeightsError, create_method
from fusebench.methods.zoo.reconet import ReCoNet
from tests.methods.zoo.conftest import PAIRS, assert_matches_official, read_official

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
        state = m.net.state_dict()
        assert state.keys() == official.keys()
        assert all(torch.equal(state[k], v) for k, v in official.items())
    assert not method.training


@pytest.mark.parametrize("pair", PAIR_KEYS)
def test_matches_official_output(pair: str, method: ReCoNet, zoo: Path, pair_files) -> None:
    ours = method.fuse_files(*pair_files[pair])
    assert_matches_official(ours, read_official(zoo / "reconet" / "official" / f"{pair}.png"))


def test_wrong_weights_are_refused(zoo: Path, weights: Path, tmp_path: Path) -> None:
    other = zoo / "seafusion" / "weights" / "SeAFusion.pth"
    with pytest.raises(WeightsError, match="SeAFusion.pth"):
        create_method("reconet", weights=other)
    truncated = tmp_path / "params.pth"
    truncated.write_bytes((weights / "params.pth").read_bytes()[:5000])
    with pytest.raises(WeightsError, match=str(truncated)):
        create_method("reconet", weights=truncated)


def _random_pair(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    ir = torch.from_numpy(rng.integers(0, 256, (1, 1, 37, 53), dtype=np.uint8)).float() / 255
    vi = torch.from_numpy(rng.integers(0, 256, (1, 3, 37, 53), dtype=np.uint8)).float() / 255
    return ir, vi


def test_fuse_images_on_decoded_tensors(method: ReCoNet) -> None:
    ir, vi = _random_pair(0)
    for v in (vi, vi[:, :1]):
        out = method.fuse_images(ir, v)
        assert out.shape == (1, 1, 37, 53) and out.dtype == torch.float32
        assert out.min() >= 0 and out.max() <= 1


@pytest.mark.gpu
def test_cuda_close_to_cpu(method: ReCoNet, cuda: torch.device) -> None:
    ir, vi = _random_pair(2)
    want = method.fuse_images(ir, vi)
    gpu = create_method("reconet", weights=method.cfg["weights_files"][0]).to(cuda)
    got = gpu.fuse_images(ir.to(cuda), vi.to(cuda))
    assert got.device.type == "cuda"
    assert (got.cpu() - want).abs().max() <= 1 / 255 + 1e-6
