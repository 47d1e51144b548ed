"""Fixtures for the dataset tests: a private FUSEBENCH_HOME, and a static file server on 127.0.0.1."""

from __future__ import annotations

import csv
import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def fusebench_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Downloads and the demo cache go to a temporary folder, never to ~/.cache."""
    home = tmp_path_factory.getbasetemp() / "fusebench_home"
    monkeypatch.setenv("FUSEBENCH_HOME", str(home))
    monkeypatch.delenv("FUSEBENCH_DATA", raising=False)
    return home


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def static_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, folder it serves): put files under the folder at the URL path they should have."""
    folder = tmp_path / "www"
    folder.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", folder
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def manifest(shared_data: Path) -> list[dict[str, str]]:
    """Rows of the shared manifest.csv (dataset, split, id, ir, vi, width, height, ...)."""
    with open(shared_data / "manifest.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
