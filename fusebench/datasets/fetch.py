"""``fusebench datasets download``: fetch a benchmark's upstream archives and arrange them into the layout.

Archives are cached in ``$FUSEBENCH_HOME/downloads`` (resumable, see :mod:`fusebench.download`),
unpacked into a scratch folder beside the data, and only the image folders named by the source's
layout are copied into ``<root>/.<name>.partial``. That folder is checked (ids paired, content digest
where known) and then renamed to ``<root>/<name>``, so an interrupted run never leaves a half dataset.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from PIL import Image

from fusebench.datasets.base import DatasetError, data_root
from fusebench.datasets.demo import demo_folder
from fusebench.datasets.sources import SOURCES, Archive, Source
from fusebench.download import DownloadError, download_file, extract_archive, fusebench_home
from fusebench.images import IMAGE_EXTENSIONS


class ManualDownloadRequired(DownloadError):
    """The dataset cannot be fetched automatically; the message holds the official instructions."""


def download_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    archives: Sequence[str | os.PathLike[str]] = (),
    mirror: str | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> Path:
    """Download (or take from ``archives``) benchmark ``name`` and arrange it under ``<root>/<name>``.

    Args:
        name: a built-in benchmark (``tno``, ``roadscene``, ``msrs``, ``llvip``, ``m3fd``, ``vifb``,
            ``demo``).
        root: data root (default: ``$FUSEBENCH_DATA``, else ``./datasets``).
        archives: archives already downloaded by hand, used instead of the network.
        mirror: ``scheme://host[/prefix]`` replacing the scheme and host of every upstream URL (default:
            ``$FUSEBENCH_MIRROR``, if set).
        progress: show download progress bars.
        echo: where progress messages go.

    Returns:
        The dataset folder.

    Raises:
        ManualDownloadRequired: LLVIP/M3FD without ``archives``; the message says how to get them.
        DownloadError: network, checksum or archive problems.
        DatasetError: unknown name, or an archive without the expected layout.
    """
    if name == "demo":
        folder = demo_folder()
        echo(f"demo: ready at {folder} (generated locally)")
        return folder
    if name not in SOURCES:
        raise DatasetError(f"no download for '{name}'; downloadable: {', '.join(sorted(SOURCES))}, demo")
    source = SOURCES[name]
    root = data_root(root)
    target = root / name
    if target.is_dir() and any(target.iterdir()):
        echo(f"{name}: already present at {target} (delete that folder to download again)")
        return target
    paths = [Path(a) for a in archives] or _fetch_archives(name, source, mirror, progress, echo)
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _arrange_all(source, paths, staging, echo)
        if source.content_sha256:
            got = content_digest(staging)
            if got != source.content_sha256:
                raise DownloadError(
                    f"{name}: the arranged files differ from the release fusebench was checked against: "
                    f"expected content sha256 {source.content_sha256}, got {got}. Nothing was installed; "
                    "the upstream files may have changed, please report it"
                )
        if target.is_dir():
            target.rmdir()  # empty, checked above
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    echo(f"{name}: ready at {target}")
    return target


def _fetch_archives(
    name: str, source: Source, mirror: str | None, progress: bool, echo: Callable[[str], None]
) -> list[Path]:
    """Download every archive of ``source`` into the cache (or reuse the cached copy)."""
    paths = []
    for spec in source.archives:
        if spec.url is None:
            raise ManualDownloadRequired(source.manual or f"{name} must be downloaded by hand")
        url = _mirrored(spec.url, mirror)
        echo(f"{name}: downloading {url}")
        cached = fusebench_home() / "downloads" / spec.filename
        paths.append(download_file(url, cached, sha256=spec.sha256, progress=progress))
    return paths


def content_digest(folder: Path) -> str:
    """SHA-256 over the sorted lines ``<relative path>\\t<file sha256>`` of every file under ``folder``.

    Independent of archive packing and file dates, so it checks the images themselves.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        digest.update(f"{rel}\t{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()


def _mirrored(url: str, mirror: str | None) -> str:
    """``url`` on ``mirror`` (else ``$FUSEBENCH_MIRROR``, for sites that proxy the upstream hosts)."""
    mirror = mirror or os.environ.get("FUSEBENCH_MIRROR")
    if not mirror:
        return url
    base, parts = urlsplit(mirror), urlsplit(url)
    return urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + parts.path, parts.query, ""))


