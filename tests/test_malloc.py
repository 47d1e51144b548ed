"""keep_freed_memory: glibc's thresholds set where glibc is, a no-op elsewhere."""

from __future__ import annotations

import ctypes
import platform
import sys

import pytest

from fusebench import malloc


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_thresholds_are_accepted_by_glibc() -> None:
    assert malloc.keep_freed_memory() is True
    assert malloc.keep_freed_memory(mmap_threshold=64 << 20) is True


def test_no_op_off_linux_and_off_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert malloc.keep_freed_memory() is False
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(ctypes, "CDLL", lambda name: object())  # a C library without mallopt (musl)
    assert malloc.keep_freed_memory() is False
