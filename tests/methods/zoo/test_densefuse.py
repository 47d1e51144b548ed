"""DenseFuse (grey model): the official weights load strictly and the official outputs are reproduced."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fusebench.methods import create_method
from fusebench.methods.base import WeightsError
from fusebench.methods.zoo._base import load_official
from tests.methods.zoo.conftest import PAIRS, assert_matches_official, read_official


@pytest.fixture(scope="module")
def weights(zoo: Path) -> Path:
    return zoo / "densefuse" / "weights" / "densefuse_gray.model"


@pytest.fixture(scope="module")
def method(weights: Path):
    return create_method("densefuse", weights=weights).eval()


def test_official_weights_load_strictly(method, weights: Path) -> None:
    state = load_official(weights)
    own = method.net.state_dict()
    assert set(own) == set(state)
    for key, value in state.items():
        assert torch.equal(own[key], value), key
    assert method.cfg["weights_files"] == [str(weights)]
    assert not method.training


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_matches_official_output(method, zoo: Path, pair_files, pair: str) -> None:
    ir, vi = pair_files[pair]
    expected = read_official(zoo / "densefuse" / "official" / f"{pair}.png")
    assert_matches_official(method.fuse_files(ir, vi), expected)


def test_wrong_files_raise_weights_error(weights: Path, zoo: Path, tmp_path: Path) -> None:
    # the RGB model: same keys, other shapes
    rgb = tmp_path / "densefuse_rgb.model"
    shutil.copy(zoo / "densefuse" / "weights" / "densefuse_rgb.model", rgb)
    with pytest.raises(WeightsError, match=re.escape(str(rgb))):
        create_method("densefuse", weights=rgb)
    # another method's checkpoint (DIDFuse's {'weight': ..., 'epoch': ...} container)
    other = tmp_path / "Encoder_weight_IJCAI.pkl"
    shutil.copy(zoo / "didfuse" / "weights" / "Encoder_weight_IJCAI.pkl", other)
    with pytest.raises(WeightsError, match=re.escape(str(other))):
        create_method("densefuse", weights=other)
    # a truncated file
    cut = tmp_path / "densefuse_gray.model"
    cut.write_bytes(weights.read_bytes()[:4000])
    with pytest.raises(WeightsError, match=re.escape(str(cut))):
        create_method("densefuse", weights=cut)


def test_tensor_path_on_a_small_pair(method) -> None:
    g = torch.Generator().manual_seed(1)
    ir = torch.rand(1, 1, 37, 53, generator=g)
    vi = torch.rand(1, 3, 37, 53, generator=g)
    out = method.fuse_images(ir, vi)
    assert out.shape == (1, 1, 37, 53)
    assert out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1
    assert method.fuse(ir, vi).shape == (1, 1, 37, 53)


@pytest.mark.gpu
def test_runs_on_cuda(weights: Path, cuda: torch.device) -> None:
    rng = np.random.default_rng(0)
    ir, vi = (rng.integers(0, 256, (64, 80), dtype=np.uint8) for _ in range(2))
    cpu = create_method("densefuse", weights=weights)
    gpu = create_method("densefuse", weights=weights).to(cuda)
    with torch.inference_mode():
        a, b = cpu.fuse_float(ir, vi), gpu.fuse_float(ir, vi)
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-2 * float(np.abs(a).max()))
