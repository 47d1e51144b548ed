"""IFCNN-MAX (``ifcnn``) against what the official ``IFCNN_Main.py`` (IV dataset) wrote, on the official weights.

``../shared/zoo/ifcnn/official/<pair>.png`` is the output of the unmodified script (uzeful/IFCNN@8fe59c2b) on
CPU: colour visible input, RGB output converted with cv2 RGB2GRAY.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fusebench.methods.zoo.ifcnn import IFCNN
from tests.methods.zoo.conftest import (
    PAIRS,
    assert_official_pair,
    assert_refused,
    assert_tensor_path,
    build_method,
    truncated_copy,
)

WEIGHTS = "ifcnn/weights/IFCNN-MAX.pth"


@pytest.fixture(scope="module")
def method(zoo: Path) -> IFCNN:
    return build_method("ifcnn", zoo / WEIGHTS)


def test_official_weights_load_strictly(zoo: Path, method: IFCNN) -> None:
    state = torch.load(zoo / WEIGHTS, map_location="cpu", weights_only=True)
    own = method.net.state_dict()
    # the file predates BatchNorm's num_batches_tracked; everything else must be there and equal
    assert set(state) == {k for k in own if not k.endswith("num_batches_tracked")}
    assert all(torch.equal(own[k], v) for k, v in state.items())
    assert (type(method).ir_reader, type(method).vi_reader) == ("pil_RGB", "pil_RGB")


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_matches_official_output(zoo: Path, pair_files: dict, method: IFCNN, pair: str) -> None:
    assert_official_pair(method, pair_files, pair, zoo / "ifcnn" / "official")


def test_wrong_weights_name_the_file(zoo: Path, tmp_path: Path) -> None:
    assert_refused("ifcnn", zoo / "datfuse" / "weights" / "model_10.pth", "model_10.pth")
    assert_refused("ifcnn", truncated_copy(zoo / WEIGHTS, tmp_path / "truncated.pth", 100_000), "truncated.pth")


def test_tensor_path_small_pair(method: IFCNN) -> None:
    assert_tensor_path(method)


def test_fusion_is_symmetric(method: IFCNN) -> None:
    gen = torch.Generator().manual_seed(3)
    a, b = torch.rand(1, 3, 20, 24, generator=gen), torch.rand(1, 3, 20, 24, generator=gen)
    with torch.inference_mode():
        assert torch.equal(method.net(a, b), method.net(b, a))
