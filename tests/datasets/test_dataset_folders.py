"""Any folder with ir/ and vi/ as a dataset; 16-bit input; precise errors; `fusebench datasets verify`."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fusebench.cli import main
from fusebench.datasets import DatasetError, load_dataset
from fusebench.datasets.verify import verify_dataset
from fusebench.images import ImageError


def _png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def _folder(root: Path, ids: tuple[str, ...] = ("a", "b"), size: tuple[int, int] = (7, 5)) -> Path:
    rng = np.random.default_rng(0)
    for i in ids:
        _png(root / "ir" / f"{i}.png", rng.integers(0, 256, size, dtype=np.uint8))
        _png(root / "vi" / f"{i}.png", rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    return root


def test_folder_dataset_pairs_by_stem(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "my.pairs", ids=("b", "a", "c"))
    (folder / "vi" / "notes.txt").write_text("ignored")
    ds = load_dataset(str(folder))
    assert ds.key == "my_pairs" and ds.ids == ["a", "b", "c"]
    assert tuple(ds[0].ir.shape) == (1, 7, 5) and tuple(ds[0].vi.shape) == (3, 7, 5)


def test_folder_dataset_with_split_subfolders(tmp_path: Path) -> None:
    _folder(tmp_path / "mine" / "test", ids=("x",))
    assert load_dataset(str(tmp_path / "mine"), split="test").key == "mine.test"
    with pytest.raises(DatasetError, match=r"mine: expected ir/ and vi/ folders inside; pass a split: test"):
        load_dataset(str(tmp_path / "mine"))
    with pytest.raises(DatasetError, match=r"no split folder 'train'; folders with ir/: test"):
        load_dataset(str(tmp_path / "mine"), split="train")


def test_sixteen_bit_infrared_is_scaled_by_65535(tmp_path: Path) -> None:
    values = np.array([[0, 1, 256, 4095], [32768, 40000, 65534, 65535]], dtype=np.uint16)
    _png(tmp_path / "raw16" / "ir" / "t.png", values)
    _png(tmp_path / "raw16" / "vi" / "t.png", np.full((2, 4, 3), 200, dtype=np.uint8))
    assert Image.open(tmp_path / "raw16" / "ir" / "t.png").mode.startswith("I")
    sample = load_dataset(str(tmp_path / "raw16"))[0]
    np.testing.assert_array_equal(sample.ir[0].numpy(), values.astype(np.float32) / np.float32(65535))
    np.testing.assert_array_equal(sample.vi.numpy(), np.full((3, 2, 4), np.float32(200) / np.float32(255)))


def test_unpaired_ids_are_named(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "p", ids=("a", "b"))
    (folder / "vi" / "b.png").unlink()
    _png(folder / "vi" / "z.png", np.zeros((7, 5, 3), dtype=np.uint8))
    with pytest.raises(
        DatasetError, match=r"unpaired images: ids only in .*ir: \['b'\]; ids only in .*vi: \['z'\]"
    ):
        load_dataset(str(folder))


def test_size_mismatch_names_both_files(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "p", ids=("a",))
    _png(folder / "vi" / "a.png", np.zeros((6, 5, 3), dtype=np.uint8))
    with pytest.raises(
        ImageError, match=r"ir/a\.png: size 5x7 differs from the visible image .*vi/a\.png \(5x6\)"
    ):
        load_dataset(str(folder))[0]


def test_verify_reports_every_problem_with_its_path(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "bad", ids=("ok", "small", "corrupt", "lonely"))
    _png(folder / "vi" / "small.png", np.zeros((3, 3, 3), dtype=np.uint8))
    (folder / "ir" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "vi" / "lonely.png").unlink()
    _png(folder / "ir" / "deep.png", np.zeros((2, 2), dtype=np.uint16) + 1000)
    _png(folder / "vi" / "deep.png", np.zeros((2, 2, 3), dtype=np.uint8))
    (report,) = verify_dataset(str(folder), metrics=["EN"])
    problems = sorted(str(p) for p in report.problems)
    assert len(problems) == 3
    assert problems[0].startswith(f"{folder}/ir/corrupt.png: cannot decode image (")
    assert problems[1] == f"{folder}/ir/lonely.png: unpaired id 'lonely': no visible image in {folder}/vi"
    assert (
        problems[2]
        == f"{folder}/ir/small.png: size 5x7 differs from the visible image {folder}/vi/small.png (3x3)"
    )
    assert report.checked == 2 and not report.ok  # ok and deep
    assert [str(n) for n in report.notes] == [
        f"{folder}/ir/deep.png: 16-bit image (I;16); loaded scaled by 1/65535"
    ]


def test_verify_cli_exit_status_and_output(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "cli", ids=("a", "b"))
    runner = CliRunner()
    good = runner.invoke(main, ["datasets", "verify", str(folder), "--metrics", "EN"])
    assert good.exit_code == 0, good.output
    assert good.output.strip() == f"cli: 2 pairs decoded, ok ({folder})"
    (folder / "vi" / "b.png").write_bytes(b"not an image")
    bad = runner.invoke(main, ["datasets", "verify", str(folder), "--metrics", "EN"])
    assert bad.exit_code == 1
    assert f"problem: {folder}/vi/b.png: cannot decode image" in bad.output
    assert "Error: 1 problem(s) found" in bad.output


def test_verify_subset_reports_missing_listed_ids(shared_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(shared_data / "tno", root / "tno")
    (root / "tno" / "vi" / "06.png").unlink()
    (report,) = verify_dataset("tno", subset="cddfuse25", root=root)
    assert [str(p) for p in report.problems] == [f"{root}/tno/vi: id '06' of subset 'cddfuse25' is missing"]
    assert report.checked == 24


def test_verify_real_copies_are_clean(shared_data: Path, manifest: list[dict[str, str]]) -> None:
    result = CliRunner().invoke(main, ["datasets", "verify", "msrs", "--data-root", str(shared_data)])
    assert result.exit_code == 0, result.output
    counts = {s: sum(r["dataset"] == "msrs" and r["split"] == s for r in manifest) for s in ("test", "train")}
    assert result.output.splitlines() == [
        f"msrs.test: {counts['test']} pairs decoded, ok ({shared_data}/msrs/test)",
        f"msrs.train: {counts['train']} pairs decoded, ok ({shared_data}/msrs/train)",
    ]
    (vifb,) = verify_dataset("vifb", root=shared_data)
    three_channel = sum(r["dataset"] == "vifb" and r["ir_mode"] == "RGB" for r in manifest)
    assert vifb.ok and vifb.checked == 21 and len(vifb.notes) == three_channel == 17


def test_verify_unknown_dataset_is_a_clean_cli_error() -> None:
    result = CliRunner().invoke(main, ["datasets", "verify", "tno", "--split", "test", "--data-root", "."])
    assert result.exit_code == 1
    assert "Error: tno: unknown split 'test'; valid splits: none (it has no official split)" in result.output
