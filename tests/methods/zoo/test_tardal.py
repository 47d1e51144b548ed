"""TarDAL: official weights load strictly, outputs equal the official fuse.py's (default and --eval)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fusebench.methods.base import create_method
from fusebench.methods.zoo.tardal import TarDAL
from tests.methods.zoo.conftest import (
    PAIRS,
    assert_official_pair,
    assert_refused,
    assert_state_equal,
    random_uint8_pair,
    truncated_copy,
)

FILES = {"tardal": "tardal.pt", "tardal-plus": "tardal+.pt", "tardal-plusplus": "tardal++.pt"}
CASES = [
    pytest.param(sub, k, marks=pytest.mark.slow) if k.startswith("llvip") else (sub, k)
    for sub in ("official", "official_eval")
    for k in PAIRS
]


@pytest.fixture(scope="module")
def weights(zoo: Path) -> Path:
    return zoo / "tardal" / "weights"


@pytest.fixture(scope="module")
def methods(weights: Path) -> dict[str, TarDAL]:
    """The official default (BatchNorm in train mode) and ``--eval``, both built from the weights folder."""
    return {
        "official": create_method("tardal", weights=weights),
        "official_eval": create_method("tardal", weights=weights, eval_bn=True),
    }


@pytest.mark.parametrize("name", list(FILES))
def test_official_weights_load_strictly(name: str, weights: Path) -> None:
    official = torch.load(weights / FILES[name], map_location="cpu", weights_only=True)
    for given in (weights, weights / FILES[name]):
        method = create_method(name, weights=given)
        assert_state_equal(method.net.state_dict(), official)
        assert method.eval_bn is (name != "tardal")  # tardal+ / tardal++ run with --eval, as TarDAL's README does


@pytest.mark.parametrize(("sub", "pair"), CASES)
def test_matches_official_output(sub: str, pair: str, methods: dict[str, TarDAL], zoo: Path, pair_files) -> None:
    assert_official_pair(methods[sub], pair_files, pair, zoo / "tardal" / sub)


def test_wrong_weights_are_refused(zoo: Path, weights: Path, tmp_path: Path) -> None:
    assert_refused("tardal", zoo / "reconet" / "weights" / "params.pth", "params.pth")
    assert_refused("tardal-plus", truncated_copy(weights / "tardal.pt", tmp_path / "tardal.pt", 5000))



def test_fuse_images_on_decoded_tensors(methods: dict[str, TarDAL]) -> None:
    ir, vi = random_uint8_pair(0)
    for method in methods.values():
        for v in (vi, vi[:, :1]):
            out = method.fuse_images(ir, v)
            assert out.shape == (1, 1, 37, 53) and out.dtype == torch.float32
            assert out.min() >= 0 and out.max() <= 1


def test_batch_statistics_ignore_eval_and_keep_running_stats(methods: dict[str, TarDAL]) -> None:
    """The default normalises with per-image statistics whether the module is in eval or train mode."""
    method = methods["official"]
    before = {k: v.clone() for k, v in method.state_dict().items()}
    ir, vi = random_uint8_pair(1, channels=1)
    assert not method.training
    want = method.fuse_images(ir, vi)
    method.train()
    try:
        assert torch.equal(method.fuse_images(ir, vi), want)
    finally:
        method.eval()
    assert all(torch.equal(v, before[k]) for k, v in method.state_dict().items())
    assert not torch.equal(methods["official_eval"].fuse_images(ir, vi), want)


@pytest.mark.gpu
def test_cuda_close_to_cpu(methods: dict[str, TarDAL], cuda: torch.device) -> None:
    ir, vi = random_uint8_pair(2)
    for method in methods.values():
        want = method.fuse_images(ir, vi)
        got = method.to(cuda).fuse_images(ir.to(cuda), vi.to(cuda))
        method.to("cpu")
        assert got.device.type == "cuda"
        assert (got.cpu() - want).abs().max() <= 1 / 255 + 1e-6
