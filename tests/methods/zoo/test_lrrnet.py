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

from fusebench.methods.zoo.lrrnet import PRETRAINED, LRRNet, soft_threshold
from tests.methods.zoo.conftest import (
    PAIRS,
    assert_official_pair,
    assert_refused,
    assert_state_equal,
    assert_tensor_path,
    build_method,
    truncated_copy,
)

WEIGHTS = f"lrrnet/weights/{PRETRAINED.files[0].file}"


@pytest.fixture(scope="module")
def method(zoo: Path) -> LRRNet:
    return build_method("lrrnet", zoo / WEIGHTS)


def test_official_weights_load_strictly(zoo: Path, method: LRRNet) -> None:
    state = torch.load(zoo / WEIGHTS, map_location="cpu", weights_only=True)
    assert_state_equal(method.net.state_dict(), state)
    assert method.cfg["weights_files"] == [str(zoo / WEIGHTS)]
    assert type(method).vi_reader == "cv2_gray"


@pytest.mark.slow
@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_matches_official_output(zoo: Path, pair_files: dict, method: LRRNet, pair: str) -> None:
    assert_official_pair(method, pair_files, pair, zoo / "lrrnet" / "official")


def test_wrong_weights_name_the_file(zoo: Path, tmp_path: Path) -> None:
    assert_refused("lrrnet", zoo / "datfuse" / "weights" / "model_10.pth", "model_10.pth")
    assert_refused("lrrnet", truncated_copy(zoo / WEIGHTS, tmp_path / "truncated.model", 50_000), "truncated.model")


def test_tensor_path_small_pair(method: LRRNet) -> None:
    _, _, out = assert_tensor_path(method)
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
