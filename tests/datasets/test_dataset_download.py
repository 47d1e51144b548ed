"""`fusebench datasets download`: archives with each source's real internal layout, served on 127.0.0.1.

RoadScene and VIFB archives are built from the real shared copies, so the pinned content checksum is
checked end to end; the others use tiny generated images in the upstream folder structure.
"""

from __future__ import annotations

import io
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fusebench.cli import main
from fusebench.datasets import DatasetError, load_dataset
from fusebench.datasets.fetch import ManualDownloadRequired, content_digest, download_dataset
from fusebench.datasets.sources import SOURCES
from fusebench.download import DownloadError

pytestmark = pytest.mark.network

ROADSCENE = "RoadScene-ab71420f8fc96396eeb97eecf3694909b3feb656"
VIFB = "VIFB-22b2ea9d91499cc5962d9bdcae9c290270f0fade"


def _image_bytes(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _served(www: Path, url: str, members: dict[str, bytes]) -> Path:
    """Put a zip at the path of the upstream ``url`` under the served folder."""
    return _zip(www / url.split("://", 1)[1].split("/", 1)[1], members)


def _roadscene_members(shared_data: Path) -> dict[str, bytes]:
    members = {
        f"{ROADSCENE}/README.md": b"# RoadScene",
        f"{ROADSCENE}/cropinfrared/Thumbs.db": b"junk",
        f"{ROADSCENE}/crop_HR_visible/FLIR_00006.jpg": b"high-res, not used",
        f"{ROADSCENE}/infrared/FLIR_00006.jpg": b"uncropped, not used",
    }
    for kind, folder in (("ir", "cropinfrared"), ("vi", "crop_LR_visible")):
        for path in sorted((shared_data / "roadscene" / kind).iterdir()):
            members[f"{ROADSCENE}/{folder}/{path.name}"] = path.read_bytes()
    return members


def test_roadscene_download_matches_the_real_release(
    shared_data: Path, static_server: tuple[str, Path], tmp_path: Path, fusebench_home: Path
) -> None:
    base, www = static_server
    _served(www, SOURCES["roadscene"].archives[0].url or "", _roadscene_members(shared_data))
    root = tmp_path / "data"
    result = CliRunner().invoke(
        main,
        ["datasets", "download", "roadscene", "--data-root", str(root), "--mirror", base, "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    assert f"roadscene: ready at {root}/roadscene" in result.output
    assert sorted(p.name for p in root.iterdir()) == ["roadscene"]  # no scratch or partial folders left
    for kind in ("ir", "vi"):
        got = sorted(p.name for p in (root / "roadscene" / kind).iterdir())
        assert got == sorted(p.name for p in (shared_data / "roadscene" / kind).iterdir())
    assert content_digest(root / "roadscene") == SOURCES["roadscene"].content_sha256
    assert (
        load_dataset("roadscene.cddfuse_test50", root=root).ids
        == load_dataset("roadscene.cddfuse_test50", root=shared_data).ids
    )
    assert (fusebench_home / "downloads" / f"{ROADSCENE}.zip").is_file()  # cached for next time
    again = CliRunner().invoke(main, ["datasets", "download", "roadscene", "--data-root", str(root)])
    assert again.exit_code == 0 and "already present" in again.output


def test_changed_upstream_files_are_not_installed(shared_data: Path, tmp_path: Path) -> None:
    members = _roadscene_members(shared_data)
    members[f"{ROADSCENE}/cropinfrared/FLIR_00006.jpg"] += b"\x00"
    archive = _zip(tmp_path / "RoadScene.zip", members)
    with pytest.raises(
        DownloadError, match=rf"expected content sha256 {SOURCES['roadscene'].content_sha256}, got"
    ):
        download_dataset("roadscene", tmp_path / "data", archives=[archive], echo=lambda _: None)
    assert list((tmp_path / "data").iterdir()) == []


def test_vifb_pairs_ids_that_differ_in_case(shared_data: Path, tmp_path: Path) -> None:
    members = {}
    for kind, folder in (("ir", "IR"), ("vi", "VI")):
        for path in sorted((shared_data / "vifb" / kind).iterdir()):
            name = "peopleShadow.jpg" if (kind, path.name) == ("ir", "peopleshadow.jpg") else path.name
            members[f"{VIFB}/input/{folder}/{name}"] = path.read_bytes()
    members[f"{VIFB}/input/VI/manCall - 副本.jpg"] = members[f"{VIFB}/input/VI/manCall.jpg"]
    members[f"{VIFB}/output/fused_images/kettle_SeAFusion.jpg"] = b"not a source image"
    messages: list[str] = []
    folder = download_dataset(
        "vifb", tmp_path, archives=[_zip(tmp_path / "VIFB.zip", members)], echo=messages.append
    )
    assert "  skipped files without a partner: manCall - 副本.jpg" in messages
    assert content_digest(folder) == SOURCES["vifb"].content_sha256
    assert load_dataset("vifb", root=tmp_path).ids == load_dataset("vifb", root=shared_data).ids


def _serve_msrs(www: Path) -> tuple[dict[str, list[str]], dict[tuple[str, str], np.ndarray]]:
    top = "MSRS-2052589d3a714d0285c8792e24d2db290d84b6ea"
    ids = {"test": ["00004N", "00055D"], "train": ["00001D", "00881N", "01023N"]}
    rng = np.random.default_rng(1)
    members = {
        f"{top}/README.md": b"# MSRS",
        f"{top}/detection/ir/1.png": _image_bytes(np.zeros((4, 6), np.uint8)),
    }
    expected = {}
    for split, split_ids in ids.items():
        for i in split_ids:
            ir, vi = rng.integers(0, 256, (6, 8), np.uint8), rng.integers(0, 256, (6, 8, 3), np.uint8)
            members[f"{top}/{split}/ir/{i}.png"] = _image_bytes(ir)
            members[f"{top}/{split}/vi/{i}.png"] = _image_bytes(vi)
            members[f"{top}/{split}/Segmentation_labels/{i}.png"] = _image_bytes(ir)
            expected[split, i] = ir
    _served(www, SOURCES["msrs"].archives[0].url or "", members)
    return ids, expected


def test_msrs_splits_are_arranged(static_server: tuple[str, Path], tmp_path: Path) -> None:
    base, www = static_server
    ids, expected = _serve_msrs(www)
    download_dataset("msrs", tmp_path / "data", mirror=base, progress=False, echo=lambda _: None)
    assert sorted(p.name for p in (tmp_path / "data" / "msrs").iterdir()) == ["test", "train"]
    for split, split_ids in ids.items():
        ds = load_dataset(f"msrs.{split}", root=tmp_path / "data")
        assert ds.ids == sorted(split_ids)
        for sample in ds:
            np.testing.assert_array_equal(sample.ir[0].numpy() * 255, expected[split, sample.id])


def test_tno_merges_two_sources_renames_and_stores_grey(
    static_server: tuple[str, Path], tmp_path: Path
) -> None:
    base, www = static_server
    tang, densefuse = SOURCES["tno"].archives
    rng = np.random.default_rng(2)
    grey = {i: rng.integers(0, 256, (5, 7), np.uint8) for i in ("01", "02", "42")}
    tang_top = "Evaluation-for-Image-Fusion-0e87153be77320e31ef2cabb5820518d2ac56bac/Image/Source-Image/TNO"
    members = {
        f"{tang_top}/{kind}/{i}.png": _image_bytes(np.repeat(g[..., None], 3, axis=2))  # RGB with R=G=B
        for i, g in grey.items()
        for kind in ("ir", "vi")
    }
    members[f"{tang_top.rsplit('/', 2)[0]}/Algorithm/DenseFuse_TNO/01.png"] = b"a fused result, not a source"
    _served(www, tang.url or "", members)
    dense_top = "Classic-and-state-of-the-art-image-fusion-methods-5d9457df396f1ea6921e1b9b3703995205940862"
    dense = {k: rng.integers(0, 256, (3, 4), np.uint8) for k in range(1, 22)}
    _served(
        www,
        densefuse.url or "",
        {
            **{
                f"{dense_top}/IFCNN/datasets/IV_images/IR/IR{k}.png": _image_bytes(px)
                for k, px in dense.items()
            },
            **{
                f"{dense_top}/IFCNN/datasets/IV_images/VIS/VIS{k}.png": _image_bytes(px)
                for k, px in dense.items()
            },
        },
    )
    folder = download_dataset("tno", tmp_path, mirror=base, progress=False, echo=lambda _: None)
    ds = load_dataset("tno", root=tmp_path)
    assert ds.ids == ["01", "02", "42", "43", "44", "45", "46", "47"]
    assert Image.open(folder / "vi" / "01.png").mode == "L"
    np.testing.assert_array_equal(np.asarray(Image.open(folder / "ir" / "42.png")), grey["42"])
    for k, pair_id in ((1, "43"), (3, "44"), (4, "45"), (5, "46"), (20, "47")):  # densefuse21.csv: IRk -> id
        np.testing.assert_array_equal(np.asarray(Image.open(folder / "ir" / f"{pair_id}.png")), dense[k])


def test_llvip_needs_a_manual_download_then_arranges_it(tmp_path: Path) -> None:
    with pytest.raises(ManualDownloadRequired, match=r"(?s)https://bupt-ai-cz.github.io/LLVIP/.*--archive"):
        download_dataset("llvip", tmp_path)
    jpg = {i: _image_bytes(np.full((8, 10, 3), 90, np.uint8), "JPEG") for i in ("010001", "190001", "190002")}
    members = {
        f"LLVIP/{modality}/{'train' if i.startswith('01') else 'test'}/{i}.jpg": data
        for i, data in jpg.items()
        for modality in ("infrared", "visible")
    }
    members["LLVIP/Annotations/010001.xml"] = b"<annotation/>"
    download_dataset("llvip", tmp_path, archives=[_zip(tmp_path / "LLVIP.zip", members)], echo=lambda _: None)
    assert load_dataset("llvip", root=tmp_path).ids == ["190001", "190002"]
    assert load_dataset("llvip.train", root=tmp_path).ids == ["010001"]
    assert (tmp_path / "llvip" / "test" / "ir" / "190001.jpg").read_bytes() == jpg["190001"]


def test_m3fd_archive_via_cli(tmp_path: Path) -> None:
    px = _image_bytes(np.zeros((4, 4, 3), np.uint8))
    archive = _zip(
        tmp_path / "M3FD_Fusion.zip", {"M3FD_Fusion/Ir/00000.png": px, "M3FD_Fusion/Vis/00000.png": px}
    )
    result = CliRunner().invoke(
        main, ["datasets", "download", "m3fd", "--data-root", str(tmp_path / "d"), "--archive", str(archive)]
    )
    assert result.exit_code == 0, result.output
    assert load_dataset("m3fd", root=tmp_path / "d").ids == ["00000"]
    manual = CliRunner().invoke(main, ["datasets", "download", "m3fd", "--data-root", str(tmp_path / "e")])
    assert manual.exit_code == 1 and "M3FD_Fusion.zip" in manual.output and "--archive" in manual.output


def test_archive_with_the_wrong_layout_is_refused(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "other.zip", {"stuff/a.png": b"x"})
    with pytest.raises(DatasetError, match=r"other\.zip: does not hold the expected folders \(Ir, Vis\)"):
        download_dataset("m3fd", tmp_path / "d", archives=[archive], echo=lambda _: None)
    assert not (tmp_path / "d" / "m3fd").exists()


def test_offline_download_says_where_to_put_the_file(tmp_path: Path, fusebench_home: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cached = fusebench_home / "downloads" / f"{VIFB}.zip"
    with pytest.raises(
        DownloadError,
        match=rf"could not reach http://127.0.0.1:{port}/xingchenzhang/VIFB/archive/"
        rf".*put it at {cached}",
    ):
        download_dataset(
            "vifb", tmp_path, mirror=f"http://127.0.0.1:{port}", progress=False, echo=lambda _: None
        )


def test_unknown_download_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError,
        match="no download for 'kaist'; downloadable: llvip, m3fd, msrs, roadscene, tno, vifb, demo",
    ):
        download_dataset("kaist", tmp_path)


def test_missing_benchmark_is_fetched_on_first_use(
    static_server: tuple[str, Path], tmp_path: Path, fusebench_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, www = static_server
    ids, _ = _serve_msrs(www)
    monkeypatch.setenv("FUSEBENCH_MIRROR", base)
    root = tmp_path / "data"
    with pytest.raises(DatasetError, match="msrs: not found at"):
        load_dataset("msrs.test", root=root)  # without download=True nothing is fetched
    monkeypatch.setenv("FUSEBENCH_OFFLINE", "1")
    with pytest.raises(DatasetError, match="msrs: not found at"):
        load_dataset("msrs.test", root=root, download=True)
    monkeypatch.delenv("FUSEBENCH_OFFLINE")
    assert load_dataset("msrs.test", root=root, download=True).ids == sorted(ids["test"])
    assert sorted(p.name for p in root.iterdir()) == ["msrs"]
