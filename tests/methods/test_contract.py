"""Every registered method honours the FusionMethod contract (registering a method tests it)."""

from __future__ import annotations

import time

import pytest
import torch

from fusebench.methods import METHODS, WeightsError, create_method, list_methods
from fusebench.pretrained import WeightsUnavailableError

# Published networks: official weights are downloaded on first use (their own tests load them from ../shared/zoo).
ZOO = [m for m in list_methods() if "pretrained" in METHODS.get(m).meta]
# Methods whose weights cannot exist on a machine without network access: they must say how to get them.
NEEDS_EXTERNAL_WEIGHTS = {"maefuse", "maefuse-base", "maefuse-official", *ZOO}
NEEDS_ARGUMENTS = {"folder"}  # covered in test_base.py and test_runner.py
RUNNABLE = [m for m in list_methods() if m not in NEEDS_EXTERNAL_WEIGHTS | NEEDS_ARGUMENTS]


def _pair(batch: int, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(batch, 1, 37, 53, generator=g), torch.rand(batch, channels, 37, 53, generator=g)


@pytest.mark.parametrize("name", RUNNABLE)
def test_odd_size_in_same_size_out_finite_in_range(name: str) -> None:
    method = create_method(name).eval()
    ir, vi = _pair(2, 3)
    with torch.inference_mode():
        fused = method.fuse_images(ir, vi, ids=["a", "b"])
        alone = method.fuse_images(ir[1:], vi[1:], ids=["b"])
    assert fused.shape == (2, 3, 37, 53)
    assert torch.isfinite(fused).all() and fused.min() >= 0 and fused.max() <= 1
    torch.testing.assert_close(fused[1:], alone, atol=1e-4, rtol=0)  # no dependence on batch mates
    assert fused.std() > 0.01  # not a constant image


@pytest.mark.parametrize("name", ZOO)
def test_zoo_network_contract_on_random_weights(name: str) -> None:
    """The official pipeline around an untrained network: any size in, same size out, in range, per pair."""
    method = create_method(name, random_init=True).eval()
    ir, vi = _pair(2, 3)
    with torch.inference_mode():
        fused = method.fuse_images(ir, vi, ids=["a", "b"])
        alone = method.fuse_images(ir[1:], vi[1:], ids=["b"])
    assert fused.shape[0] == 2 and fused.shape[1] in (1, 3) and fused.shape[-2:] == (37, 53)
    assert torch.isfinite(fused).all() and fused.min() >= 0 and fused.max() <= 1
    torch.testing.assert_close(fused[1:], alone, atol=1e-4, rtol=0)
    assert method.cfg["random_init"] is True  # recorded, so tables mark or refuse the run


@pytest.mark.parametrize("name", [*RUNNABLE, *ZOO])
def test_metadata(name: str) -> None:
    entry = METHODS.get(name)
    assert entry.meta.get("description"), f"{name} has no description"
    assert callable(entry.meta["train"]) if entry.meta["trainable"] else "train" not in entry.meta


@pytest.mark.parametrize("name", sorted(NEEDS_EXTERNAL_WEIGHTS))
def test_missing_external_weights_say_how_to_get_them(name: str, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FUSEBENCH_HOME", str(tmp_path))
    monkeypatch.setenv("FUSEBENCH_OFFLINE", "1")  # never start a real download from a test
    start = time.perf_counter()
    with pytest.raises((WeightsError, WeightsUnavailableError)) as info:
        create_method(name)
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert "weights" in message and ("train" in message or "http" in message)
    if "pretrained" in METHODS.get(name).meta:
        assert str(tmp_path / "weights" / name) in message  # where to put the files
