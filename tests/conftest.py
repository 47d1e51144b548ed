"""Shared fixtures: where the real benchmark images are, and device selection.

The real images live in ``../shared/datasets`` beside the checkout (or ``$FUSEBENCH_DATA``). In CI
(``CI=true``) their absence is an error, not a skip: those tests must run there.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fusebench.malloc import keep_freed_memory

REPO = Path(__file__).resolve().parents[1]


keep_freed_memory()  # CPU-bound tests allocate large feature maps again and again (fusebench/malloc.py)


def _shared_datasets() -> Path:
    env = os.environ.get("FUSEBENCH_DATA")
    return (Path(env) if env else REPO.parent / "shared" / "datasets").resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real benchmark images (tno/, roadscene/, msrs/, ..., triples/)."""
    root = _shared_datasets()
    if not (root / "tno").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"real benchmark images not found at {root}; set FUSEBENCH_DATA")
        pytest.skip(f"real benchmark images not found at {root}")
    return root


@pytest.fixture(scope="session")
def cuda() -> torch.device:
    """The CUDA device; tests that take it skip cleanly on machines without one."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    return torch.device("cuda")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture()
def folder_dataset(tmp_path):
    """Four pairs: grey and colour visible images, two sizes."""
    rng = np.random.default_rng(0)
    (tmp_path / "data" / "ir").mkdir(parents=True)
    (tmp_path / "data" / "vi").mkdir(parents=True)
    for i, (h, w, colour) in enumerate([(48, 64, False), (48, 64, True), (57, 71, True), (57, 71, False)]):
        Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).save(tmp_path / "data" / "ir" / f"p{i}.png")
        vi = rng.integers(0, 256, (h, w, 3) if colour else (h, w), dtype=np.uint8)
        Image.fromarray(vi).save(tmp_path / "data" / "vi" / f"p{i}.png")
    return tmp_path / "data"
