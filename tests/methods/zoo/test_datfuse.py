"""DATFuse (``datfuse``) against what its official ``Test.py`` wrote, on the official weights.

``../shared/zoo/datfuse/official/<pair>.png`` is the output of the unmodified ``Test.py``
(tthinking/DATFuse@0cd93f15) on CPU; ``llvip_190001`` holds 5 negative outputs wrapped to ~243.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fusebench.methods import create_method
from fusebench.methods.base import WeightsError
from fusebench.methods.zoo.datfuse import DATFuse, float_to_uint8
from tests.methods.zoo.conftest import PAIRS, assert_matches_official, read_official

WEIGHTS = "datfuse/weights/model_10.pth"


@pytest.fixture(scope="module")
def method(zoo: Path) -> DATFuse:
    return create_method("datfuse", weights=zoo / WEIGHTS).eval()


def test_official_weights_load_strictly(zoo: Path, method: DATFuse) -> None:
    state = torch.load(zoo / WEIGHTS, map_location="cpu", weights_only=True)
    own = method.net.state_dict()
    assert set(own) == set(state)
    assert all(torch.equal(own[k], v) for k, v in state.items())
    assert method.negatives == "wrap"


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_matches_official_output(zoo: Path, pair_files: dict, method: DATFuse, pair: str) -> None:
    ir, vi = pair_files[pair]
    assert_matches_official(method.fuse_files(ir, vi), read_official(zoo / "datfuse" / "official" / f"{pair}.png"))


def test_wrong_weights_name_the_file(zoo: Path, tmp_path: Path) -> None:
    other = zoo / "ifcnn" / "weights" / "IFCNN-MAX.pth"
    with pytest.raises(WeightsError, match="IFCNN-MAX.pth"):
        create_method("datfuse", weights=other)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes((zoo / WEIGHTS).read_bytes()[:20_000])
    with pytest.raises(WeightsError, match="truncated.pth"):
        create_method("datfuse", weights=truncated)


def test_tensor_path_small_pair(method: DATFuse) -> None:
    gen = torch.Generator().manual_seed(0)
    ir, vi = torch.rand(1, 1, 37, 53, generator=gen), torch.rand(1, 3, 37, 53, generator=gen)
    out = method.fuse_images(ir, vi)
    assert out.shape == (1, 1, 37, 53)
    assert out.min() >= 0 and out.max() <= 1


def test_negative_values_wrap_or_saturate() -> None:
    x = np.array([-13.97, -0.5, 0.0, 12.99, 254.9, -255.0], dtype=np.float32)
    np.testing.assert_array_equal(float_to_uint8(x), [243, 0, 0, 12, 254, 1])
    np.testing.assert_array_equal(float_to_uint8(x, "saturate"), [0, 0, 0, 12, 254, 0])
    with pytest.raises(ValueError, match="negatives"):
        DATFuse(negatives="clip")  # type: ignore[arg-type]
