"""download_google_drive against a Drive look-alike on 127.0.0.1: confirmation page, resume, checks, offline.

The server answers ``/uc?export=download&id=ID`` the way Google Drive answers a large file: an HTML page
("Google Drive can't scan this file for viruses") whose ``#download-form`` carries ``id``, ``export``,
``confirm`` and ``uuid`` hidden inputs; the form's address then serves the bytes (``Content-Disposition:
attachment``, HTTP Range). It runs in a daemon thread, every socket has a timeout, and it shuts itself down
after 60 s even if a test hangs.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

import fusebench.download as dl
from fusebench.download import DownloadError, download_google_drive

pytestmark = pytest.mark.network

FILE_ID = "18N6tn78VztQOvobVWu6J-RJHo3jsBKkk"
PAYLOAD = os.urandom(300_000)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
UUID = "3b4f2c1e-7d0a-4e55-9a31-0c2f8e6b1a99"

CONFIRM_PAGE = (  # Drive sends the page as one line; gdown parses it line by line
    '<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>'
    '<div class="uc-main"><div id="uc-text"><p class="uc-warning-caption">Google Drive can\'t scan this file '
    'for viruses.</p><p class="uc-warning-subcaption"><span class="uc-name-size"><a href="/open?id={id}">'
    'final_new_60.pth</a> (1.3G)</span> is too large for Google to scan for viruses. Would you still like to '
    'download this file?</p><form id="download-form" action="{base}/download" method="get"><input '
    'type="submit" id="uc-download-link" class="goog-inline-block jfk-button jfk-button-action" '
    'value="Download anyway"/><input type="hidden" name="id" value="{id}"><input type="hidden" name="export" '
    'value="download"><input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" '
    'value="{uuid}"></form></div></div></body></html>'
)

QUOTA_PAGE = """<html><body><div class="uc-main"><div id="uc-text">
<p class="uc-error-caption">Sorry, you can't view or download this file at this time.</p>
<p class="uc-error-subcaption">Too many users have viewed or downloaded this file recently.</p>
</div></div></body></html>"""


class Drive:
    """State of the Drive look-alike: what it was asked, what it serves, and how it misbehaves."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str | None]] = []  # (path without query, Range header)
        self.payload = PAYLOAD
        self.direct = False  # small files: /uc serves the bytes at once
        self.quota = False  # /uc answers with Drive's error page
        self.drop_after: int | None = None  # cut the next file response after this many bytes, once
        outer = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                outer.log.append((parts.path, self.headers.get("Range")))
                if parts.path == "/uc" and query.get("id") == FILE_ID and not outer.direct:
                    page = QUOTA_PAGE if outer.quota else CONFIRM_PAGE.format(id=FILE_ID, base=outer.url,
                                                                               uuid=UUID)
                    self._send_html(page)
                elif parts.path == "/uc" and query.get("id") == FILE_ID or (
                    parts.path == "/download"
                    and query == {"id": FILE_ID, "export": "download", "confirm": "t", "uuid": UUID}
                ):
                    self._send_file()
                else:
                    self.send_error(404)

            def _send_html(self, page: str) -> None:
                body = page.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _send_file(self) -> None:
                data = outer.payload
                start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Disposition", 'attachment; filename="final_new_60.pth"')
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.drop_after is not None:
                    cut, outer.drop_after = outer.drop_after, None
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)  # the connection breaks mid-body
                    return
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def paths(self) -> list[str]:
        return [p for p, _ in self.log]


