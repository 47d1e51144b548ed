"""Shared fixtures: where the real benchmark images are, and device selection.

The real images live in ``../shared/datasets`` beside the checkout (or ``$FUSEBENCH_DATA``). In CI
(``CI=true``) their absence is an error, not a skip: those tests must run there.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def _raise_malloc_thresholds() -> None:
    """Keep freed memory in the heap: glibc ``mallopt`` at import (CPU-bound tests allocate large feature maps).

    By default glibc serves each block over 128 KiB-32 MiB with a fresh ``mmap`` and returns it on ``free``, so
    every large feature map of a zoo network pays its page faults again; with these thresholds they are reused.
    Same as ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_TOP_PAD_``, which must be set
    before Python starts. No-op off glibc.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return
    if not (hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt")):  # glibc only (musl has neither)
        return
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    big = 2**31 - 1  # mallopt takes an int: 2 GiB, above any single feature map of the zoo tests
    mallopt(m_mmap_threshold, big)
    mallopt(m_trim_threshold, big)
    mallopt(m_top_pad, 2**30)


_raise_malloc_thresholds()


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
