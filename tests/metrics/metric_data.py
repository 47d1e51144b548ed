"""Real and synthetic test images for the metric tests (helpers; the fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

TRIPLES = (
    "tno_05_piafusion",  # grey stored as RGB, 280x280
    "vifb_walking2_u2fusion",  # grey IR, RGB VI, RGB F
    "msrs_00537D_cddvariant",  # grey IR, RGB VI, grey F
    "tno_01_densefuse",  # grey stored as RGB sources, grey F
)



def load_triple(root: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fused, ir, vi) uint8 arrays as stored (grey (H, W) or RGB (H, W, 3)); equal-channel IR -> grey."""
    d = root / "triples" / name
    f, a, b = (np.array(Image.open(d / f"{k}.png")) for k in ("fused", "ir", "vi"))
    if a.ndim == 3 and (a == a[..., :1]).all():
        a = a[..., 0]
    return f, a, b



def random_triple(rng: np.random.Generator, h: int, w: int, n: int | None = None) -> tuple[np.ndarray, ...]:
    """Structured random uint8 images: smooth ramps, a step, noise; F a noisy blend of the sources."""
    shape = (h, w) if n is None else (n, h, w)
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    base = np.broadcast_to(120 * xx + 60 * yy, shape)
    a = np.clip(base + rng.normal(0, 25, shape) + 80 * (xx > 0.5), 0, 255).round()
    b = np.clip(255 - base + rng.normal(0, 30, shape), 0, 255).round()
    f = np.clip(0.5 * a + 0.5 * b + rng.normal(0, 10, shape), 0, 255).round()
    return tuple(x.astype(np.uint8) for x in (f, a, b))
