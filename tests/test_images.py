"""Image decoding: 8/16-bit, grey IR stored as RGB, and errors that name the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFile

from fusebench.images import ImageError, read_image, write_png


def test_8_and_16_bit_scale_to_unit_range(tmp_path) -> None:
    values16 = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    Image.fromarray(values16).save(tmp_path / "ir16.png")
    np.testing.assert_array_equal(read_image(tmp_path / "ir16.png"), values16.astype(np.float32) / 65535)
    values8 = np.array([[0, 17], [128, 255]], dtype=np.uint8)
    Image.fromarray(values8).save(tmp_path / "ir8.png")
    np.testing.assert_array_equal(read_image(tmp_path / "ir8.png"), values8.astype(np.float32) / 255)


def test_grey_stored_as_rgb_becomes_one_channel(tmp_path) -> None:
    grey = np.random.default_rng(0).integers(0, 256, (5, 6), dtype=np.uint8)
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "ir.png")
    out = read_image(tmp_path / "ir.png", mode="grey")
    assert out.shape == (5, 6)
    np.testing.assert_array_equal(out, grey / np.float32(255))
    colour = np.random.default_rng(1).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    Image.fromarray(colour).save(tmp_path / "c.png")
    expected = (colour.astype(np.float64) / 255) @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(read_image(tmp_path / "c.png", mode="grey"), expected, atol=1e-6)
    assert read_image(tmp_path / "c.png").shape == (5, 6, 3)


def test_bad_files_name_the_file_and_problem(tmp_path) -> None:
    with pytest.raises(ImageError, match=r"missing\.png: file not found"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageError, match=r"corrupt\.png: cannot decode image"):
        read_image(tmp_path / "corrupt.png")
    good = tmp_path / "trunc.jpg"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 90).save(good, quality=90)
    good.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ImageError, match=r"trunc\.jpg: cannot decode image"):
        read_image(good)


def test_write_png_is_lossless_and_atomic(tmp_path) -> None:
    img = np.random.default_rng(2).random((7, 9, 3)).astype(np.float32)
    write_png(tmp_path / "f.png", img)
    back = np.asarray(Image.open(tmp_path / "f.png"))
    np.testing.assert_array_equal(back, np.round(img * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        write_png(tmp_path / "nan.png", np.full((3, 3), np.nan, np.float32))
    assert not (tmp_path / "nan.png").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_written_files_get_umask_permissions(tmp_path) -> None:
    import os

    write_png(tmp_path / "p.png", np.zeros((2, 2), np.float32))
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "p.png").stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.parametrize(("orientation", "expected"), [
    (3, lambda a: a[::-1, ::-1]),  # rotated 180
    (6, lambda a: np.rot90(a, -1)),  # rotate 90 clockwise to display
    (8, lambda a: np.rot90(a, 1)),  # rotate 90 counter-clockwise to display
    (2, lambda a: a[:, ::-1]),  # mirrored
])
@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_exif_orientation_is_applied(tmp_path, monkeypatch, orientation, expected, suffix) -> None:
    from fusebench.images import image_size

    stored = np.random.default_rng(orientation).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"vi{suffix}"
    Image.fromarray(stored).save(path, exif=exif.tobytes(), **({"quality": 95} if suffix == ".jpg" else {}))
    decoded = np.asarray(Image.open(path))  # the pixels as stored, before rotation
    out = read_image(path)
    np.testing.assert_array_equal(out, expected(decoded).astype(np.float32) / 255)
    with monkeypatch.context() as m:  # the size comes from the header: decoding the pixels fails the test
        m.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail(f"{path.name} was decoded"))
        assert image_size(path) == (out.shape[1], out.shape[0])


def test_image_size_of_a_png_without_exif_reads_the_header_only(tmp_path, monkeypatch) -> None:
    """Pillow decodes a whole PNG to look for EXIF after the pixels; checking a dataset's sizes must not."""
    from fusebench.images import image_size

    Image.fromarray(np.zeros((5, 7), np.uint8)).save(tmp_path / "ir.png")
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("the pixels were decoded"))
    assert image_size(tmp_path / "ir.png") == (7, 5)
