"""DIDFuse: the official weights load strictly and the official test script's outputs are reproduced."""

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

FILES = ("Encoder_weight_IJCAI.pkl", "Decoder_weight_IJCAI.pkl")


@pytest.fixture(scope="module")
def weights(zoo: Path) -> Path:
    return zoo / "didfuse" / "weights"


@pytest.fixture(scope="module")
def method(weights: Path):
    return create_method("didfuse", weights=weights).eval()


def test_official_weights_load_strictly(method, weights: Path) -> None:
    enc = load_official(weights / FILES[0], key="weight")
    dec = load_official(weights / FILES[1], key="weight")
    assert set(method.encoder.state_dict()) == set(enc)
    assert set(method.decoder.state_dict()) == set(dec)
    for key, value in enc.items():
        assert torch.equal(method.encoder.state_dict()[key], value), key
    for key, value in dec.items():
        assert torch.equal(method.decoder.state_dict()[key], value), key
    assert method.cfg["weights_files"] == [str(weights / f) for f in FILES]
    assert not method.training


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_matches_official_output(method, zoo: Path, pair_files, pair: str) -> None:
    ir, vi = pair_files[pair]
    assert_matches_official(method.fuse_files(ir, vi), read_official(zoo / "didfuse" / "official" / f"{pair}.png"))


def test_wrong_files_raise_weights_error(weights: Path, zoo: Path, tmp_path: Path) -> None:
    # another method's checkpoint as the encoder: no 'weight' container key
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(zoo / "densefuse" / "weights" / "densefuse_gray.model", other / FILES[0])
    shutil.copy(weights / FILES[1], other / FILES[1])
    with pytest.raises(WeightsError, match=re.escape(str(other / FILES[0]))):
        create_method("didfuse", weights=other)
    # the decoder file in the encoder's place: right container, wrong network
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    shutil.copy(weights / FILES[1], swapped / FILES[0])
    shutil.copy(weights / FILES[1], swapped / FILES[1])
    with pytest.raises(WeightsError, match=re.escape(str(swapped / FILES[0]))):
        create_method("didfuse", weights=swapped)
    # a truncated decoder
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copy(weights / FILES[0], cut / FILES[0])
    (cut / FILES[1]).write_bytes((weights / FILES[1]).read_bytes()[:5000])
    with pytest.raises(WeightsError, match=re.escape(str(cut / FILES[1]))):
        create_method("didfuse", weights=cut)


def test_tensor_path_on_a_small_pair(method) -> None:
    g = torch.Generator().manual_seed(1)
    ir = torch.rand(1, 1, 37, 53, generator=g)
    vi = torch.rand(1, 3, 37, 53, generator=g)
    out = method.fuse_images(ir, vi)
    assert out.shape == (1, 1, 37, 53)
    assert out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1
    assert method.fuse(ir, vi).shape == (1, 1, 37, 53)


@pytest.mark.parametrize("mode", ["average", "l1_norm"])
def test_other_addition_modes(weights: Path, mode: str) -> None:
    rng = np.random.default_rng(0)
    ir, vi = (rng.integers(0, 256, (29, 31), dtype=np.uint8) for _ in range(2))
    other = create_method("didfuse", weights=weights, addition_mode=mode)
    official = create_method("didfuse", weights=weights)
    with torch.inference_mode():
        a, b = other.fuse_float(ir, vi), official.fuse_float(ir, vi)
    assert a.shape == (29, 31) and np.isfinite(a).all() and not np.array_equal(a, b)
    with pytest.raises(ValueError, match="addition_mode"):
        create_method("didfuse", weights=weights, addition_mode="max")


@pytest.mark.gpu
def test_runs_on_cuda(weights: Path, cuda: torch.device) -> None:
    rng = np.random.default_rng(0)
    ir, vi = (rng.integers(0, 256, (64, 80), dtype=np.uint8) for _ in range(2))
    cpu = create_method("didfuse", weights=weights)
    gpu = create_method("didfuse", weights=weights).to(cuda)
    with torch.inference_mode():
        a, b = cpu.fuse_float(ir, vi), gpu.fuse_float(ir, vi)
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-2 * float(np.abs(a).max()))
