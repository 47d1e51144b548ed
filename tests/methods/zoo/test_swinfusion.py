"""SwinFusion (IVF) against the official code run on a synthetic checkpoint in the official format.

``../shared/zoo/swinfusion/synthetic/`` holds ``10000_E.pth.xz`` (official init, seed 0; decompressed here into
a session temp dir), the official script's outputs ``<pair>.png`` and the float maps it handed to
``tensor2uint`` before clamping (``<pair>.float32.npy``). With the official init the output is small (0..0.16),
so the float maps carry the signal. Float tolerance: 1e-5 absolute (the port reproduces the official float32
operations; measured difference 0.0 on every pair).
"""

from __future__ import annotations

import lzma
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fusebench.methods.base import METHODS, create_method
from fusebench.methods.zoo.swinfusion import COMMIT, SwinFusion
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
FLOAT_ATOL = 1e-5


@pytest.fixture(scope="session")
def synth(zoo: Path) -> Path:
    return zoo / "swinfusion" / "synthetic"


@pytest.fixture(scope="session")
def checkpoint(synth: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic ``10000_E.pth``, decompressed from its ``.xz`` once per session."""
    out = tmp_path_factory.mktemp("swinfusion") / "10000_E.pth"
    with lzma.open(synth / "10000_E.pth.xz") as src, out.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    return out


@pytest.fixture(scope="module")
def method(checkpoint: Path) -> SwinFusion:
    return build_method("swinfusion", checkpoint, SwinFusion)


@pytest.fixture(scope="module")
def outputs(method: SwinFusion, pair_files):
    return recorded_outputs(method, pair_files)


def test_synthetic_checkpoint_loads_strictly(method: SwinFusion, checkpoint: Path) -> None:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    ours = method.net.state_dict()
    assert list(ours) == list(state) and len(state) == 448
    assert all(torch.equal(ours[k], v) for k, v in state.items())  # attn_mask, relative_position_index too
    assert method.cfg["weights_files"] == [str(checkpoint)]


def test_params_subdict_is_accepted(method: SwinFusion, tmp_path: Path) -> None:
    path = tmp_path / "wrapped.pth"
    torch.save({"params": method.net.state_dict()}, path)
    m = create_method("swinfusion", weights=path)
    assert torch.equal(m.net.conv_last3.weight, method.net.conv_last3.weight)


@pytest.mark.slow
@pytest.mark.parametrize("pair", SYNTH_PAIRS)
def test_matches_official_output(outputs, synth: Path, pair: str) -> None:
    assert_matches_official(outputs(pair)[0], read_official(synth / f"{pair}.png"))


@pytest.mark.slow
@pytest.mark.parametrize("pair", SYNTH_PAIRS)
def test_matches_official_float_map(outputs, synth: Path, pair: str) -> None:
    assert_float_map(outputs(pair)[1], synth / f"{pair}.float32.npy", FLOAT_ATOL)


def test_wrong_checkpoint_names_file(zoo: Path, tmp_path: Path, checkpoint: Path) -> None:
    assert_refused("swinfusion", zoo / "emma" / "synthetic" / "EMMA.pth", "EMMA.pth")
    assert_refused("swinfusion", truncated_copy(checkpoint, tmp_path / "10000_E.pth", 1_000_000))


def test_padding_rule(method: SwinFusion) -> None:
    assert method.padding(576, 768) == (8, 8)  # always >= 1: a full window on multiples of 8
    assert method.padding(329, 500) == (7, 4)
    lean = create_method("swinfusion", random_init=True, pad_always=False)
    assert lean.padding(576, 768) == (0, 0) and lean.padding(329, 500) == (7, 4)


def test_tensor_path_odd_size(method: SwinFusion) -> None:
    assert_tensor_path(method)
    with pytest.raises(ValueError, match="at least 4x4"):
        method.fuse_float(np.zeros((3, 9), np.uint8), np.zeros((3, 9), np.uint8))


def test_registered_metadata() -> None:
    entry = METHODS.get("swinfusion")
    assert entry.license == "none" and entry.trainable is False
    assert entry.pretrained.files[0].url.endswith(f"{COMMIT}/Model/Infrared_Visible_Fusion/"
                                                  "Infrared_Visible_Fusion/models/10000_E.pth")


@pytest.mark.gpu
def test_runs_on_cuda(method: SwinFusion, cuda: torch.device) -> None:
    """Inputs are created on the parameters' device; CUDA agrees with the CPU up to TF32/cuDNN rounding."""
    rng = np.random.default_rng(0)
    ir, vi = (rng.integers(0, 256, (64, 96), dtype=np.uint8) for _ in range(2))
    assert_copy_on_cuda_close(method, cuda, ir, vi, atol=1e-2)
