"""DIDFuse: the official weights load strictly and the official test script's outputs are reproduced."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fusebench.methods import create_method
from fusebench.methods.zoo._base import load_official
from tests.methods.zoo.conftest import (
    PAIRS,
    assert_cpu_gpu_float_close,
    assert_official_pair,
    assert_refused,
    assert_state_equal,
    assert_tensor_path,
    build_method,
    truncated_copy,
)

FILES = ("Encoder_weight_IJCAI.pkl", "Decoder_weight_IJCAI.pkl")


@pytest.fixture(scope="module")
def weights(zoo: Path) -> Path:
    return zoo / "didfuse" / "weights"


@pytest.fixture(scope="module")
def method(weights: Path):
    return build_method("didfuse", weights)


def test_official_weights_load_strictly(method, weights: Path) -> None:
    enc = load_official(weights / FILES[0], key="weight")
    dec = load_official(weights / FILES[1], key="weight")
    assert_state_equal(method.encoder.state_dict(), enc)
    assert_state_equal(method.decoder.state_dict(), dec)
    assert method.cfg["weights_files"] == [str(weights / f) for f in FILES]
    assert not method.training


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_matches_official_output(method, zoo: Path, pair_files, pair: str) -> None:
    assert_official_pair(method, pair_files, pair, zoo / "didfuse" / "official")


def test_wrong_files_raise_weights_error(weights: Path, zoo: Path, tmp_path: Path) -> None:
    # another method's checkpoint as the encoder: no 'weight' container key
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(zoo / "densefuse" / "weights" / "densefuse_gray.model", other / FILES[0])
    shutil.copy(weights / FILES[1], other / FILES[1])
    assert_refused("didfuse", other, other / FILES[0])
    # the decoder file in the encoder's place: right container, wrong network
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    shutil.copy(weights / FILES[1], swapped / FILES[0])
    shutil.copy(weights / FILES[1], swapped / FILES[1])
    assert_refused("didfuse", swapped, swapped / FILES[0])
    # a truncated decoder
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copy(weights / FILES[0], cut / FILES[0])
    assert_refused("didfuse", cut, truncated_copy(weights / FILES[1], cut / FILES[1], 5000))


def test_tensor_path_on_a_small_pair(method) -> None:
    ir, vi, _ = assert_tensor_path(method, seed=1)
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
    assert_cpu_gpu_float_close(lambda: create_method("didfuse", weights=weights), cuda)
