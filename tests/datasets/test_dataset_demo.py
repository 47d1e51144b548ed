"""The built-in demo dataset: offline, deterministic, regenerated when missing, both bit depths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fusebench.datasets import demo, load_dataset
from fusebench.datasets.demo import SIZES, render_pair


def test_demo_needs_no_data_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fusebench_home: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./datasets here
    ds = load_dataset("demo")
    assert ds.key == "demo" and ds.ids == ["01", "02", "03", "04", "05", "06"]
    assert ds.root == fusebench_home / "demo" / f"v{demo.VERSION}"
    shapes = [(tuple(s.ir.shape), tuple(s.vi.shape)) for s in ds]
    assert shapes == [((1, h, w), (3, h, w)) for w, h in SIZES]
    assert {(w % 2, h % 2) for w, h in SIZES} >= {(1, 1)}  # odd sizes included


def test_demo_files_hold_the_rendered_pixels() -> None:
    ds = load_dataset("demo")
    for index, sample in enumerate(ds):
        ir, vi = render_pair(index)
        scale = 65535 if ir.dtype == np.uint16 else 255
        np.testing.assert_array_equal(sample.ir[0].numpy(), ir.astype(np.float32) / np.float32(scale))
        np.testing.assert_array_equal(
            sample.vi.numpy(), vi.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        )
    assert Image.open(ds.pairs[4].ir).mode == "I;16" and Image.open(ds.pairs[0].ir).mode == "L"


def test_demo_is_deterministic_and_looks_like_ivif() -> None:
    for index in range(len(SIZES)):
        ir, vi = render_pair(index)
        ir2, vi2 = render_pair(index)
        assert np.array_equal(ir, ir2) and np.array_equal(vi, vi2)
        irf = ir.astype(np.float64) / (65535 if ir.dtype == np.uint16 else 255)
        hot = irf > np.percentile(irf, 97)
        assert irf[hot].mean() > irf.mean() + 0.3  # warm objects stand out in the infrared
        assert vi[hot].mean() < vi.mean()  # and are darker than average in the visible image
        assert not np.array_equal(vi[..., 0], vi[..., 2])  # the visible image is in colour
    assert not np.array_equal(render_pair(0)[0], render_pair(1)[0])


def test_missing_demo_file_is_regenerated() -> None:
    ds = load_dataset("demo")
    before = ds.pairs[2].vi.read_bytes()
    ds.pairs[2].vi.unlink()
    again = load_dataset("demo")
    assert again.pairs[2].vi.read_bytes() == before
