"""Properties every registered metric must have: metadata, batch == per-image, float32 ~ float64, input checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from metric_data import random_triple

import fusebench.metrics as M
from fusebench.registry import UnknownNameError

ALL = M.list_metrics()
H, W = 45, 53  # odd sizes, >= the min_size of every metric but MS-SSIM (176), which gets 179x181


@pytest.fixture(scope="module")
def batches():
    out = {}
    for h, w in ((H, W), (179, 181)):
        f, a, b = random_triple(np.random.default_rng(7), h, w, n=3)
        out[h] = tuple(torch.from_numpy(x)[:, None] for x in (f, a, b))
    return out


@pytest.fixture
def batch(batches, name):
    return batches[H] if M.get_metric(name).min_size <= H else batches[179]


def test_registry_lists_every_functional_metric():
    assert set(ALL) == {"AG", "CC", "CE", "EI", "EN", "MI", "MSE", "NLPD", "Nabf", "PSNR", "Qabf", "Qcb", "Qcv",
                        "RMSE", "SCD", "SD", "SF", "SSIM", "MS_SSIM", "VIF", "VIFF"}
    assert set(M.DEFAULT_METRICS) <= set(ALL)
    assert M.get_metric("qabf").name == "Qabf"  # lower-case alias
    assert M.list_metrics("Q*") == ["Qabf", "Qcb", "Qcv"]


def test_unknown_metric_suggests_names():
    with pytest.raises(UnknownNameError, match="Did you mean: Qabf"):
        M.get_metric("Qabff")


@pytest.mark.parametrize("name", ALL)
def test_metadata(name):
    e = M.get_metric(name)
    assert isinstance(e.higher_is_better, bool) and isinstance(e.needs_sources, bool)
    assert e.description and e.version >= 1 and "fusebench" in e.definitions
    assert e.higher_is_better == (name not in {"Nabf", "CE", "Qcv", "MSE", "RMSE", "NLPD"})
    assert e.needs_sources == (name not in {"EN", "SD", "SF", "AG", "EI"})
    with pytest.raises(TypeError):
        e.meta["higher_is_better"] = not e.higher_is_better  # read-only
    json.dumps(M.metric_info(name))


def test_register_requires_a_direction():
    with pytest.raises(TypeError, match="higher_is_better"):
        M.register_metric("bogus", higher_is_better=None, description="x")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ALL)
def test_batch_equals_per_image(name, batch):
    fn = M.get_metric(name).factory
    together = fn(*batch)
    assert together.shape == (3,) and together.dtype == torch.float64
    for i in range(3):
        alone = fn(*(x[i] for x in batch))
        torch.testing.assert_close(together[i:i + 1], alone, rtol=1e-12, atol=1e-12)
    assert fn(*batch, reduction="mean").item() == pytest.approx(together.mean().item())


@pytest.mark.parametrize("name", ALL)
def test_float32_close_to_float64(name, batch):
    fn = M.get_metric(name).factory
    f64 = fn(*(x.double() / 255 for x in batch), data_range=1.0)
    f32 = fn(*(x.float() for x in batch), data_range=255.0)
    assert f32.dtype == torch.float32
    torch.testing.assert_close(f64, fn(*batch), rtol=1e-9, atol=1e-12)  # scale-free: [0,1] == 0..255
    torch.testing.assert_close(f32.double(), f64, rtol=2e-4, atol=1e-5)


def _with(batch, i, value):
    out = list(batch)
    out[i] = value
    return out


@pytest.mark.parametrize("name", ALL)
def test_bad_inputs(name, batch):
    fn = M.get_metric(name).factory
    f, a, b = batch
    src = M.get_metric(name).needs_sources
    i = 1 if src else 0
    with pytest.raises(ValueError, match="pass data_range=1.0"):
        fn(f.double(), a.double(), b.double())
    with pytest.raises(ValueError, match="only finite values"):
        fn(*_with([x.double() for x in batch], i, torch.full_like(f, float("nan"), dtype=torch.float64)),
           data_range=255.0)
    with pytest.raises(ValueError, match="only finite values"):
        fn(*_with([x.double() for x in batch], i, torch.full_like(f, float("inf"), dtype=torch.float64)),
           data_range=255.0)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        fn(*_with([x.double() / 255 for x in batch], i, a.double()), data_range=1.0)
    with pytest.raises(TypeError, match="uint8 .* or floating point"):
        fn(*_with(batch, i, a.to(torch.int32)))
    with pytest.raises(TypeError, match="torch.Tensor, numpy.ndarray or PIL.Image"):
        fn(*_with(batch, i, [[1, 2], [3, 4]]))
    with pytest.raises(ValueError, match="non-empty"):
        fn(*_with(batch, i, torch.zeros(3, 1, 0, batch[0].shape[-1], dtype=torch.uint8)))
    with pytest.raises(ValueError, match="grey"):
        fn(*_with(batch, 0, f.expand(-1, 3, -1, -1)))
    if src:
        with pytest.raises(ValueError, match="Expected `vi` and `fused` to have the same shape"):
            fn(f, a, b[..., :-1])
        with pytest.raises(ValueError, match="pass `ir` and `vi`"):
            fn(f, None, None)


@pytest.mark.parametrize("name", [m for m in ALL if M.get_metric(m).min_size > 1])
def test_too_small_images_are_rejected(name):
    m = M.get_metric(name).min_size
    x = torch.zeros(1, 1, m - 1, 64, dtype=torch.uint8)
    with pytest.raises(ValueError, match=f"at least {m}x{m}"):
        M.get_metric(name).factory(x, x, x)


@pytest.mark.parametrize("name", ALL)
def test_accepts_numpy_and_single_images(name, batch):
    fn = M.get_metric(name).factory
    want = fn(*(x[:1] for x in batch))
    torch.testing.assert_close(fn(*(x[0, 0].numpy() for x in batch)), want)  # (H, W) numpy


@pytest.mark.gpu
@pytest.mark.parametrize("name", ALL)
def test_cuda_matches_cpu(name, batch, cuda):
    fn = M.get_metric(name).factory
    torch.testing.assert_close(fn(*(x.to(cuda) for x in batch)).cpu(), fn(*batch), rtol=1e-9, atol=1e-12)


def test_accelerator_filter_path_equals_cpu_path():
    """The conv2d path used on CUDA gives the same numbers as the shifted-slice path (run here on CPU)."""
    from fusebench.metrics._filters import correlate1d, gaussian_1d, separable_conv

    x = torch.rand(2, 3, 40, 50, dtype=torch.float64) * 255
    w = gaussian_1d(9, 1.8)
    rows = [0.1, 0.5, -0.2]  # asymmetric: correlation, not convolution, in both paths
    slices = correlate1d(correlate1d(x, w, -1), rows, -2)
    conv = separable_conv(x, rows, w)
    torch.testing.assert_close(conv, slices, rtol=1e-12, atol=1e-10)
