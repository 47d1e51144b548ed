"""Reading and writing benchmark images, with errors that name the file and the problem.

Images are returned as float32 numpy arrays in [0, 1], shape (H, W) for grey and (H, W, 3) for colour.
8-bit files are divided by 255 and 16-bit files by 65535, so both kinds of thermal data load the same way.
Infrared stored as three equal channels (LLVIP, most of VIFB) becomes one channel. A JPEG's EXIF orientation
is applied, so a camera's rotated visible image is fused the way it is displayed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fusebench.files import atomic_write

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

# BT.601 luma, the same weights as fusebench.color, for RGB infrared whose channels differ.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)
_ORIENTATION = 0x0112  # EXIF tag


class ImageError(ValueError):
    """An image that cannot be used; the message starts with the file's path."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


def exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1 = as stored; 2-8 = mirrored and/or rotated), 1 when there is none.

    For a PNG only an eXIf chunk before the image data counts (where Pillow and the PNG specification put it):
    Pillow would decode the whole image to look for one after it, which made checking the sizes of a
    dataset's PNGs cost a full decode of each.
    """
    try:
        if img.format == "PNG":
            exif = Image.Exif()
            if img.info.get("exif"):
                exif.load(img.info["exif"])
        else:
            exif = img.getexif()
        value = int(exif.get(_ORIENTATION, 1))
    except (TypeError, ValueError, OSError):  # a malformed EXIF block: treat the image as stored
        return 1
    return value if 1 <= value <= 8 else 1


def _decode(path: Path) -> np.ndarray:
    if not path.is_file():
        raise ImageError(path, "file not found")
    try:
        with Image.open(path) as img:
            img.load()
            if exif_orientation(img) != 1:  # show the image as cameras and viewers do (JPEG EXIF rotation)
                img = ImageOps.exif_transpose(img)
            mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
                return np.asarray(img, dtype=np.uint16)
            if mode == "I":  # 16-bit PNGs decode as 32-bit integer mode in Pillow
                arr = np.asarray(img)
                if arr.min() < 0 or arr.max() > 65535:
                    raise ImageError(path, f"32-bit integer image with values outside 0..65535 ({mode})")
                return arr.astype(np.uint16)
            if mode in ("L", "RGB"):
                return np.asarray(img)
            if mode in ("P", "RGBA", "LA", "CMYK", "YCbCr", "1"):
                return np.asarray(img.convert("RGB" if mode not in ("LA", "1") else "L"))
            raise ImageError(path, f"unsupported image mode {mode!r}")
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(path, f"cannot decode image ({exc.__class__.__name__}: {exc})") from exc


def _to_unit(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        out = arr.astype(np.float32) / 65535.0
    else:
        raise ImageError(path, f"unsupported pixel type {arr.dtype}")
    if out.size == 0:
        raise ImageError(path, "image is empty")
    return out


def read_image(path: str | os.PathLike[str], mode: Literal["grey", "keep"] = "keep") -> np.ndarray:
    """Decode ``path`` to float32 in [0, 1].

    ``mode="grey"`` returns (H, W): three equal channels are taken as grey, other colour images are
    converted to BT.601 luminance. ``mode="keep"`` returns (H, W) for grey files and (H, W, 3) for colour.
    """
    path = Path(path)
    arr = _to_unit(_decode(path), path)
    if arr.ndim == 3 and mode == "grey":
        if np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
            return np.ascontiguousarray(arr[..., 0])
        return (arr.astype(np.float64) @ _LUMA).astype(np.float32)
    return arr


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) as displayed (EXIF rotation applied), from the header alone; ImageError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(path, "file not found")
    try:
        with Image.open(path) as img:
            width, height = img.size
            # Pillow applies a TIFF's orientation itself; JPEG and others are rotated by read_image
            turned = img.format != "TIFF" and exif_orientation(img) in (5, 6, 7, 8)
            return (height, width) if turned else (width, height)
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageError(path, f"cannot decode image ({exc})") from exc


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Quantise [0, 1] floats to uint8 by rounding (half to even), the way fused images are stored."""
    if not np.all(np.isfinite(image)):
        raise ValueError("image contains NaN or inf values")
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def write_png(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Save a [0, 1] float (H, W) or (H, W, 3) image, or a uint8 one, as a lossless 8-bit PNG, atomically.

    zlib level 1 (OpenCV's default): 7 ms for a 640x480 grey image against 26 ms at Pillow's default level 6,
    for files ~20 % larger; the pixels are the same.
    """
    arr = image if image.dtype == np.uint8 else to_uint8(image)
    with atomic_write(path, "wb") as handle:
        Image.fromarray(arr).save(handle, format="PNG", compress_level=1)
