"""The built-in ``demo`` dataset: six small synthetic pairs generated from a fixed seed.

It lets the quick start and the tests run offline with no data root: the first use writes the PNGs to
``$FUSEBENCH_HOME/demo/v<VERSION>`` (default ``~/.cache/fusebench``), later uses read them back, and a
missing file is regenerated. No image is committed to the repository. The scenes imitate a night road:
colour visible images with dim, textured buildings and a grey infrared image with warm people and cars.
Sizes include odd ones (47x53, 81x61; every side >= 41 px, the smallest that 4-scale VIF accepts), and pair ``05`` has a 16-bit infrared image as raw thermal
cameras produce, so both bit depths are exercised.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fusebench.download import fusebench_home
from fusebench.files import atomic_write

VERSION = 2  # bump when the generated pixels change, so stale caches are not reused
SEED = 20260
SIZES = ((64, 48), (64, 48), (47, 53), (47, 53), (81, 61), (81, 61))  # (width, height) per pair
IDS = tuple(f"{i + 1:02d}" for i in range(len(SIZES)))
IR_16BIT = frozenset({"05"})


def demo_folder() -> Path:
    """Folder with ``ir/`` and ``vi/`` of the demo pairs, generated on first use."""
    folder = fusebench_home() / "demo" / f"v{VERSION}"
    if not all((folder / m / f"{i}.png").is_file() for i in IDS for m in ("ir", "vi")):
        for index, pair_id in enumerate(IDS):
            ir, vi = render_pair(index)
            _write_png(folder / "ir" / f"{pair_id}.png", ir)
            _write_png(folder / "vi" / f"{pair_id}.png", vi)
    return folder


def render_pair(index: int) -> tuple[np.ndarray, np.ndarray]:
    """Pair ``index`` as (ir, vi): ir uint8 (H, W) or uint16 for IR_16BIT ids, vi uint8 (H, W, 3)."""
    width, height = SIZES[index]
    rng = np.random.default_rng(SEED + index)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    horizon = height * rng.uniform(0.35, 0.5)
    sky = y < horizon
    # Visible: a dusk sky above dim ground, buildings with window texture, sensor noise.
    vi = np.where(sky[..., None], [0.25, 0.3, 0.45], [0.22, 0.2, 0.15]) * (1.0 - 0.4 * y / height)[..., None]
    ir = 0.25 + 0.1 * y / height  # the ground is a little warmer than the sky
    for _ in range(int(rng.integers(2, 4))):
        x0, w = int(rng.integers(0, width - 8)), int(rng.integers(6, max(7, width // 3)))
        top = int(rng.integers(2, max(3, int(horizon))))
        box = (x >= x0) & (x < x0 + w) & (y >= top) & (y < horizon + 2)
        windows = ((x.astype(int) // 3 + y.astype(int) // 3) % 2 == 0) & box
        vi[box] = rng.uniform(0.15, 0.45, size=3)
        vi[windows] += 0.15
        ir[box] += 0.08
    # Warm objects (people, cars): bright in the infrared, dark and hard to see in the visible.
    for _ in range(int(rng.integers(2, 4))):
        cx, cy = rng.uniform(0.1, 0.9) * width, rng.uniform(0.5, 0.9) * height
        sx, sy = rng.uniform(1.5, 4.0), rng.uniform(2.0, 6.0)
        blob = np.exp(-(((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2) / 2)
        ir += 0.65 * blob
        vi *= (1.0 - 0.5 * blob)[..., None]
    vi += rng.normal(0.0, 0.02, size=vi.shape)
    ir += rng.normal(0.0, 0.01, size=ir.shape)
    vi8 = np.round(np.clip(vi, 0, 1) * 255).astype(np.uint8)
    if IDS[index] in IR_16BIT:
        return np.round(np.clip(ir, 0, 1) * 65535).astype(np.uint16), vi8
    return np.round(np.clip(ir, 0, 1) * 255).astype(np.uint8), vi8


def _write_png(path: Path, pixels: np.ndarray) -> None:
    with atomic_write(path, "wb") as handle:
        Image.fromarray(pixels).save(handle, format="PNG")
