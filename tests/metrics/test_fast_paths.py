"""The speed-ups must not change numbers: the shared-intermediate cache, strided filtering, polyphase upsampling."""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest
import torch
from metric_data import random_triple

import fusebench.metrics as M
from fusebench.metrics._cache import cached, shared_intermediates
from fusebench.metrics._filters import correlate1d, gaussian_1d, pad, separable, separable_conv

nlpd_module = importlib.import_module("fusebench.metrics.nlpd")


@pytest.fixture(scope="module")
def triple_180():
    """Two 180x190 triples: large enough for every metric (MS-SSIM needs 176)."""
    return random_triple(np.random.default_rng(5), 180, 190, n=2)


@pytest.mark.parametrize("profile", ["fusebench", "cddfuse", "tang", "vifb"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_evaluate_cache_gives_identical_numbers(triple_180, profile, dtype):
    names = M.list_metrics()
    with_cache = M.evaluate(*triple_180, metrics=names, profile=profile, dtype=dtype)
    without = M.evaluate(*triple_180, metrics=names, profile=profile, dtype=dtype, cache=False)
    pd.testing.assert_frame_equal(with_cache, without, check_exact=True)


def test_evaluate_cache_matches_functional_calls(triple_180):
    """Each column equals the metric called on its own (no scope, nothing shared)."""
    names = ["VIF", "VIFF", "SSIM", "MS_SSIM", "Qcb", "Qcv", "EN", "MI", "CE"]
    df = M.evaluate(*triple_180, metrics=names)
    f, a, b = (torch.from_numpy(x)[:, None] for x in triple_180)
    for name in names:
        want = M.get_metric(name).factory(f, a, b).numpy()
        np.testing.assert_array_equal(df[name].to_numpy(), want, err_msg=name)


def test_cached_computes_once_per_scope_and_key():
    x, y = torch.arange(6.0), torch.arange(6.0)
    calls = []

    def compute(tag):
        calls.append(tag)
        return len(calls)

    assert cached("k", (x,), None, lambda: compute("outside")) == 1  # no scope: always computed
    assert cached("k", (x,), None, lambda: compute("outside")) == 2
    with shared_intermediates():
        first = cached("k", (x,), None, lambda: compute("a"))
        assert cached("k", (x,), None, lambda: compute("again")) == first
        assert cached("k", (x,), "other", lambda: compute("param")) != first  # parameters are part of the key
        assert cached("k", (y,), None, lambda: compute("tensor")) != first  # so is the tensor's identity
        assert cached("other", (x,), None, lambda: compute("name")) != first
        x.add_(1)  # an in-place change bumps the version: recomputed
        assert cached("k", (x,), None, lambda: compute("modified")) != first
    with shared_intermediates():  # a new scope starts empty
        assert cached("k", (x,), None, lambda: compute("new scope")) == len(calls)
    assert calls == ["outside", "outside", "a", "param", "tensor", "name", "modified", "new scope"]


@pytest.mark.parametrize("shape", [(480, 640), (37, 53), (64, 33)])
def test_strided_separable_is_subsampled_full(shape):
    x = torch.rand(2, 3, *shape, dtype=torch.float64) * 255
    w = gaussian_1d(9, 1.8)
    rows = [0.1, 0.5, -0.2, 0.0, 0.3]
    full = separable(x, rows, w, padding="symmetric")
    assert torch.equal(separable(x, rows, w, padding="symmetric", step=2), full[..., ::2, ::2])
    conv = separable_conv(pad(x, 2, 4, "symmetric"), rows, w, step=2)
    torch.testing.assert_close(conv, full[..., ::2, ::2], rtol=1e-12, atol=1e-10)


def test_correlate1d_into_out():
    x = torch.rand(1, 2, 20, 30, dtype=torch.float64)
    out = torch.empty(1, 2, 20, 26, dtype=torch.float64)
    res = correlate1d(x, [0.2, 0.0, 0.5, 0.1, 0.2], -1, out=out)
    assert res.data_ptr() == out.data_ptr()
    assert torch.equal(out, correlate1d(x, [0.2, 0.0, 0.5, 0.1, 0.2], -1))


@pytest.mark.parametrize("shape", [(480, 640), (37, 53), (64, 33)])
def test_polyphase_upsampling_is_bit_identical(shape):
    """NLPD's expand step equals filtering the zero-interleaved image, as NLP_dist.m does it."""
    h, w = shape
    taps = nlpd_module._TAPS
    x = torch.rand(2, 1, h, w, dtype=torch.float64)
    low = separable(pad(x, 2, 2, "symmetric"), taps, taps, step=2)
    rep = pad(low, 1, 1, "replicate")
    up = torch.zeros(*rep.shape[:-2], 2 * rep.shape[-2], 2 * rep.shape[-1], dtype=x.dtype)
    up[..., ::2, ::2] = 4 * rep
    want = separable(up, taps, taps, padding="zeros")[..., 2:2 + h, 2:2 + w]
    got = nlpd_module._upsample_blur(nlpd_module._upsample_blur(4 * rep, -1, w), -2, h)
    assert torch.equal(got, want)


def _strips_of(monkeypatch, rows):
    """Force strips of ``rows`` rows (None: whole images) on the eager CPU path."""
    import fusebench.metrics._filters as filters

    real = filters.strip_rows
    monkeypatch.setattr(filters, "strip_rows", lambda x, minimum=8: x.shape[-2] if rows is None else rows)
    for mod in ("edge", "ssim", "vif"):
        monkeypatch.setattr(importlib.import_module(f"fusebench.metrics.{mod}"), "strip_rows", filters.strip_rows)
    return real


@pytest.mark.parametrize("profile", ["fusebench", "cddfuse", "tang"])
def test_strips_equal_whole_images(triple_180, monkeypatch, profile):
    """Cache-blocked strips (any strip height, the last one short) give the whole-image numbers to rounding."""
    names = ["Qabf", "Nabf", "SSIM", "MS_SSIM", "VIF", "VIFF"]
    _strips_of(monkeypatch, None)
    whole = M.evaluate(*triple_180, metrics=names, profile=profile)
    for rows in (7, 16):
        _strips_of(monkeypatch, rows)
        got = M.evaluate(*triple_180, metrics=names, profile=profile)
        np.testing.assert_allclose(got.to_numpy(), whole.to_numpy(), rtol=1e-13, atol=0, err_msg=str(rows))


def test_strip_rows_whole_image_when_compiled_or_accelerated():
    from fusebench.metrics import _filters

    x = torch.zeros(1, 3, 480, 640, dtype=torch.float64)
    assert 8 <= _filters.strip_rows(x) < 480
    with M.compiled_kernels():
        assert _filters.strip_rows(x) == 480
    assert _filters.strip_rows(x.to("meta")) == 480


def test_separable_strips_cover_the_full_filter():
    from fusebench.metrics._filters import separable_strips

    x = torch.rand(2, 3, 61, 47, dtype=torch.float64)
    w = gaussian_1d(9, 1.8)
    full = separable(x * x, w, w)
    blocks = list(separable_strips(x, w, w, 10, prepare=lambda t: t * t))
    assert [r0 for r0, _ in blocks] == list(range(0, 53, 10))
    assert torch.equal(torch.cat([b for _, b in blocks], dim=-2), full)


@pytest.mark.parametrize("name", ["SD", "CC", "SCD", "PSNR", "MSE", "RMSE"])
def test_exact_gram_statistics_match_the_direct_passes(triple_180, name):
    """Inside evaluate() the global statistics come from one exact int64 Gram matrix of the integer levels."""
    from fusebench.metrics._checks import integer_inputs

    f, a, b = (torch.from_numpy(x)[:, None].double() for x in triple_180)
    b[1] = 77.0  # a constant source: CC and SCD are NaN both ways
    fn = M.get_metric(name).factory
    direct = fn(f, a, b, data_range=255.0)
    with integer_inputs():
        exact = fn(f, a, b, data_range=255.0)
    if name in ("MSE", "PSNR", "RMSE"):  # sums of integer squares: the same numbers
        assert torch.equal(exact, direct)
    torch.testing.assert_close(exact, direct, rtol=1e-14, atol=0, equal_nan=True)
