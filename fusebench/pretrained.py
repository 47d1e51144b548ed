"""Where a method's published weights come from, and getting them into the weights cache on first use.

A :class:`PretrainedCfg` records, per method, the files of its official weights (URL pinned to a commit or
release, sha256, size, the member to take from an archive), their licence, paper and origin, in the style of
timm's ``pretrained_cfg``. :func:`resolve_weights` turns it into local paths: a path the user gave (a file or a
folder holding the files), else ``$FUSEBENCH_HOME/weights/<method>/<file>``, downloading what is missing with
:func:`fusebench.download.download_file` (progress bar, resumable, checksum). With no network, or with
``FUSEBENCH_OFFLINE=1``, the error names every URL and the exact path to put each file at.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fusebench.download import DownloadError, download_file, fusebench_home, offline
from fusebench.files import atomic_write


@dataclass(frozen=True)
class WeightFile:
    """One file of a method's weights, as its authors publish it."""

    url: str
    file: str  # the name it has in the cache (and in a folder given by the user)
    sha256: str | None = None  # full hex digest of the downloaded file; None where nobody could verify it
    size: int | None = None  # bytes, for the record and the progress bar
    member: str | None = None  # the file inside a zip archive that ``url`` points to


@dataclass(frozen=True)
class PretrainedCfg:
    """Provenance of a method's official weights: what to fetch and under which terms."""

    files: tuple[WeightFile, ...]
    license: str  # "none" means no licence file: all rights reserved, so fusebench never redistributes it
    paper: str
    origin: str  # official repository and commit the pipeline was read from
    notes: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def needs_download(self) -> bool:
        return bool(self.files)


class WeightsUnavailableError(FileNotFoundError):
    """Official weights that are neither given, nor cached, nor downloadable now; the message says how."""


def weights_dir(method: str) -> Path:
    """The cache folder of one method's weights: ``$FUSEBENCH_HOME/weights/<method>``."""
    return fusebench_home() / "weights" / method


def resolve_weights(
    method: str, cfg: PretrainedCfg, weights: str | os.PathLike[str] | None = None, *, progress: bool = True
) -> list[Path]:
    """Local paths of every file in ``cfg``, in order, downloading into the cache what is missing.

    Args:
        method: registry name; names the cache folder.
        cfg: the method's pretrained config.
        weights: a file (single-file weights) or a folder holding the files by their cache names; ``None``
            uses the cache.
        progress: show download progress.

    Raises:
        WeightsUnavailableError: a given path that does not hold the files, or no network and no cached copy.
    """
    if weights is not None:
        given = Path(weights)
        if given.is_file() and len(cfg.files) == 1:
            return [given]
        if given.is_dir():
            paths = [given / f.file for f in cfg.files]
            if missing := [str(p) for p in paths if not p.is_file()]:
                raise WeightsUnavailableError(f"{given}: missing {', '.join(missing)} for method '{method}'")
            return paths
        raise WeightsUnavailableError(
            f"{given}: not found; method '{method}' needs "
            + (f"the file {cfg.files[0].file}" if len(cfg.files) == 1 else
               f"a folder with {', '.join(f.file for f in cfg.files)}")
        )
    folder = weights_dir(method)
    paths = [folder / f.file for f in cfg.files]
    missing = [(f, p) for f, p in zip(cfg.files, paths, strict=True) if not p.is_file()]
    if not missing:
        return paths
    if offline():
        raise WeightsUnavailableError(_manual_message(method, missing, "FUSEBENCH_OFFLINE is set"))
    for spec, path in missing:
        try:
            _fetch(spec, path, progress=progress)
        except DownloadError as exc:
            raise WeightsUnavailableError(_manual_message(method, missing, str(exc))) from exc
    return paths


def _fetch(spec: WeightFile, path: Path, *, progress: bool) -> None:
    """Download one file (or the archive holding it) and put it at ``path``."""
    if spec.member is None:
        download_file(spec.url, path, sha256=spec.sha256, progress=progress)
        return
    archive = path.parent / Path(spec.url.split("?")[0]).name
    download_file(spec.url, archive, sha256=spec.sha256, progress=progress)
    try:
        with zipfile.ZipFile(archive) as zf, zf.open(spec.member) as src, atomic_write(path, "wb") as out:
            while block := src.read(1 << 20):
                out.write(block)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise DownloadError(f"{archive}: cannot take {spec.member!r} from it ({exc})") from exc


def _manual_message(method: str, missing: Sequence[tuple[WeightFile, Path]], reason: str) -> str:
    lines = [f"the official weights of '{method}' are not in the cache and cannot be downloaded ({reason})."]
    lines.append("Download them on a machine with internet and put them here (or pass --weights PATH):")
    for spec, path in missing:
        what = f"{spec.url} (take {spec.member} out of the archive)" if spec.member else spec.url
        lines.append(f"  {what}\n    -> {path}")
    return "\n".join(lines)
