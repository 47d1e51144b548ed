"""Fixtures for the metric tests: single-threaded torch (the CI box is shared) and the real triples."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # numpy_reference, metric_data beside this file

from metric_data import TRIPLES, load_triple


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """OpenMP with 2 threads on an oversubscribed machine is ~30x slower than 1 thread; restore afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def triples(shared_data: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return {name: load_triple(shared_data, name) for name in TRIPLES}


