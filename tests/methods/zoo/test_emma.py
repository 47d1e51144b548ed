"""EMMA against the official code run on a synthetic checkpoint in the official format.

``../shared/zoo/emma/synthetic/`` holds ``EMMA.pth`` (official init, seed 0), the official script's outputs
``<pair>.png`` and the float maps it handed to ``imsave`` (``<pair>.float32.npy``, 0..255). ``tno_01`` and
``msrs_00004N`` take the whole-image path, ``roadscene_FLIR_00006`` (500x329) the four-tile path.
Float tolerance: 2e-3 grey levels absolute (the port reproduces the official float32 operations; measured
difference 0.0 on every pair).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fusebench.methods.base import METHODS, WeightsError, create_method
from fusebench.methods.zoo.emma import COMMIT, EMMA
from tests.methods.zoo.conftest import (
    assert_copy_on_cuda_close,
    assert_float_map,
    assert_matches_official,
    assert_refused,
    assert_tensor_path,
    build_method,
    read_official,
    recorded_outputs,
    truncated_copy,
)

SYNTH_PAIRS = ["tno_01", "msrs_00004N", "roadscene_FLIR_00006"]
FLOAT_ATOL = 2e-3


@pytest.fixture(scope="module")
def synth(zoo: Path) -> Path:
    return zoo / "emma" / "synthetic"


@pytest.fixture(scope="module")
def method(synth: Path) -> EMMA:
    return build_method("emma", synth / "EMMA.pth", EMMA)


@pytest.fixture(scope="module")
def outputs(method: EMMA, pair_files):
    return recorded_outputs(method, pair_files)


def test_synthetic_checkpoint_loads_strictly(method: EMMA, synth: Path) -> None:
    state = torch.load(synth / "EMMA.pth", map_location="cpu", weights_only=True)
    ours = method.model.state_dict()
    assert list(ours) == list(state) and len(state) == 347
    assert all(torch.equal(ours[k], v) for k, v in state.items())
    assert method.cfg["weights_files"] == [str(synth / "EMMA.pth")]


@pytest.mark.slow
@pytest.mark.parametrize("pair", SYNTH_PAIRS)
def test_matches_official_output(outputs, synth: Path, pair: str) -> None:
    assert_matches_official(outputs(pair)[0], read_official(synth / f"{pair}.png"))


@pytest.mark.slow
@pytest.mark.parametrize("pair", SYNTH_PAIRS)
def test_matches_official_float_map(outputs, synth: Path, pair: str) -> None:
    assert_float_map(outputs(pair)[1], synth / f"{pair}.float32.npy", FLOAT_ATOL)


def test_wrong_checkpoint_names_file(zoo: Path, tmp_path: Path) -> None:
    assert_refused("emma", zoo / "cddfuse" / "synthetic" / "CDDFuse_IVF.pth", "CDDFuse_IVF.pth")
    assert_refused("emma", truncated_copy(zoo / "emma" / "synthetic" / "EMMA.pth", tmp_path / "EMMA.pth", 100_000))


def test_state_dict_mismatch_names_file(method: EMMA, tmp_path: Path) -> None:
    state = method.model.state_dict()
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match="broken.pth"):
        create_method("emma", weights=path)


@pytest.mark.parametrize("shape", [(37, 53), (64, 96)])
def test_tensor_path(method: EMMA, shape: tuple[int, int]) -> None:
    """37x53 takes the four-tile path (32x32 tiles), 64x96 the whole-image path."""
    _, _, out = assert_tensor_path(method, shape=shape)
    assert float(out.min()) == 0.0 and float(out.max()) == 1.0  # the official min-max stretch


def test_too_small_and_tile_option(method: EMMA) -> None:
    small = np.zeros((31, 40), np.float32)
    with pytest.raises(ValueError, match="at least 32x32"):
        method.fuse_float(small, small)
    with pytest.raises(ValueError, match="multiple of 8"):
        create_method("emma", random_init=True, tile_multiple=12)
    fine = create_method("emma", random_init=True, tile_multiple=8)
    fine.load_state_dict(method.state_dict())
    rng = np.random.default_rng(0)
    ir, vi = (np.round(rng.uniform(0, 255, (37, 53))).astype(np.float32) for _ in range(2))
    out = fine.fuse_float(ir, vi)  # 8-grid tiles: 32x48, seams elsewhere than the official 32 grid
    assert out.shape == (37, 53) and out.min() == 0 and out.max() == 255


def test_registered_metadata() -> None:
    entry = METHODS.get("emma")
    assert entry.license == "none" and entry.trainable is False
    assert entry.pretrained.files[0].url.endswith(f"{COMMIT}/model/EMMA.pth")


@pytest.mark.gpu
def test_runs_on_cuda(method: EMMA, cuda: torch.device) -> None:
    """Inputs are created on the parameters' device; CUDA agrees with the CPU up to TF32/cuDNN rounding."""
    rng = np.random.default_rng(0)
    ir, vi = (rng.uniform(0, 255, (64, 96)).round().astype(np.float32) for _ in range(2))
    assert_copy_on_cuda_close(method, cuda, ir, vi, atol=2.0)
