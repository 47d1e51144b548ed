"""Fixtures for the published networks: the official weights and outputs in ``../shared/zoo``.

``../shared/zoo/<method>/official/<pair>.png`` is what the official test script wrote for a public pair of
``../shared/datasets``; a method passes when >= 99.9 % of its pixel values are equal to it and none is more
than one grey level away (the bar the zoo's README sets: CPU vs GPU rounding at quantisation boundaries).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO

# zoo pair key -> (infrared, visible) relative to the datasets root
PAIRS: dict[str, tuple[str, str]] = {
    "tno_01": ("tno/ir/01.png", "tno/vi/01.png"),
    "msrs_00004N": ("msrs/test/ir/00004N.png", "msrs/test/vi/00004N.png"),
    "roadscene_FLIR_00006": ("roadscene/ir/FLIR_00006.jpg", "roadscene/vi/FLIR_00006.jpg"),
    "llvip_190001": ("llvip/test/ir/190001.jpg", "llvip/test/vi/190001.jpg"),
}


@pytest.fixture(scope="session")
def zoo() -> Path:
    """Root of the official weights and outputs (``$FUSEBENCH_ZOO``, else ``../shared/zoo``)."""
    root = Path(os.environ.get("FUSEBENCH_ZOO") or REPO.parent / "shared" / "zoo").resolve()
    if not (root / "README.md").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"official weights and outputs not found at {root}; set FUSEBENCH_ZOO")
        pytest.skip(f"official weights and outputs not found at {root}")
    return root


@pytest.fixture(scope="session")
def pair_files(shared_data: Path) -> dict[str, tuple[Path, Path]]:
    """zoo pair key -> (infrared file, visible file)."""
    return {key: (shared_data / ir, shared_data / vi) for key, (ir, vi) in PAIRS.items()}


def read_official(path: Path) -> np.ndarray:
    return np.array(Image.open(path))


def assert_matches_official(ours: np.ndarray, official: np.ndarray, *, share: float = 0.999, max_diff: int = 1) -> None:
    """>= ``share`` of the values equal and none more than ``max_diff`` levels away."""
    assert ours.dtype == np.uint8, ours.dtype
    assert ours.shape == official.shape, (ours.shape, official.shape)
    diff = np.abs(ours.astype(np.int16) - official.astype(np.int16))
    equal = float((diff == 0).mean())
    assert equal >= share and int(diff.max()) <= max_diff, (
        f"{equal:.5%} of values equal (need {share:.1%}), max |diff| {int(diff.max())} (allowed {max_diff})"
    )
