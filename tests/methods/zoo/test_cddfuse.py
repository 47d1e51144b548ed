"""CDDFuse against the official code run on a synthetic checkpoint in the official format.

``../shared/zoo/cddfuse/synthetic/`` holds ``CDDFuse_IVF.pth`` (official init, seed 0), the official script's
outputs ``<pair>.png`` and the float maps it handed to ``imsave`` (``<pair>.float32.npy``, 0..255).
Float tolerance: 2e-3 grey levels absolute (the port reproduces the official float32 operations; measured
difference 0.0 on every pair).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fusebench.methods.base import METHODS, WeightsError, create_method
from fusebench.methods.zoo.cddfuse import COMMIT, CDDFuse
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
    return zoo / "cddfuse" / "synthetic"


@pytest.fixture(scope="module")
def method(synth: Path) -> CDDFuse:
    return build_method("cddfuse", synth / "CDDFuse_IVF.pth", CDDFuse)


@pytest.fixture(scope="module")
def outputs(method: CDDFuse, pair_files):
    return recorded_outputs(method, pair_files)


def test_synthetic_checkpoint_loads_strictly(method: CDDFuse, synth: Path) -> None:
    state = torch.load(synth / "CDDFuse_IVF.pth", map_location="cpu", weights_only=True)
    assert sorted(state) == ["BaseFuseLayer", "DIDF_Decoder", "DIDF_Encoder", "DetailFuseLayer"]
    ours = method.state_dict()
    assert len(ours) == sum(len(v) for v in state.values()) == 158
    for key, sub in state.items():
        for name, value in sub.items():
            assert torch.equal(ours[f"{key}.{name.removeprefix('module.')}"], value)
    assert method.cfg["weights_files"] == [str(synth / "CDDFuse_IVF.pth")]


@pytest.mark.slow
@pytest.mark.parametrize("pair", SYNTH_PAIRS)
def test_matches_official_output(outputs, synth: Path, pair: str) -> None:
    assert_matches_official(outputs(pair)[0], read_official(synth / f"{pair}.png"))


@pytest.mark.slow
@pytest.mark.parametrize("pair", SYNTH_PAIRS)
def test_matches_official_float_map(outputs, synth: Path, pair: str) -> None:
    assert_float_map(outputs(pair)[1], synth / f"{pair}.float32.npy", FLOAT_ATOL)


def test_wrong_checkpoint_names_file(zoo: Path, tmp_path: Path) -> None:
    assert_refused("cddfuse", zoo / "emma" / "synthetic" / "EMMA.pth", "EMMA.pth")
    src = zoo / "cddfuse" / "synthetic" / "CDDFuse_IVF.pth"
    assert_refused("cddfuse", truncated_copy(src, tmp_path / "CDDFuse_IVF.pth", 100_000))


def test_state_dict_mismatch_names_file(method: CDDFuse, tmp_path: Path) -> None:
    state = {k: {f"module.{n}": t for n, t in getattr(method, k).state_dict().items()}
             for k in ("DIDF_Encoder", "DIDF_Decoder", "BaseFuseLayer", "DetailFuseLayer")}
    del state["DIDF_Decoder"]["module.reduce_channel.weight"]
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match="broken.pth.*DIDF_Decoder"):
        create_method("cddfuse", weights=path)


def test_tensor_path_any_size(method: CDDFuse) -> None:
    ir, vi, out = assert_tensor_path(method)
    assert float(out.min()) == 0.0 and float(out.max()) == 1.0  # the official min-max stretch
    grey = method.fuse(ir, vi[:, :1])
    assert grey.shape == (1, 1, 37, 53) and 0 <= float(grey.min()) <= float(grey.max()) <= 1


def test_registered_metadata() -> None:
    entry = METHODS.get("cddfuse")
    assert entry.license == "none" and entry.trainable is False
    assert entry.pretrained.files[0].url.endswith(f"{COMMIT}/models/CDDFuse_IVF.pth")


@pytest.mark.gpu
def test_runs_on_cuda(method: CDDFuse, cuda: torch.device) -> None:
    """Inputs are created on the parameters' device; CUDA agrees with the CPU up to TF32/cuDNN rounding."""
    rng = np.random.default_rng(0)
    ir, vi = (rng.uniform(0, 255, (64, 96)).round().astype(np.float32) for _ in range(2))
    assert_copy_on_cuda_close(method, cuda, ir, vi, atol=2.0)
