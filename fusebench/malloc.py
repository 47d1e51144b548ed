"""Keep freed memory in the process: glibc's ``mallopt`` thresholds raised for CPU-bound tensor work.

By default glibc serves each block over 128 KiB-32 MiB with a fresh ``mmap`` and gives it back on ``free``
(and trims the heap top past 128 KiB), so code that allocates the same large temporaries again and again
(eager metrics: thousands of image-sized tensors a pair; CPU networks: their feature maps) pays their page
faults each time. Raising the thresholds keeps the memory for reuse; the process's resident size then stays
at its peak. Same as ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_TOP_PAD_``, which
must be set before Python starts. No-op off glibc.
"""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def keep_freed_memory(mmap_threshold: int = 2**31 - 1, top_pad: int = 2**30) -> bool:
    """Raise glibc's mmap and trim thresholds (and the heap's top padding); False where not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return False
    if not (hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt")):  # musl has neither
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(option, value) == 1 for option, value in (
        (_M_MMAP_THRESHOLD, mmap_threshold), (_M_TRIM_THRESHOLD, mmap_threshold), (_M_TOP_PAD, top_pad)))
