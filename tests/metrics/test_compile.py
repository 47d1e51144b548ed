"""torch.compile'd metric kernels: the same numbers as eager torch, and eager torch where compiling fails."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from metric_data import random_triple

import fusebench.metrics as M
from fusebench.metrics import _compile


@pytest.fixture
def fresh_compile_state(monkeypatch):
    """An empty failure record, so one test's simulated failure cannot switch compiling off for the rest."""
    monkeypatch.setattr(_compile, "_BROKEN", [])


def test_compiled_kernels_match_eager_for_every_metric(fresh_compile_state) -> None:
    torch._dynamo.utils.counters.clear()
    f, a, b = random_triple(np.random.default_rng(7), 176, 184, n=2)  # MS-SSIM needs 176 px
    names = M.list_metrics()
    eager = M.evaluate(f, a, b, metrics=names)
    compiled = M.evaluate(f, a, b, metrics=names, compile=True)
    np.testing.assert_allclose(compiled.to_numpy(), eager.to_numpy(), rtol=1e-10, atol=1e-12)
    assert _compile._BROKEN == []  # no silent fallback: the kernels really ran compiled
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 10


def test_compiled_float32_stays_within_float32_rounding(fresh_compile_state) -> None:
    f, a, b = random_triple(np.random.default_rng(8), 64, 72)
    names = ["VIF", "SSIM", "Qabf"]
    eager = M.evaluate(f, a, b, metrics=names)
    compiled = M.evaluate(f, a, b, metrics=names, dtype=torch.float32, compile=True)
    np.testing.assert_allclose(compiled.to_numpy(), eager.to_numpy(), rtol=2e-4, atol=1e-5)


def test_functional_metrics_compile_inside_the_context(fresh_compile_state) -> None:
    f, a, b = (torch.from_numpy(x) for x in random_triple(np.random.default_rng(9), 48, 56))
    with M.compiled_kernels():
        got = M.qabf(f, a, b)
    torch.testing.assert_close(got, M.qabf(f, a, b), rtol=1e-10, atol=0)


def test_a_compiler_failure_falls_back_to_eager_once(fresh_compile_state, monkeypatch) -> None:
    def broken_compile(fn, **kwargs):
        def run(*args, **kw):
            raise RuntimeError("no C++ compiler found")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    double = _compile.kernel(lambda x: x * 2)
    triple = _compile.kernel(lambda x: x * 3)
    x = torch.arange(4.0)
    with _compile.compiled_kernels(), pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler found"):
        assert torch.equal(double(x), x * 2)
    with _compile.compiled_kernels():
        assert not _compile.enabled()  # one failure switches compiling off: no warning per kernel
        assert torch.equal(triple(x), x * 3)


def test_a_real_error_inside_a_kernel_is_raised_not_swallowed(fresh_compile_state) -> None:
    @_compile.kernel
    def needs_square(x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"not square: {tuple(x.shape)}")
        return x.T

    with _compile.compiled_kernels(), pytest.raises(ValueError, match="not square"):
        needs_square(torch.zeros(2, 3))
    assert _compile._BROKEN == []


def test_outside_the_context_kernels_run_eagerly(monkeypatch) -> None:
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: pytest.fail("compiled outside compiled_kernels()"))
    double = _compile.kernel(lambda x: x * 2)
    assert torch.equal(double(torch.ones(2)), torch.full((2,), 2.0))
