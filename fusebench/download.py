"""Downloading files once into a cache, resumably and verified, and unpacking archives safely.

Shared by dataset downloads and model weights. Only the standard library talks to the network
(urllib), so proxies set in ``https_proxy`` work and no extra dependency is needed. A download goes to
``<dest>.part``, resumes from it with an HTTP Range request after a dropped connection, is checked
against its SHA-256 when one is known, and only then is renamed to ``dest``.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm.auto import tqdm

from fusebench import __version__
from fusebench.files import sha256_file

_CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """A file that could not be fetched, verified or unpacked; the message says what to do instead."""


class _Interrupted(Exception):
    """The connection ended early; the ``.part`` file keeps what arrived, so the next try resumes."""


def fusebench_home() -> Path:
    """Cache root for downloads, weights and demo data: ``$FUSEBENCH_HOME``, else ``~/.cache/fusebench``."""
    return Path(os.environ.get("FUSEBENCH_HOME") or "~/.cache/fusebench").expanduser()


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = 30,
    attempts: int = 3,
) -> Path:
    """Fetch ``url`` to ``dest`` unless it is already there (and matches ``sha256`` when given).

    Args:
        url: http(s) address.
        dest: final path; the data arrives in ``dest + ".part"`` first.
        sha256: full hex digest to check; a mismatch deletes the file and raises.
        progress: show a tqdm bar.
        timeout: seconds to wait for the server at each step.
        attempts: tries per call; each one resumes where the last connection dropped.

    Returns:
        ``dest``.

    Raises:
        DownloadError: unreachable server, HTTP error, repeated interruption, or checksum mismatch.
    """
    dest = Path(dest)
    expected = sha256.lower() if sha256 else None
    if dest.is_file():
        if expected is None or sha256_file(dest) == expected:
            return dest
        dest.unlink()  # a corrupt or outdated cached copy: fetch it again
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    for attempt in range(1, attempts + 1):
        try:
            _fetch(url, part, dest, progress=progress, timeout=timeout)
            break
        except _Interrupted as exc:
            if attempt == attempts:
                raise DownloadError(
                    f"download of {url} was interrupted {attempts} times ({exc}); run the command again to "
                    f"resume from {part}, or download it manually and put it at {dest}"
                ) from None
    if expected is not None:
        got = sha256_file(part)
        if got != expected:
            part.unlink()
            raise DownloadError(
                f"checksum mismatch for {url}: expected sha256 {expected}, got {got}; "
                "the bad file was deleted. The upstream file may have changed; "
                "download it manually and check it, or report the new checksum"
            )
    os.replace(part, dest)
    return dest


def _fetch(url: str, part: Path, dest: Path, *, progress: bool, timeout: float) -> None:
    """One HTTP request that appends to ``part`` (resuming with Range when it already holds bytes)."""
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": f"fusebench/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as exc:
        if exc.code == 416 and offset:  # the partial file is unusable for this server: start over
            part.unlink()
            raise _Interrupted("the server refused to resume; starting again") from None
        raise DownloadError(
            f"{url} answered HTTP {exc.code} {exc.reason}; download it manually and put it at {dest}"
        ) from None
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"could not reach {url}: {reason}; check the network or proxy, "
            f"or download it manually and put it at {dest}"
        ) from None
    with response:
        resumed = offset > 0 and response.status == 206
        start = offset if resumed else 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        received = start
        with (
            open(part, "ab" if resumed else "wb") as out,
            tqdm(
                total=total,
                initial=start,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=dest.name,
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            try:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (OSError, ValueError) as exc:  # reset connection, timeout, IncompleteRead
                raise _Interrupted(f"{exc.__class__.__name__} after {received} bytes") from None
    if total is not None and received < total:
        raise _Interrupted(f"connection closed after {received} of {total} bytes")


def _safe_target(root: Path, name: str, archive: Path) -> Path:
    """Where member ``name`` lands under ``root``; absolute paths and ``..`` are refused."""
    member = PurePosixPath(name.replace("\\", "/"))
    target = (root / Path(*member.parts)).resolve() if member.parts else root
    if member.is_absolute() or ".." in member.parts or not target.is_relative_to(root):
        raise DownloadError(f"{archive}: refusing to extract {name!r}, which points outside the destination")
    return target


def extract_archive(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Unpack a zip or tar (.tar, .tar.gz, .tgz, .tar.bz2, .tar.xz) into ``dest`` and return ``dest``.

    Members that would land outside ``dest`` (absolute paths, ``..``) and tar links or device files
    are refused with a DownloadError before anything is written for them.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                target = _safe_target(root, info.filename, archive)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise DownloadError(f"{archive}: refusing to extract the symbolic link {info.filename!r}")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            for member in tf:
                target = _safe_target(root, member.name, archive)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                elif member.isfile():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tf.extractfile(member)
                    assert src is not None  # regular members always have data
                    with src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, _CHUNK)
                else:
                    raise DownloadError(
                        f"{archive}: refusing to extract {member.name!r}: "
                        "links and special files are not allowed"
                    )
    else:
        raise DownloadError(
            f"{archive}: not a zip or tar archive (or a truncated one); delete it and download again"
        )
    return dest
