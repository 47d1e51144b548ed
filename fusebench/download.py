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


def offline() -> bool:
    """``FUSEBENCH_OFFLINE=1`` forbids downloads (as ``HF_HUB_OFFLINE`` does for the Hugging Face hub)."""
    return os.environ.get("FUSEBENCH_OFFLINE", "").strip().lower() in ("1", "true", "yes")


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
        DownloadError: ``FUSEBENCH_OFFLINE=1``, unreachable server, HTTP error, repeated interruption, or
            checksum mismatch.
    """
    dest = Path(dest)
    expected = sha256.lower() if sha256 else None
    if dest.is_file():
        if expected is None or sha256_file(dest) == expected:
            return dest
        dest.unlink()  # a corrupt or outdated cached copy: fetch it again
    if offline():
        raise DownloadError(f"{dest.name} is not in the cache and FUSEBENCH_OFFLINE is set: download {url} and "
                            f"save it as {dest}")
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


#: Google Drive's download endpoint; ``{id}`` is the file id. A module constant so tests (and mirrors) can
#: point it at another host.
GDRIVE_DOWNLOAD_URL = "https://drive.google.com/uc?export=download&id={id}"
_GDRIVE_PAGE_LIMIT = 4 << 20  # an HTML confirmation page is a few kB; never read more than this of one


def gdrive_url(file_id: str) -> str:
    """The address a person opens in a browser to download a Google Drive file."""
    return f"https://drive.google.com/file/d/{file_id}"


def download_google_drive(
    file_id: str,
    dest: str | Path,
    *,
    size: int | None = None,
    sha256: str | None = None,
    progress: bool = True,
) -> Path:
    """Fetch a public Google Drive file to ``dest`` unless it is already there (and matches when checkable).

    Drive answers a large file's address with an HTML page ("can't scan this file for viruses") whose
    download form carries a confirmation token; that page is parsed with gdown's maintained parser
    (:func:`gdown.download.get_url_from_gdrive_confirmation`) and the form's address is then fetched with
    :func:`download_file`'s machinery: data arrives in ``dest + ".part"`` with a progress bar, an interrupted
    transfer resumes from it (HTTP Range; also in a later call), and the file is renamed to ``dest`` only
    once it is complete and its ``size`` / ``sha256`` (when given) match.

    Raises:
        DownloadError: ``FUSEBENCH_OFFLINE=1``, Drive unreachable or refusing (quota, permissions), repeated
            interruption, or a size/checksum mismatch; the message names the Drive URL and the exact path
            to put the file at.
    """
    dest = Path(dest)
    expected = sha256.lower() if sha256 else None
    if dest.is_file():
        if (size is None or dest.stat().st_size == size) and (expected is None or sha256_file(dest) == expected):
            return dest
        dest.unlink()  # a corrupt or outdated cached copy: fetch it again
    where = f"download {gdrive_url(file_id)} in a browser and save it as {dest}"
    if offline():
        raise DownloadError(f"{dest.name} is not in the cache and FUSEBENCH_OFFLINE is set: {where}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    if size is not None and part.is_file() and part.stat().st_size > size:
        part.unlink()  # longer than the file can be: not a prefix of it
    attempts = 3
    for attempt in range(1, attempts + 1):
        try:
            _fetch(_gdrive_file_url(file_id, where), part, dest, progress=progress, timeout=30)
            break
        except _Interrupted as exc:
            if attempt == attempts:
                raise DownloadError(
                    f"download of {gdrive_url(file_id)} was interrupted {attempts} times ({exc}); run the "
                    f"command again to resume from {part}, or {where}"
                ) from None
        except DownloadError as exc:
            raise DownloadError(f"{exc}\nTo get it by hand: {where}") from None
    got_size = part.stat().st_size
    if size is not None and got_size != size:
        part.unlink()
        raise DownloadError(
            f"{gdrive_url(file_id)} gave {got_size} bytes, expected {size}; the bad file was deleted. "
            f"The upstream file may have changed; {where}"
        )
    if expected is not None and (got := sha256_file(part)) != expected:
        part.unlink()
        raise DownloadError(
            f"checksum mismatch for {gdrive_url(file_id)}: expected sha256 {expected}, got {got}; the bad "
            f"file was deleted. The upstream file may have changed; {where}"
        )
    os.replace(part, dest)
    return dest


def _gdrive_file_url(file_id: str, where: str) -> str:
    """The address that serves the file's bytes: Drive's own one, or the form of its confirmation page."""
    from gdown.download import get_url_from_gdrive_confirmation
    from gdown.exceptions import FileURLRetrievalError

    url = GDRIVE_DOWNLOAD_URL.format(id=file_id)
    try:
        response = urlopen(Request(url, headers={"User-Agent": f"fusebench/{__version__}"}), timeout=30)
    except HTTPError as exc:
        raise DownloadError(f"{gdrive_url(file_id)} answered HTTP {exc.code} {exc.reason}") from None
    except (URLError, OSError) as exc:
        raise DownloadError(f"could not reach {gdrive_url(file_id)}: {getattr(exc, 'reason', exc)}") from None
    with response:
        if response.headers.get("Content-Disposition") or not response.headers.get_content_type().startswith(
            "text/html"
        ):
            return response.geturl()  # a small file: Drive serves it directly
        try:
            page = response.read(_GDRIVE_PAGE_LIMIT).decode(response.headers.get_content_charset() or "utf-8",
                                                             "replace")
        except (OSError, ValueError) as exc:
            raise _Interrupted(f"{exc.__class__.__name__} while reading Drive's confirmation page") from None
    try:
        return get_url_from_gdrive_confirmation(page)
    except FileURLRetrievalError as exc:  # quota exceeded, private file, or a page shape gdown does not know
        raise DownloadError(f"Google Drive did not hand out {gdrive_url(file_id)}: {exc}") from None
