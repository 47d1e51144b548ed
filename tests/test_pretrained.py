"""Official weights on first use (fusebench.pretrained) against an HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fusebench.pretrained import PretrainedCfg, WeightFile, WeightsUnavailableError, resolve_weights

pytestmark = pytest.mark.network

WEIGHTS = b"official weights " * 3000
MEMBER = b"a model inside an archive " * 2000


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("models/readme.txt", "not this one")
        zf.writestr("models/net.model", MEMBER)
    return buf.getvalue()


ARCHIVE = _zip()


@pytest.fixture
def server() -> Iterator[tuple[str, list[str]]]:
    """Serves /w.pth and /bundle.zip; yields the base URL and the list of requested paths."""
    files = {"/w.pth": WEIGHTS, "/bundle.zip": ARCHIVE}
    requested: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requested.append(self.path)
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requested
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSEBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FUSEBENCH_OFFLINE", raising=False)


def _cfg(base: str, sha: str | None = None) -> PretrainedCfg:
    return PretrainedCfg(
        files=(
            WeightFile(url=f"{base}/w.pth", file="w.pth", sha256=sha or hashlib.sha256(WEIGHTS).hexdigest()),
            WeightFile(url=f"{base}/bundle.zip", file="net.model", member="models/net.model"),
        ),
        license="none",
        paper="test",
        origin="test",
    )


def test_first_use_downloads_verifies_and_caches(server, tmp_path: Path) -> None:
    base, requested = server
    paths = resolve_weights("net", _cfg(base), progress=False)
    cache = tmp_path / "home" / "weights" / "net"
    assert paths == [cache / "w.pth", cache / "net.model"]
    assert paths[0].read_bytes() == WEIGHTS
    assert paths[1].read_bytes() == MEMBER  # taken out of the archive
    assert requested == ["/w.pth", "/bundle.zip"]
    assert resolve_weights("net", _cfg(base), progress=False) == paths
    assert len(requested) == 2  # the second call used the cache


def test_checksum_mismatch_keeps_nothing(server, tmp_path: Path) -> None:
    base, _ = server
    with pytest.raises(WeightsUnavailableError, match="checksum mismatch") as info:
        resolve_weights("net", _cfg(base, sha="0" * 64), progress=False)
    assert str(tmp_path / "home" / "weights" / "net" / "w.pth") in str(info.value)
    assert not (tmp_path / "home" / "weights" / "net" / "w.pth").exists()


def test_offline_names_every_url_and_path(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, requested = server
    monkeypatch.setenv("FUSEBENCH_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_weights("net", _cfg(base), progress=False)
    message = str(info.value)
    cache = tmp_path / "home" / "weights" / "net"
    for text in (f"{base}/w.pth", f"{base}/bundle.zip", "models/net.model", str(cache / "w.pth"),
                 str(cache / "net.model"), "--weights"):
        assert text in message
    assert requested == []


def test_unreachable_server_says_where_to_put_the_file(tmp_path: Path) -> None:
    cfg = _cfg("http://127.0.0.1:9")  # the discard port: connection refused
    with pytest.raises(WeightsUnavailableError, match="could not reach") as info:
        resolve_weights("net", cfg, progress=False)
    assert str(tmp_path / "home" / "weights" / "net" / "w.pth") in str(info.value)


def test_given_file_or_folder(tmp_path: Path) -> None:
    single = PretrainedCfg(files=(WeightFile(url="http://x/a.pth", file="a.pth"),), license="MIT", paper="", origin="")
    file = tmp_path / "mine.pth"
    file.write_bytes(b"x")
    assert resolve_weights("one", single, file) == [file]
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "w.pth").write_bytes(b"x")
    with pytest.raises(WeightsUnavailableError, match="missing .*net.model"):
        resolve_weights("net", _cfg("http://x"), folder)
    (folder / "net.model").write_bytes(b"y")
    assert resolve_weights("net", _cfg("http://x"), folder) == [folder / "w.pth", folder / "net.model"]
    with pytest.raises(WeightsUnavailableError, match="not found; method 'one' needs the file a.pth"):
        resolve_weights("one", single, tmp_path / "nope.pth")
