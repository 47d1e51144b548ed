"""File helpers every writer shares: atomic writes (temporary file + rename), valid JSON, content hashes
(cached by path, size and modification time), and an exclusive lock on a file."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` and rename it over ``path`` only if the block succeeds.

    A crash or an exception leaves the old file (or no file), never a half-written one.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _naming(exc, path) from exc
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; results should get the usual permissions
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # disk full, permissions: say which file could not be written
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise _naming(exc, path) from exc
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _naming(exc: OSError, path: Path) -> OSError:
    """The same OSError with ``path`` in its message (a failed write() names no file)."""
    if exc.filename is not None and str(path) in str(exc):
        return exc
    return type(exc)(exc.errno, f"cannot write {path}: {exc.strerror or exc}") if exc.errno else \
        OSError(f"cannot write {path}: {exc}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def json_safe(data: Any) -> Any:
    """``data`` with every NaN or infinite float replaced by ``None`` (JSON has no NaN; ``null`` is valid)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: json_safe(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(v) for v in data]
    if hasattr(data, "item") and callable(data.item) and getattr(data, "ndim", None) == 0:  # numpy/torch scalar
        return json_safe(data.item())
    return data


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented, strictly valid JSON (NaN and inf become ``null``), atomically."""
    text = json.dumps(json_safe(data), indent=2, sort_keys=False, default=str, allow_nan=False)
    with atomic_write(path, "w") as handle:
        handle.write(text + "\n")


def read_json(path: str | os.PathLike[str], what: str = "JSON file") -> Any:
    """Parse a JSON file; a corrupt one raises ``ValueError`` naming the file and what to do."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: corrupt {what}, not valid JSON ({exc}); delete or repair it") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: corrupt {what}, not UTF-8 text ({exc}); delete or repair it") from exc


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], timeout: float | None = None) -> Iterator[Path]:
    """Hold an exclusive ``fcntl.flock`` on ``path`` (created if missing) for the block.

    Processes that take the same lock wait for each other (``timeout`` seconds at most, then TimeoutError).
    The lock goes with the process, so a crashed holder never leaves it taken. On systems without
    ``fcntl`` (Windows) the block runs unlocked.
    """
    path = Path(path)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield path
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    except OSError as exc:
        raise _naming(exc, path) from exc
    try:
        start = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if timeout is not None else 0))
                break
            except BlockingIOError:
                if time.monotonic() - start > timeout:  # type: ignore[operator]
                    raise TimeoutError(f"{path}: still locked by another process after {timeout:.0f} s") from None
                time.sleep(0.05)
        yield path
    finally:
        os.close(fd)  # closing releases the lock


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _blake2b_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# A file modified this close to the moment it was hashed may change again within the file system's timestamp
# resolution without its mtime moving ("racy" entries, as git calls them): such hashes are not cached.
_RACY_SECONDS = 2.0


class HashCache:
    """Content hashes (BLAKE2b) of files, remembered by (resolved path, size, mtime_ns) in a JSON file.

    A replaced file (other bytes, same size or not) gets a new mtime and is hashed again; an unchanged one is
    not read at all. The cache lives in ``$FUSEBENCH_HOME/hashes.json``; a missing or corrupt cache is simply
    rebuilt. Call :meth:`save` to keep what was hashed.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        if path is None:
            from fusebench.download import fusebench_home

            path = fusebench_home() / "hashes.json"
        self.path = Path(path)
        self._entries: dict[str, list[Any]] = {}
        self._dirty = False
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and isinstance(data.get("files"), dict):
                self._entries = data["files"]

    def hash(self, path: str | os.PathLike[str]) -> str:
        """The file's content hash (hex); ``OSError`` naming the file if it cannot be read."""
        resolved = str(Path(path).resolve())
        try:
            st = os.stat(resolved)
        except OSError as exc:
            raise type(exc)(exc.errno, f"cannot read {path}: {exc.strerror}") from exc
        known = self._entries.get(resolved)
        if isinstance(known, list) and len(known) == 3 and known[:2] == [st.st_size, st.st_mtime_ns]:
            return str(known[2])
        digest = _blake2b_file(resolved)
        if time.time_ns() - st.st_mtime_ns > _RACY_SECONDS * 1e9:
            self._entries[resolved] = [st.st_size, st.st_mtime_ns, digest]
            self._dirty = True
        return digest

    def hash_many(self, paths: Iterable[str | os.PathLike[str]]) -> list[str]:
        return [self.hash(p) for p in paths]

    def save(self) -> None:
        """Write the cache back (merged with what other processes added meanwhile, without deleted files);
        failures are ignored: it is only a cache."""
        if not self._dirty:
            return
        with contextlib.suppress(OSError, ValueError), file_lock(self.path.with_name(self.path.name + ".lock")):
            try:
                current = json.loads(self.path.read_text(encoding="utf-8")).get("files", {})
            except (OSError, ValueError, AttributeError):
                current = {}
            current = current if isinstance(current, dict) else {}
            current.update(self._entries)
            current = {k: v for k, v in current.items() if os.path.exists(k)}  # forget deleted files
            write_json(self.path, {"version": 1, "files": current})
            self._dirty = False
