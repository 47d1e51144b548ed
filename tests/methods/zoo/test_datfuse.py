"""DATFuse (``datfuse``) against what its official ``Test.py`` wrote, on the official weights.

``../shared/zoo/datfuse/official/<pair>.png`` is the output of the unmodified ``Test.py``
(tthinking/DATFuse@0cd93f15) on CPU; ``llvip_190001`` holds 5 negative outputs wrapped to ~243.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fusebench.methods.zoo.datfuse import DATFuse, float_to_uint8
from tests.methods.zoo.conftest import (
    PAIRS,
    assert_official_pair,
    assert_refused,
    assert_state_equal,
    assert_tensor_path,
    build_method,
    truncated_copy,
)

WEIGHTS = "datfuse/weights/model_10.pth"


@pytest.fixture(scope="module")
def method(zoo: Path) -> DATFuse:
    return build_method("datfuse", zoo / WEIGHTS)


def test_official_weights_load_strictly(zoo: Path, method: DATFuse) -> None:
    state = torch.load(zoo / WEIGHTS, map_location="cpu", weights_only=True)
    assert_state_equal(method.net.state_dict(), state)
    assert method.negatives == "wrap"


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_matches_official_output(zoo: Path, pair_files: dict, method: DATFuse, pair: str) -> None:
    assert_official_pair(method, pair_files, pair, zoo / "datfuse" / "official")


def test_wrong_weights_name_the_file(zoo: Path, tmp_path: Path) -> None:
    assert_refused("datfuse", zoo / "ifcnn" / "weights" / "IFCNN-MAX.pth", "IFCNN-MAX.pth")
    assert_refused("datfuse", truncated_copy(zoo / WEIGHTS, tmp_path / "truncated.pth", 20_000), "truncated.pth")


def test_tensor_path_small_pair(method: DATFuse) -> None:
    assert_tensor_path(method)


def test_negative_values_wrap_or_saturate() -> None:
    x = np.array([-13.97, -0.5, 0.0, 12.99, 254.9, -255.0], dtype=np.float32)
    np.testing.assert_array_equal(float_to_uint8(x), [243, 0, 0, 12, 254, 1])
    np.testing.assert_array_equal(float_to_uint8(x, "saturate"), [0, 0, 0, 12, 254, 0])
    with pytest.raises(ValueError, match="negatives"):
        DATFuse(negatives="clip")  # type: ignore[arg-type]
