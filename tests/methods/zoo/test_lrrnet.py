"""LRRNet (``lrrnet``) against what its official test script wrote, on the official weights.

``../shared/zoo/lrrnet/official/<pair>.png`` is the output of the unmodified ``testing_fusion_lrr.py``
(hli1221/imagefusion-LRRNet@e489fc32) on CPU. The exactness tests are slow (the network keeps 256 feature
channels at full resolution: ~20-60 s per pair on one thread, ~6 GB for the 1280x1024 pair).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fusebench.methods import create_method
from fusebench.methods.base import WeightsError
from fusebench.methods.zoo.lrrnet import PRETRAINED, LRRNet, soft_threshold
from tests.methods.zoo.conftest import PAIRS, assert_matches_official, read_official

WEIGHTS = f"lrrnet/weights/{PRETRAINED.files[0].file}"


@pytest.fixture(scope="module")
def method(zoo: Path) -> LRRNet:
    return create_method("lrrnet", weights=zoo / WEIGHTS).eval()


def test_official_weights_load_strictly(zoo: Path, method: LRRNet) -> None:
    state = torch.load(zoo / WEIGHTS, map_location="cpu", weights_only=True)
    own = method.net.state_dict()
    assert set(own) == set(state)
    assert all(torch.equal(own[k], v) for k, v in state.items())
    assert method.cfg["weights_files"] == [str(zoo / WEIGHTS)]
    assert type(method).vi_reader == "cv2_gray"


@pytest.mark.slow
@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_matches_official_output(zoo: Path, pair_files: dict, method: LRRNet, pair: str) -> None:
    ir, vi = pair_files[pair]
    assert_matches_official(method.fuse_files(ir, vi), read_official(zoo / "lrrnet" / "official" / f"{pair}.png"))


def test_wrong_weights_name_the_file(zoo: Path, tmp_path: Path) -> None:
    other = zoo / "datfuse" / "weights" / "model_10.pth"
    with pytest.raises(WeightsError, match="model_10.pth"):
        create_method("lrrnet", weights=other)
    truncated = tmp_path / "truncated.model"
    truncated.write_bytes((zoo / WEIGHTS).read_bytes()[:50_000])
    with pytest.raises(WeightsError, match="truncated.model"):
        create_method("lrrnet", weights=truncated)


def test_tensor_path_small_pair(method: LRRNet) -> None:
    gen = torch.Generator().manual_seed(0)
    ir, vi = torch.rand(1, 1, 37, 53, generator=gen), torch.rand(1, 3, 37, 53, generator=gen)
    out = method.fuse_images(ir, vi)
    assert out.shape == (1, 1, 37, 53)
    assert out.min() >= 0 and out.max() <= 1
    assert out.max() == 254 / 255  # the official min-max with eps never reaches 255


def test_soft_threshold_is_the_official_formula() -> None:
    gen = torch.Generator().manual_seed(1)
    r = torch.randn(2, 6, 9, 11, generator=gen)
    lam = torch.tensor([[0.1, -0.2, 0.0, 0.5, -0.01, 0.3]])  # negative thresholds occur in the weights
    expected = torch.sign(r) * torch.clamp(torch.abs(r) - lam.reshape(1, -1, 1, 1), 0)
    assert torch.equal(soft_threshold(r, lam), expected)


def test_clamp_option_is_the_cpu_branch(method: LRRNet) -> None:
    rng = np.random.default_rng(2)
    ir, vi = rng.integers(0, 256, (2, 24, 31), dtype=np.uint8)
    default = method.fuse_uint8(ir, vi)
    method.clamp_before_minmax = True
    try:
        clamped = method.fuse_uint8(ir, vi)
    finally:
        method.clamp_before_minmax = False
    with torch.inference_mode():
        raw = method.net(*(method._to_input(a) for a in (ir, vi)))[0, 0].numpy()
    lo = np.clip(raw, 0, 255)
    expected = ((lo - lo.min()) / (lo.max() - lo.min() + np.float32(1e-5)) * np.float32(255)).astype(np.uint8)
    np.testing.assert_array_equal(clamped, expected)
    assert default.dtype == clamped.dtype == np.uint8
