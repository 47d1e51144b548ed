"""Loading the real benchmark copies in ../shared/datasets: pairs, splits, subsets, keys, channels, errors."""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fusebench.cli import main
from fusebench.datasets import DATASETS, DatasetError, data_root, list_datasets, load_dataset

SPLITS = [
    ("tno", None),
    ("roadscene", None),
    ("msrs", "test"),
    ("msrs", "train"),
    ("llvip", "test"),
    ("llvip", "train"),
    ("m3fd", None),
    ("vifb", None),
]

# Sizes stated in the papers that define each list, and where the shared copy keeps it.
SUBSETS = [
    ("tno", "tang42", 42, "subsets"),
    ("tno", "densefuse21", 21, "subsets"),
    ("tno", "cddfuse25", 25, "subsets"),
    ("tno", "didfuse40", 40, "subsets"),
    ("roadscene", "cddfuse_test50", 50, "splits"),
    ("roadscene", "didfuse_train180", 180, "splits"),
    ("roadscene", "didfuse_test40", 40, "splits"),
]


def _shared_ids(shared_data: Path, dataset: str, folder: str, name: str) -> list[str]:
    with open(shared_data / dataset / folder / f"{name}.csv", newline="", encoding="utf-8") as handle:
        return [row["id"].strip() for row in csv.DictReader(handle)]


def test_registry_lists_the_benchmarks() -> None:
    assert list_datasets() == ["demo", "llvip", "m3fd", "msrs", "roadscene", "tno", "vifb"]
    assert list_datasets("m*") == ["m3fd", "msrs"]
    for name in list_datasets():
        meta = DATASETS.get(name).meta
        assert {"description", "splits", "subsets", "pairs", "licence", "citation", "download"} <= set(meta)
    assert DATASETS.get("msrs").meta["splits"] == ("test", "train")
    assert DATASETS.get("tno").meta["subsets"] == ("cddfuse25", "densefuse21", "didfuse40", "tang42")


@pytest.mark.parametrize(("name", "split"), SPLITS)
def test_pairs_match_manifest(
    shared_data: Path, manifest: list[dict[str, str]], name: str, split: str | None
) -> None:
    rows = [r for r in manifest if r["dataset"] == name and (split is None or r["split"] == split)]
    ds = load_dataset(name, split=split, root=shared_data)
    assert ds.key == (f"{name}.{split}" if split else name)
    assert ds.ids == sorted(r["id"] for r in rows)
    assert [
        (p.ir.relative_to(shared_data).as_posix(), p.vi.relative_to(shared_data).as_posix()) for p in ds.pairs
    ] == sorted((r["ir"], r["vi"]) for r in rows)


@pytest.mark.parametrize(("name", "subset", "size", "folder"), SUBSETS)
def test_subsets_have_the_literature_sizes_and_order(
    shared_data: Path, name: str, subset: str, size: int, folder: str
) -> None:
    ds = load_dataset(name, subset=subset, root=shared_data)
    assert len(ds) == size
    assert ds.ids == _shared_ids(shared_data, name, folder, subset)
    assert ds.key == f"{name}.{subset}"
    assert load_dataset(f"{name}.{subset}", root=shared_data).ids == ds.ids


def test_packaged_lists_are_the_shared_lists(shared_data: Path) -> None:
    lists = resources.files("fusebench.datasets") / "lists"
    packaged = sorted(f.name for f in lists.iterdir() if f.name.endswith(".csv"))
    assert packaged == sorted(f"{d}.{s}.csv" for d, s, _, _ in SUBSETS)
    for name, subset, _, folder in SUBSETS:
        text = (lists / f"{name}.{subset}.csv").read_text(encoding="utf-8")
        assert text.splitlines() == ["id", *_shared_ids(shared_data, name, folder, subset)]


def test_split_dataset_defaults_to_test_and_says_so(shared_data: Path) -> None:
    ds = load_dataset("msrs", root=shared_data)
    assert ds.key == "msrs.test" and ds.split == "test" and len(ds) == 32
    assert "no split given: using the official 'test' split" in ds.info["note"]
    assert "note" not in load_dataset("msrs.test", root=shared_data).info


