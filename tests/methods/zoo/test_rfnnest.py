"""RFN-Nest on the synthetic checkpoint: strict loading and the official outputs, float map and 8-bit image.

The official weights are not obtainable here; ``zoo/rfnnest/synthetic/keys.json`` describes a seeded-noise
checkpoint in the official (legacy PyTorch 1.5) format, rebuilt once per session with the zoo's own script.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fusebench.methods import create_method
from fusebench.methods.zoo._base import load_official
from tests.methods.zoo.conftest import (
    assert_cpu_gpu_float_close,
    assert_matches_official,
    assert_refused,
    assert_state_equal,
    assert_tensor_path,
    build_method,
    read_official,
    truncated_copy,
)

NEST = "nestfuse_gray_1e2.model"
RFN = "Final_epoch_2_alpha_700_wir_6.0_wvi_3.0_ssim_vi.model"
# tno_01 and msrs_00004N take the 4-crop path (> 512 px), roadscene_FLIR_00006 the whole-image path
SYNTHETIC_PAIRS = ("msrs_00004N", "roadscene_FLIR_00006", "tno_01")


@pytest.fixture(scope="session")
def synthetic(zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic checkpoint folder, rebuilt from keys.json (the script checks the content digest)."""
    src = zoo / "rfnnest" / "synthetic"
    out = tmp_path_factory.mktemp("rfnnest_weights")
    subprocess.run(
        [sys.executable, str(src / "rebuild_checkpoint.py"), str(src / "keys.json"), str(out)],
        check=True, capture_output=True, text=True,
    )
    return out


@pytest.fixture(scope="module")
def method(synthetic: Path):
    return build_method("rfnnest", synthetic)


def test_synthetic_weights_load_strictly(method, synthetic: Path) -> None:
    for module, name in ((method.nest, NEST), (method.fusion, RFN)):
        state = load_official(synthetic / name)
        assert_state_equal(module.state_dict(), state)
    assert method.cfg["weights_files"] == [str(synthetic / NEST), str(synthetic / RFN)]
    assert not method.training


@pytest.mark.parametrize("pair", SYNTHETIC_PAIRS)
def test_matches_official_output(method, zoo: Path, pair_files, pair: str, monkeypatch) -> None:
    captured: list[np.ndarray] = []
    quantise = method.quantise

    def spy(x: np.ndarray) -> np.ndarray:  # records the float map handed to the official writer
        captured.append(x)
        return quantise(x)

    monkeypatch.setattr(method, "quantise", spy)
    ours = method.fuse_files(*pair_files[pair])
    assert_matches_official(ours, read_official(zoo / "rfnnest" / "synthetic" / f"{pair}.png"))
    expected = np.load(zoo / "rfnnest" / "synthetic" / f"{pair}.float32.npy")
    (fused,) = captured
    np.testing.assert_allclose(fused, expected, rtol=1e-5, atol=1e-4 * float(expected.max()))


def test_wrong_files_raise_weights_error(synthetic: Path, zoo: Path, tmp_path: Path) -> None:
    # the two files swapped
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    (swapped / NEST).symlink_to(synthetic / RFN)
    (swapped / RFN).symlink_to(synthetic / NEST)
    assert_refused("rfnnest", swapped, swapped / NEST)
    # another method's weights as the auto-encoder
    other = tmp_path / "other"
    other.mkdir()
    (other / NEST).symlink_to(zoo / "densefuse" / "weights" / "densefuse_gray.model")
    (other / RFN).symlink_to(synthetic / RFN)
    assert_refused("rfnnest", other, other / NEST)
    # a truncated fusion network
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / NEST).symlink_to(synthetic / NEST)
    assert_refused("rfnnest", cut, truncated_copy(synthetic / RFN, cut / RFN, 100_000))


def test_tensor_path_on_a_small_pair(method) -> None:
    ir, vi, _ = assert_tensor_path(method, seed=1)
    assert method.fuse(ir, vi).shape == (1, 1, 37, 53)


def test_crop_path_switches(synthetic: Path) -> None:
    """Above the threshold the 4 crops are stitched; without them the whole image is fused at once."""
    rng = np.random.default_rng(0)
    ir, vi = (rng.integers(0, 256, (40, 47), dtype=np.uint8) for _ in range(2))
    whole = create_method("rfnnest", weights=synthetic)
    crops = create_method("rfnnest", weights=synthetic, crop_threshold=32)
    no_crops = create_method("rfnnest", weights=synthetic, crop_threshold=32, crop_large=False)
    with torch.inference_mode():
        a, b, c = (m.fuse_float(ir, vi) for m in (whole, crops, no_crops))
    assert a.shape == b.shape == (40, 47)
    assert np.array_equal(a, c) and not np.array_equal(a, b)
    # the official min-max: eps in the denominator, truncation
    q = whole.quantise(np.array([[0.0, 1.0], [2.0, 4.0]], dtype=np.float32))
    assert q.tolist() == [[0, 63], [127, 254]]


@pytest.mark.gpu
def test_runs_on_cuda(synthetic: Path, cuda: torch.device) -> None:
    assert_cpu_gpu_float_close(lambda: create_method("rfnnest", weights=synthetic, crop_threshold=48), cuda)
