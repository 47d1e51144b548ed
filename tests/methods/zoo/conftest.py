"""Fixtures for the published networks: the official weights and outputs in ``../shared/zoo``.

``../shared/zoo/<method>/official/<pair>.png`` is what the official test script wrote for a public pair of
``../shared/datasets``; a method passes when >= 99.9 % of its pixel values are equal to it and none is more
than one grey level away (the bar the zoo's README sets: CPU vs GPU rounding at quantisation boundaries).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor

from fusebench.methods.base import WeightsError, create_method
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


def build_method(name: str, weights: Path, cls: type | None = None, **options: Any) -> Any:
    """The module-scoped method of a zoo test: ``create_method(name, weights=...)`` in eval mode."""
    method = create_method(name, weights=weights, **options)
    if cls is not None:
        assert isinstance(method, cls)
    return method.eval()


def truncated_copy(src: Path, dst: Path, size: int) -> Path:
    """``dst`` holding the first ``size`` bytes of ``src`` (a cut-off download)."""
    dst.write_bytes(src.read_bytes()[:size])
    return dst


def assert_refused(name: str, weights: Path, names: str | Path | None = None) -> None:
    """``create_method(name, weights=weights)`` raises a WeightsError naming ``names`` (default: ``weights``)."""
    with pytest.raises(WeightsError, match=re.escape(str(weights if names is None else names))):
        create_method(name, weights=weights)


def assert_tensor_path(
    method: Any, *, seed: int = 0, shape: tuple[int, int] = (37, 53), out_channels: int = 1
) -> tuple[Tensor, Tensor, Tensor]:
    """``fuse_images`` on a random (ir grey, vi colour) pair of ``torch.rand`` images: shape and [0, 1] range.

    Returns ``(ir, vi, out)`` for the method's own further checks.
    """
    g = torch.Generator().manual_seed(seed)
    ir = torch.rand(1, 1, *shape, generator=g)
    vi = torch.rand(1, 3, *shape, generator=g)
    out = method.fuse_images(ir, vi)
    assert out.shape == (1, out_channels, *shape)
    assert out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1
    return ir, vi, out


def recorded_outputs(method: Any, pair_files: dict[str, tuple[Path, Path]]) -> Callable[[str], tuple[Any, Any]]:
    """pair -> (fuse_files output, the float map fuse_uint8 quantised), each pair fused once."""
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    original = method.fuse_float

    def run(key: str) -> tuple[np.ndarray, np.ndarray]:
        if key not in cache:
            seen: list[np.ndarray] = []

            def recording(ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
                seen.append(original(ir, vi))
                return seen[-1]

            method.fuse_float = recording
            try:
                out = method.fuse_files(*pair_files[key])
            finally:
                del method.fuse_float
            cache[key] = (out, seen[0])
        return cache[key]

    return run


def assert_official_pair(method: Any, pair_files: dict[str, tuple[Path, Path]], pair: str, folder: Path) -> None:
    """``method.fuse_files`` on ``pair`` matches the official ``folder/<pair>.png``."""
    assert_matches_official(method.fuse_files(*pair_files[pair]), read_official(folder / f"{pair}.png"))


def assert_cpu_gpu_float_close(build: Callable[[], Any], cuda: torch.device) -> None:
    """Two methods from ``build()``, one moved to ``cuda``: their ``fuse_float`` on a random 64x80 uint8 pair agree
    within 1 % of the output's largest magnitude."""
    rng = np.random.default_rng(0)
    ir, vi = (rng.integers(0, 256, (64, 80), dtype=np.uint8) for _ in range(2))
    cpu, gpu = build(), build().to(cuda)
    with torch.inference_mode():
        a, b = cpu.fuse_float(ir, vi), gpu.fuse_float(ir, vi)
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-2 * float(np.abs(a).max()))


def random_uint8_pair(seed: int, channels: int = 3, shape: tuple[int, int] = (37, 53)) -> tuple[Tensor, Tensor]:
    """A decoded (ir (1, 1, H, W), vi (1, channels, H, W)) pair of random 8-bit values scaled to [0, 1]."""
    rng = np.random.default_rng(seed)
    ir = torch.from_numpy(rng.integers(0, 256, (1, 1, *shape), dtype=np.uint8)).float() / 255
    vi = torch.from_numpy(rng.integers(0, 256, (1, channels, *shape), dtype=np.uint8)).float() / 255
    return ir, vi


def assert_float_map(fmap: np.ndarray, ref_path: Path, atol: float) -> None:
    """A recorded float map equals the official ``ref_path`` (``.npy``) within ``atol``, dtype and shape included."""
    ref = np.load(ref_path)
    assert fmap.dtype == np.float32 and fmap.shape == ref.shape
    np.testing.assert_allclose(fmap, ref, rtol=0, atol=atol)


def assert_copy_on_cuda_close(method: Any, cuda: torch.device, ir: np.ndarray, vi: np.ndarray, atol: float) -> None:
    """A deep copy of ``method`` on ``cuda`` gives ``fuse_float`` within ``atol`` of the CPU original."""
    on_gpu = copy.deepcopy(method).to(cuda)
    np.testing.assert_allclose(on_gpu.fuse_float(ir, vi), method.fuse_float(ir, vi), rtol=0, atol=atol)


def assert_state_equal(own: dict[str, Tensor], official: dict[str, Tensor]) -> None:
    """A loaded state dict has exactly the official keys, and every tensor equals the official one."""
    assert set(own) == set(official), sorted(set(own) ^ set(official))[:8]
    for key, value in official.items():
        assert torch.equal(own[key], value), key