def _arrange_all(source: Source, paths: Sequence[Path], staging: Path, echo: Callable[[str], None]) -> None:
    """Unpack each archive and copy the folders of the layout it matches into ``staging``."""
    pending = list(source.archives)
    for path in paths:
        if not path.is_file():
            raise DatasetError(f"{path}: archive not found")
        with tempfile.TemporaryDirectory(prefix=".extract-", dir=staging.parent) as scratch:
            extract_archive(path, scratch)
            for spec in pending:
                folders = _resolve_layout(Path(scratch), spec.layout)
                if folders is not None:
                    _arrange(spec, folders, staging, echo)
                    pending.remove(spec)
                    break
            else:
                wanted = "; ".join(", ".join(s.layout.values()) for s in pending) or "nothing more"
                raise DatasetError(f"{path}: does not hold the expected folders ({wanted})")
    if pending:
        missing = ", ".join(s.url or s.filename for s in pending)
        raise DatasetError(f"archives missing for this dataset: {missing}")


def _resolve_layout(scratch: Path, layout: Mapping[str, str], depth: int = 3) -> dict[str, Path] | None:
    """Map each fusebench folder to its archive folder, below ``scratch`` or a top folder at most
    ``depth`` levels down (GitHub's ``<repo>-<commit>/``, ``LLVIP/``); None if the layout is absent."""
    level = [scratch]
    for _ in range(depth + 1):
        for base in level:
            found = {dest: _child(base, src) for dest, src in layout.items()}
            if all(found.values()):
                return {dest: path for dest, path in found.items() if path is not None}
        level = [d for parent in level for d in sorted(parent.iterdir()) if d.is_dir()]
    return None


def _child(base: Path, relative: str) -> Path | None:
    """``base / relative`` matched case-insensitively, one component at a time."""
    current = base
    for part in relative.split("/"):
        match = next((d for d in current.iterdir() if d.is_dir() and d.name.lower() == part.lower()), None)
        if match is None:
            return None
        current = match
    return current


def _images(folder: Path, rename: dict[str, str]) -> dict[str, Path]:
    found = {
        p.stem: p
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    }
    if rename:
        return {rename[stem]: path for stem, path in found.items() if stem in rename}
    return found


def _arrange(spec: Archive, folders: dict[str, Path], staging: Path, echo: Callable[[str], None]) -> None:
    """Copy one archive's image folders into ``staging`` under their fusebench names, pairing by id."""
    for group in sorted({dest.rpartition("/")[0] for dest in folders}):
        prefix = f"{group}/" if group else ""
        ir = _images(folders[prefix + "ir"], dict(spec.rename))
        vi = _images(folders[prefix + "vi"], dict(spec.rename))
        pairs, skipped = _pair(ir, vi)
        if skipped:
            echo(f"  skipped files without a partner: {', '.join(sorted(skipped))}")
        for pair_id, (ir_path, vi_path) in sorted(pairs.items()):
            _store(ir_path, staging / prefix / "ir", pair_id, spec.grey)
            _store(vi_path, staging / prefix / "vi", pair_id, spec.grey)


def _pair(ir: dict[str, Path], vi: dict[str, Path]) -> tuple[dict[str, tuple[Path, Path]], list[str]]:
    """Pair by id; ids differing only in case (VIFB's peopleShadow/peopleshadow) take the visible id."""
    pairs = {i: (ir[i], vi[i]) for i in ir.keys() & vi.keys()}
    vi_left = {i.lower(): i for i in vi.keys() - ir.keys()}
    skipped = []
    for i in sorted(ir.keys() - vi.keys()):
        match = vi_left.pop(i.lower(), None)
        if match is None:
            skipped.append(ir[i].name)
        else:
            pairs[match] = (ir[i], vi[match])
    skipped += [vi[i].name for i in vi_left.values()]
    return pairs, skipped


def _store(src: Path, folder: Path, pair_id: str, grey: bool) -> None:
    """Copy the bytes, or with ``grey`` re-save an R=G=B PNG losslessly as one-channel PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    if grey and src.suffix.lower() == ".png":
        with Image.open(src) as img:
            if img.mode == "RGB":
                rgb = np.asarray(img)
                if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
                    Image.fromarray(np.ascontiguousarray(rgb[..., 0])).save(folder / f"{pair_id}.png")
                    return
    shutil.copyfile(src, folder / f"{pair_id}{src.suffix.lower()}")
