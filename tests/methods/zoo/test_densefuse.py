"""DenseFuse (grey model): the official weights load strictly and the official outputs are reproduced."""

from __future__ import annotations

import shutil
from pathlib import Path

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


@pytest.fixture(scope="module")
def weights(zoo: Path) -> Path:
    return zoo / "densefuse" / "weights" / "densefuse_gray.model"


@pytest.fixture(scope="module")
def method(weights: Path):
    return build_method("densefuse", weights)


def test_official_weights_load_strictly(method, weights: Path) -> None:
    state = load_official(weights)
    assert_state_equal(method.net.state_dict(), state)
    assert method.cfg["weights_files"] == [str(weights)]
    assert not method.training


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_matches_official_output(method, zoo: Path, pair_files, pair: str) -> None:
    assert_official_pair(method, pair_files, pair, zoo / "densefuse" / "official")


def test_wrong_files_raise_weights_error(weights: Path, zoo: Path, tmp_path: Path) -> None:
    # the RGB model: same keys, other shapes
    rgb = tmp_path / "densefuse_rgb.model"
    shutil.copy(zoo / "densefuse" / "weights" / "densefuse_rgb.model", rgb)
    assert_refused("densefuse", rgb)
    # another method's checkpoint (DIDFuse's {'weight': ..., 'epoch': ...} container)
    other = tmp_path / "Encoder_weight_IJCAI.pkl"
    shutil.copy(zoo / "didfuse" / "weights" / "Encoder_weight_IJCAI.pkl", other)
    assert_refused("densefuse", other)
    # a truncated file
    assert_refused("densefuse", truncated_copy(weights, tmp_path / "densefuse_gray.model", 4000))


def test_tensor_path_on_a_small_pair(method) -> None:
    ir, vi, _ = assert_tensor_path(method, seed=1)
    assert method.fuse(ir, vi).shape == (1, 1, 37, 53)


@pytest.mark.gpu
def test_runs_on_cuda(weights: Path, cuda: torch.device) -> None:
    assert_cpu_gpu_float_close(lambda: create_method("densefuse", weights=weights), cuda)
