"""CDDFuse against the official code run on a synthetic checkpoint in the official format.

``../shared/zoo/cddfuse/synthetic/`` holds ``CDDFuse_IVF.pth`` (official init, seed 0), the official script's
outputs ``<pair>.png`` and the float maps it handed to ``imsave`` (``<pair>.float32.npy``, 0..255).
Float tolerance: 2e-3 grey levels absolute (the port reproduces the official float32 operations; measured
difference 0.0 on every pair).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from fusebench.methods.base import METHODS, WeightsError, create_method
from fusebench.methods.zoo.cddfuse import COMMIT, CDDFuse
from tests.methods.zoo.conftest import assert_matches_official, read_official

SYNTH_PAIRS = ["tno_01", "msrs_00004N", "roadscene_FLIR_00006"]
FLOAT_ATOL = 2e-3


@pytest.fixture(scope="module")
def synth(zoo: Path) -> Path:
    return zoo / "cddfuse" / "synthetic"


@pytest.fixture(scope="module")
def method(synth: Path) -> CDDFuse:
    m = create_method("cddfuse", weights=synth / "CDDFuse_IVF.pth")
    assert isinstance(m, CDDFuse)
    return m.eval()


@pytest.fixture(scope="module")
def outputs(method: CDDFuse, pair_files) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """pair -> (fuse_files output, the float map fuse_uint8 quantised), each pair fused once."""
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    original = method.fuse_float

    def run(key: str) -> tuple[np.ndarray, np.ndarray]:
        if key not in cache:
            seen: list[np.ndarray] = []

            def recording(ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
                seen.append(original(ir, vi))
                return seen[-1]

            method.fuse_float = recording  # type: ignore[method-assign]
            try:
                out = method.fuse_files(*pair_files[key])
            finally:
                del method.fuse_float
            cache[key] = (out, seen[0])
        return cache[key]

    return run  # type: ignore[return-value]


def test_synthetic_checkpoint_loads_strictly(method: CDDFuse, synth: Path) -> None:
    state = torch.load(synth / "CDDFuse_IVF.pth", map_location="cpu", weights_only=True)
    assert sorted(state) == ["BaseFuseLayer", "DIDF_Decoder", "DIDF_Encoder", "DetailFuseLayer"]
    ours = method.state_dict()
    assert len(ours) == sum(len(v) for v in state.values()) == 158
    for key, sub in state.items():
        for name, value in sub.items():
            assert torch.equal(ours[f"{key}.{name.removeprefix('module.')}"], value)
    assert method.cfg["weights_files"] == [str(synth / "CDDFuse_IVF.pth")]


@pytest.mark.slow
@pytest.mark.parametrize("pair", SYNTH_PAIRS)
def test_matches_official_output(outputs, synth: Path, pair: str) -> None:
    out, _ = outputs(pair)
    assert_matches_official(out, read_official(synth / f"{pair}.png"))


@pytest.mark.slow
@pytest.mark.parametrize("pair", SYNTH_PAIRS)
def test_matches_official_float_map(outputs, synth: Path, pair: str) -> None:
    _, fmap = outputs(pair)
    ref = np.load(synth / f"{pair}.float32.npy")
    assert fmap.dtype == np.float32 and fmap.shape == ref.shape
    np.testing.assert_allclose(fmap, ref, rtol=0, atol=FLOAT_ATOL)


def test_wrong_checkpoint_names_file(zoo: Path, tmp_path: Path) -> None:
    other = zoo / "emma" / "synthetic" / "EMMA.pth"
    with pytest.raises(WeightsError, match="EMMA.pth"):
        create_method("cddfuse", weights=other)
    truncated = tmp_path / "CDDFuse_IVF.pth"
    truncated.write_bytes((zoo / "cddfuse" / "synthetic" / "CDDFuse_IVF.pth").read_bytes()[:100_000])
    with pytest.raises(WeightsError, match=str(truncated)):
        create_method("cddfuse", weights=truncated)


def test_state_dict_mismatch_names_file(method: CDDFuse, tmp_path: Path) -> None:
    state = {k: {f"module.{n}": t for n, t in getattr(method, k).state_dict().items()}
             for k in ("DIDF_Encoder", "DIDF_Decoder", "BaseFuseLayer", "DetailFuseLayer")}
    del state["DIDF_Decoder"]["module.reduce_channel.weight"]
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match="broken.pth.*DIDF_Decoder"):
        create_method("cddfuse", weights=path)


def test_tensor_path_any_size(method: CDDFuse) -> None:
    g = torch.Generator().manual_seed(0)
    ir = torch.rand(1, 1, 37, 53, generator=g)
    vi = torch.rand(1, 3, 37, 53, generator=g)
    out = method.fuse_images(ir, vi)
    assert out.shape == (1, 1, 37, 53)
    assert float(out.min()) == 0.0 and float(out.max()) == 1.0  # the official min-max stretch
    grey = method.fuse(ir, vi[:, :1])
    assert grey.shape == (1, 1, 37, 53) and 0 <= float(grey.min()) <= float(grey.max()) <= 1


def test_registered_metadata() -> None:
    entry = METHODS.get("cddfuse")
    assert entry.license == "none" and entry.trainable is False
    assert entry.pretrained.files[0].url.endswith(f"{COMMIT}/models/CDDFuse_IVF.pth")


@pytest.mark.gpu
def test_runs_on_cuda(method: CDDFuse, cuda: torch.device) -> None:
    """Inputs are created on the parameters' device; CUDA agrees with the CPU up to TF32/cuDNN rounding."""
    rng = np.random.default_rng(0)
    ir, vi = (rng.uniform(0, 255, (64, 96)).round().astype(np.float32) for _ in range(2))
    on_gpu = copy.deepcopy(method).to(cuda)
    np.testing.assert_allclose(on_gpu.fuse_float(ir, vi), method.fuse_float(ir, vi), rtol=0, atol=2.0)
