"""Shared fixtures: where the real benchmark images are, and device selection.

The real images live in ``../shared/datasets`` beside the checkout (or ``$FUSEBENCH_DATA``). In CI
(``CI=true``) their absence is an error, not a skip: those tests must run there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _shared_datasets() -> Path:
    env = os.environ.get("FUSEBENCH_DATA")
    return Path(env) if env else REPO.parent / "shared" / "datasets"


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
