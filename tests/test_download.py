"""fusebench.download against an HTTP server on 127.0.0.1: cache, resume, checksum, offline, archives."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fusebench.download import DownloadError, download_file, extract_archive, fusebench_home

pytestmark = pytest.mark.network

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Server:
    """Serves PAYLOAD at /file.bin with Range support; ``drop_after`` cuts the next N responses short."""

    def __init__(self) -> None:
        self.requests: list[str | None] = []  # the Range header of each request
        self.drop_after: int | None = None
        self.drops_left = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.headers.get("Range"))
                if self.path != "/file.bin":
                    self.send_error(404)
                    return
                start = (
                    int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
                )
                body = PAYLOAD[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.drops_left and outer.drop_after is not None:
                    outer.drops_left -= 1
                    self.wfile.write(body[: outer.drop_after])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)  # the connection breaks mid-body
                    return
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    thread = threading.Thread(target=srv.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def test_download_verifies_and_caches(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "cache" / "file.bin"
    assert download_file(f"{server.url}/file.bin", dest, sha256=PAYLOAD_SHA, progress=False) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_suffix(".bin.part").exists()
    download_file(f"{server.url}/file.bin", dest, sha256=PAYLOAD_SHA.upper(), progress=False)
    assert server.requests == [None]  # the second call used the cache


def test_resumes_from_existing_part_file(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "file.bin"
    dest.with_suffix(".bin.part").write_bytes(PAYLOAD[:1000])
    download_file(f"{server.url}/file.bin", dest, sha256=PAYLOAD_SHA, progress=False)
    assert server.requests == ["bytes=1000-"]
    assert dest.read_bytes() == PAYLOAD


def test_resumes_after_connection_drops_midway(server: Server, tmp_path: Path) -> None:
    server.drop_after, server.drops_left = 30_000, 2
    dest = tmp_path / "file.bin"
    download_file(f"{server.url}/file.bin", dest, sha256=PAYLOAD_SHA, progress=False)
    assert server.requests == [None, "bytes=30000-", "bytes=60000-"]
    assert dest.read_bytes() == PAYLOAD


def test_gives_up_after_repeated_drops_and_keeps_part(server: Server, tmp_path: Path) -> None:
    server.drop_after, server.drops_left = 10_000, 5
    dest = tmp_path / "file.bin"
    with pytest.raises(
        DownloadError, match=r"interrupted 2 times .*run the command again to resume from .*file\.bin\.part"
    ):
        download_file(f"{server.url}/file.bin", dest, progress=False, attempts=2)
    assert dest.with_suffix(".bin.part").read_bytes() == PAYLOAD[:20_000]
    assert not dest.exists()


def test_checksum_mismatch_deletes_file_and_names_both(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "file.bin"
    wrong = "0" * 64
    with pytest.raises(
        DownloadError, match=rf"checksum mismatch .*expected sha256 {wrong}, got {PAYLOAD_SHA}"
    ):
        download_file(f"{server.url}/file.bin", dest, sha256=wrong, progress=False)
    assert not dest.exists() and not dest.with_suffix(".bin.part").exists()


def test_cached_file_with_wrong_checksum_is_fetched_again(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"stale")
    download_file(f"{server.url}/file.bin", dest, sha256=PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_http_error_names_status_and_manual_fix(server: Server, tmp_path: Path) -> None:
    with pytest.raises(
        DownloadError, match=r"answered HTTP 404 .*download it manually and put it at .*missing\.bin"
    ):
        download_file(f"{server.url}/missing.bin", tmp_path / "missing.bin", progress=False)


def test_unreachable_server_gives_manual_instructions(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that nothing listens on once the socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/file.bin"
    with pytest.raises(DownloadError, match=rf"could not reach {url}: .*download it manually and put it at"):
        download_file(url, tmp_path / "file.bin", progress=False, timeout=5)


def test_fusebench_home_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FUSEBENCH_HOME", str(tmp_path))
    assert fusebench_home() == tmp_path
    monkeypatch.delenv("FUSEBENCH_HOME")
    assert fusebench_home() == Path("~/.cache/fusebench").expanduser()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_extracts_zip_and_tar(tmp_path: Path) -> None:
    _zip(tmp_path / "a.zip", {"top/ir/1.png": b"one", "top/vi/1.png": b"two"})
    out = extract_archive(tmp_path / "a.zip", tmp_path / "zip")
    assert (out / "top/ir/1.png").read_bytes() == b"one" and (out / "top/vi/1.png").read_bytes() == b"two"
    with tarfile.open(tmp_path / "a.tar.gz", "w:gz") as tf:
        info = tarfile.TarInfo("top/w.bin")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"abc"))
    assert (extract_archive(tmp_path / "a.tar.gz", tmp_path / "tar") / "top/w.bin").read_bytes() == b"abc"


@pytest.mark.parametrize("name", ["../evil.txt", "top/../../evil.txt", "/abs/evil.txt"])
def test_zip_path_traversal_is_refused(tmp_path: Path, name: str) -> None:
    _zip(tmp_path / "bad.zip", {name: b"x"})
    with pytest.raises(DownloadError, match="points outside the destination"):
        extract_archive(tmp_path / "bad.zip", tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_tar_links_are_refused(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "link.tar", "w") as tf:
        link = tarfile.TarInfo("top/passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    with pytest.raises(DownloadError, match="links and special files are not allowed"):
        extract_archive(tmp_path / "link.tar", tmp_path / "out")


def test_not_an_archive(tmp_path: Path) -> None:
    (tmp_path / "x.zip").write_bytes(b"<html>not found</html>")
    with pytest.raises(DownloadError, match="not a zip or tar archive"):
        extract_archive(tmp_path / "x.zip", tmp_path / "out")


def test_offline_refuses_before_contacting_the_server(tmp_path, monkeypatch) -> None:
    """FUSEBENCH_OFFLINE holds for every download (MAE files by URL too), and names where the file goes."""
    from fusebench.download import DownloadError, download_file

    monkeypatch.setenv("FUSEBENCH_OFFLINE", "1")
    dest = tmp_path / "cache" / "mae.pth"
    with pytest.raises(DownloadError, match=r"FUSEBENCH_OFFLINE is set: download http://127\.0\.0\.1:9/mae\.pth") as info:
        download_file("http://127.0.0.1:9/mae.pth", dest, progress=False)
    assert str(dest) in str(info.value) and not dest.parent.exists()  # nothing created
