"""The official scripts' image readers and 8-bit writers, reproduced exactly.

Which reader a network's script uses changes its input: ``cv2.imread(p, IMREAD_GRAYSCALE)`` on a colour JPEG
returns libjpeg's Y plane (up to 13 levels away from PIL's ``convert('L')``), on a colour PNG libpng's
``rgb_to_gray``; ``cv2.cvtColor(BGR2GRAY)`` and PIL ``convert('L')`` use fixed-point BT.601 lumas that round a
few pixels differently (25 of LLVIP 190001's visible image). So
readers are named here and a network declares the ones its script uses. Each reader has a file form (exact)
and an array form for decoded images (exact for every reader except ``cv2_gray`` on colour files, where it
falls back to OpenCV's fixed-point luma of the decoded RGB).

Writers: the three ways the scripts turn floats into uint8 (truncation, OpenCV's round-half-even with
saturation, and old scikit-image's ``image_as_uint``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image

from fusebench.images import ImageError

Reader = Literal["pil_L", "pil_RGB", "cv2_gray", "cv2_bgr2gray", "cv2_float_gray_round", "cv2_rgb"]


def decode(path: str | Path) -> np.ndarray:
    """The file's pixels as stored: uint8 (H, W) or (H, W, 3) RGB (PIL; cv2's RGB decode is identical)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "RGB"):
                img = img.convert("RGB")
            return np.asarray(img).copy()
    except (OSError, ValueError) as exc:
        raise ImageError(path, f"cannot decode image ({exc})") from exc


def read_file(path: str | Path, reader: Reader) -> np.ndarray:
    """Read ``path`` exactly as the named official reader does (uint8, or float32 for the CDDFuse reader)."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(path, "file not found")
    if reader == "cv2_gray":
        out = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if out is None:
            raise ImageError(path, "OpenCV cannot decode it")
        return out
    return read_array(decode(path), reader)


def read_array(image: np.ndarray, reader: Reader) -> np.ndarray:
    """The named reader applied to decoded pixels (uint8 (H, W) or (H, W, 3) RGB)."""
    if image.dtype != np.uint8:
        raise TypeError(f"Expected a uint8 image. Got {image.dtype}.")
    grey = image.ndim == 2
    if reader == "pil_RGB":
        return np.repeat(image[..., None], 3, axis=2) if grey else image
    if reader == "cv2_rgb":  # cv2.imread(p) then BGR2RGB: 3 channels even for grey files
        return np.repeat(image[..., None], 3, axis=2) if grey else image
    if grey and reader in ("pil_L", "cv2_gray", "cv2_bgr2gray"):
        return image
    if reader == "pil_L":  # PIL's own fixed-point luma: it rounds a few pixels apart from OpenCV's
        return np.asarray(Image.fromarray(image).convert("L"))
    if reader in ("cv2_gray", "cv2_bgr2gray"):  # cv2_gray's JPEG Y plane needs the file: see read_file
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if reader == "cv2_float_gray_round":  # CDDFuse/EMMA image_read_cv2(p, 'GRAY'): float cvtColor, np.round
        rgb = np.repeat(image[..., None], 3, axis=2) if grey else image
        return np.round(cv2.cvtColor(rgb.astype(np.float32), cv2.COLOR_RGB2GRAY))
    raise ValueError(f"Unknown reader {reader!r}.")


def truncate_u8(x: np.ndarray) -> np.ndarray:
    """``x.astype(np.uint8)`` after clipping to [0, 255]: truncation toward zero."""
    return np.clip(x, 0, 255).astype(np.uint8)


def cv2_round_u8(x: np.ndarray) -> np.ndarray:
    """What ``cv2.imwrite`` does to a float array: round half to even, saturate to 0..255."""
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def image_as_uint(x: np.ndarray) -> np.ndarray:
    """scikit-image 0.16-0.19 ``imsave`` via imageio's ``image_as_uint`` for a float array.

    In [0, 1]: ``floor(x*255 + 0.499999999)`` in float64; any other range is min-max scaled first.
    """
    x = np.asarray(x, dtype=np.float64)
    lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
    if lo < 0 or hi > 1:
        x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    return np.floor(x * 255 + 0.499999999).astype(np.uint8)
