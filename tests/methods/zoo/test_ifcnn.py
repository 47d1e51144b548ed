"""IFCNN-MAX (``ifcnn``) against what the official ``IFCNN_Main.py`` (IV dataset) wrote, on the official weights.

``../shared/zoo/ifcnn/official/<pair>.png`` is the output of the unmodified script (uzeful/IFCNN@8fe59c2b) on
CPU: colour visible input, RGB output converted with cv2 RGB2GRAY.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fusebench.methods import create_method
from fusebench.methods.base import WeightsError
from fusebench.methods.zoo.ifcnn import IFCNN
from tests.methods.zoo.conftest import PAIRS, assert_matches_official, read_official

WEIGHTS = "ifcnn/weights/IFCNN-MAX.pth"


@pytest.fixture(scope="module")
def method(zoo: Path) -> IFCNN:
    return create_method("ifcnn", weights=zoo / WEIGHTS).eval()


def test_official_weights_load_strictly(zoo: Path, method: IFCNN) -> None:
    state = torch.load(zoo / WEIGHTS, map_location="cpu", weights_only=True)
    own = method.net.state_dict()
    # the file predates BatchNorm's num_batches_tracked; everything else must be there and equal
    assert set(state) == {k for k in own if not k.endswith("num_batches_tracked")}
    assert all(torch.equal(own[k], v) for k, v in state.items())
    assert (type(method).ir_reader, type(method).vi_reader) == ("pil_RGB", "pil_RGB")


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_matches_official_output(zoo: Path, pair_files: dict, method: IFCNN, pair: str) -> None:
    ir, vi = pair_files[pair]
    assert_matches_official(method.fuse_files(ir, vi), read_official(zoo / "ifcnn" / "official" / f"{pair}.png"))


def test_wrong_weights_name_the_file(zoo: Path, tmp_path: Path) -> None:
    other = zoo / "datfuse" / "weights" / "model_10.pth"
    with pytest.raises(WeightsError, match="model_10.pth"):
        create_method("ifcnn", weights=other)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes((zoo / WEIGHTS).read_bytes()[:100_000])
    with pytest.raises(WeightsError, match="truncated.pth"):
        create_method("ifcnn", weights=truncated)


def test_tensor_path_small_pair(method: IFCNN) -> None:
    gen = torch.Generator().manual_seed(0)
    ir, vi = torch.rand(1, 1, 37, 53, generator=gen), torch.rand(1, 3, 37, 53, generator=gen)
    out = method.fuse_images(ir, vi)
    assert out.shape == (1, 1, 37, 53)
    assert out.min() >= 0 and out.max() <= 1


def test_fusion_is_symmetric(method: IFCNN) -> None:
    gen = torch.Generator().manual_seed(3)
    a, b = torch.rand(1, 3, 20, 24, generator=gen), torch.rand(1, 3, 20, 24, generator=gen)
    with torch.inference_mode():
        assert torch.equal(method.net(a, b), method.net(b, a))