@pytest.fixture
def drive(monkeypatch: pytest.MonkeyPatch) -> Iterator[Drive]:
    srv = Drive()
    monkeypatch.setattr(dl, "GDRIVE_DOWNLOAD_URL", srv.url + "/uc?export=download&id={id}")
    monkeypatch.delenv("FUSEBENCH_OFFLINE", raising=False)
    thread = threading.Thread(target=srv.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    deadline = threading.Timer(60, srv.httpd.shutdown)  # bounded: stops by itself
    deadline.daemon = True
    deadline.start()
    yield srv
    deadline.cancel()
    srv.httpd.shutdown()
    srv.httpd.server_close()


def test_confirmation_page_then_file_with_checks(drive: Drive, tmp_path: Path) -> None:
    dest = tmp_path / "weights" / "maefuse" / "final_new_60.pth"
    got = download_google_drive(FILE_ID, dest, size=len(PAYLOAD), sha256=PAYLOAD_SHA.upper(), progress=False)
    assert got == dest and dest.read_bytes() == PAYLOAD
    assert not Path(str(dest) + ".part").exists()
    assert drive.log == [("/uc", None), ("/download", None)]
    download_google_drive(FILE_ID, dest, size=len(PAYLOAD), sha256=PAYLOAD_SHA, progress=False)
    assert len(drive.log) == 2  # cached: no request


def test_progress_bar_is_shown(drive: Drive, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    download_google_drive(FILE_ID, tmp_path / "final_new_60.pth", progress=True)
    assert "final_new_60.pth" in capsys.readouterr().err  # tqdm writes to stderr


def test_small_file_served_directly(drive: Drive, tmp_path: Path) -> None:
    drive.direct = True
    dest = download_google_drive(FILE_ID, tmp_path / "f.pth", size=len(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert drive.paths == ["/uc", "/uc"]  # probe, then the transfer


def test_resumes_after_the_connection_drops_midway(drive: Drive, tmp_path: Path) -> None:
    drive.drop_after = 100_000
    dest = tmp_path / "final_new_60.pth"
    download_google_drive(FILE_ID, dest, size=len(PAYLOAD), sha256=PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert drive.log == [("/uc", None), ("/download", None), ("/uc", None), ("/download", "bytes=100000-")]


def test_resumes_a_part_file_left_by_an_earlier_call(drive: Drive, tmp_path: Path) -> None:
    dest = tmp_path / "final_new_60.pth"
    Path(str(dest) + ".part").write_bytes(PAYLOAD[:12_345])
    download_google_drive(FILE_ID, dest, size=len(PAYLOAD), sha256=PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert drive.log == [("/uc", None), ("/download", "bytes=12345-")]


def test_size_mismatch_deletes_and_names_url_and_path(drive: Drive, tmp_path: Path) -> None:
    dest = tmp_path / "final_new_60.pth"
    with pytest.raises(DownloadError, match=r"gave 300000 bytes, expected 300001") as info:
        download_google_drive(FILE_ID, dest, size=len(PAYLOAD) + 1, progress=False)
    assert f"https://drive.google.com/file/d/{FILE_ID}" in str(info.value) and str(dest) in str(info.value)
    assert not dest.exists() and not Path(str(dest) + ".part").exists()


def test_checksum_mismatch_deletes(drive: Drive, tmp_path: Path) -> None:
    dest = tmp_path / "final_new_60.pth"
    with pytest.raises(DownloadError, match=rf"expected sha256 {'0' * 64}, got {PAYLOAD_SHA}"):
        download_google_drive(FILE_ID, dest, sha256="0" * 64, progress=False)
    assert not dest.exists() and not Path(str(dest) + ".part").exists()


def test_cached_copy_of_wrong_size_is_fetched_again(drive: Drive, tmp_path: Path) -> None:
    dest = tmp_path / "final_new_60.pth"
    dest.write_bytes(b"old")
    download_google_drive(FILE_ID, dest, size=len(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_drive_refusal_names_url_and_path(drive: Drive, tmp_path: Path) -> None:
    drive.quota = True
    dest = tmp_path / "final_new_60.pth"
    with pytest.raises(DownloadError, match=r"Too many users") as info:
        download_google_drive(FILE_ID, dest, progress=False)
    assert f"https://drive.google.com/file/d/{FILE_ID}" in str(info.value) and str(dest) in str(info.value)
    assert not dest.exists()


def test_offline_fails_at_once_without_a_request(
    drive: Drive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUSEBENCH_OFFLINE", "1")
    dest = tmp_path / "final_new_60.pth"
    with pytest.raises(DownloadError, match="FUSEBENCH_OFFLINE") as info:
        download_google_drive(FILE_ID, dest, progress=False)
    assert f"https://drive.google.com/file/d/{FILE_ID}" in str(info.value) and str(dest) in str(info.value)
    assert drive.log == []


def test_unreachable_host_fails_fast_naming_url_and_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(dl, "GDRIVE_DOWNLOAD_URL", f"http://127.0.0.1:{port}/uc?id={{id}}")
    monkeypatch.delenv("FUSEBENCH_OFFLINE", raising=False)
    dest = tmp_path / "final_new_60.pth"
    start = time.perf_counter()
    with pytest.raises(DownloadError, match="could not reach") as info:
        download_google_drive(FILE_ID, dest, progress=False)
    assert time.perf_counter() - start < 5
    assert f"https://drive.google.com/file/d/{FILE_ID}" in str(info.value) and str(dest) in str(info.value)