def test_dotted_key_and_arguments_agree(shared_data: Path) -> None:
    assert (
        load_dataset("msrs.train", root=shared_data).ids
        == load_dataset("msrs", "train", root=shared_data).ids
    )
    assert load_dataset("msrs.train", split="train", root=shared_data).key == "msrs.train"
    with pytest.raises(
        DatasetError, match=r"'msrs\.train' names split 'train' but split='test' was also given"
    ):
        load_dataset("msrs.train", split="test", root=shared_data)


def test_unknown_split_subset_and_name_list_the_valid_ones(shared_data: Path) -> None:
    with pytest.raises(DatasetError, match=r"msrs: unknown split 'val'; valid splits: test, train"):
        load_dataset("msrs", split="val", root=shared_data)
    with pytest.raises(DatasetError, match=r"tno: unknown split 'test'; valid splits: none"):
        load_dataset("tno", split="test", root=shared_data)
    with pytest.raises(
        DatasetError,
        match=r"unknown subset 'tang21'; valid subsets: cddfuse25, densefuse21, "
        r"didfuse40, tang42",
    ):
        load_dataset("tno", subset="tang21", root=shared_data)
    with pytest.raises(
        DatasetError, match=r"'val' in 'msrs.val' is neither a split \(test, train\) nor a subset"
    ):
        load_dataset("msrs.val", root=shared_data)
    with pytest.raises(DatasetError, match=r"Unknown dataset 'tn0'. Did you mean: tno\?"):
        load_dataset("tn0", root=shared_data)


def test_missing_dataset_folder_says_how_to_download(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError,
        match=rf"roadscene: not found at {tmp_path}/roadscene. Download it with "
        rf"`fusebench datasets download roadscene --data-root {tmp_path}`",
    ):
        load_dataset("roadscene", root=tmp_path)


def test_three_channel_grey_ir_loads_as_one_channel(shared_data: Path) -> None:
    ds = load_dataset("llvip", split="test", root=shared_data)
    sample = ds[0]
    raw = np.asarray(Image.open(ds.pairs[0].ir))
    assert raw.ndim == 3 and np.array_equal(raw[..., 0], raw[..., 2])
    assert tuple(sample.ir.shape) == (1, 1024, 1280) and tuple(sample.vi.shape) == (3, 1024, 1280)
    np.testing.assert_array_equal(sample.ir[0].numpy(), raw[..., 0].astype(np.float32) / 255)


def test_grey_visible_stays_one_channel(shared_data: Path, manifest: list[dict[str, str]]) -> None:
    row = next(r for r in manifest if r["dataset"] == "tno" and r["id"] == "05")
    sample = load_dataset("tno", root=shared_data)[4]
    assert sample.id == "05"
    assert tuple(sample.ir.shape) == tuple(sample.vi.shape) == (1, int(row["height"]), int(row["width"]))


def test_data_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert data_root() == Path("datasets")
    monkeypatch.setenv("FUSEBENCH_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "arg") == tmp_path / "arg"


def test_environment_data_root_is_used_by_load(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSEBENCH_DATA", str(shared_data))
    assert len(load_dataset("vifb")) == 21


def test_list_cli_shows_splits_subsets_and_pairs_on_disk(
    shared_data: Path, manifest: list[dict[str, str]]
) -> None:
    result = CliRunner().invoke(main, ["datasets", "list", "--data-root", str(shared_data)])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines()[2:]}
    assert sorted(rows) == list_datasets()
    for name in ("tno", "roadscene", "msrs", "llvip", "vifb"):
        count = sum(r["dataset"] == name for r in manifest)
        assert rows[name].rstrip().endswith(f"{count} pairs")
    assert "cddfuse25, densefuse21, didfuse40, tang42" in rows["tno"] and "test, train" in rows["msrs"]
    details = CliRunner().invoke(main, ["datasets", "list", "vifb", "--details"])
    assert "  download: github.com/xingchenzhang/VIFB@22b2ea9 (input/IR, input/VI)" in details.output
