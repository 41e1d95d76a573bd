"""Host memory: keep freed memory in the process, so that the next array reuses it.

Why this matters. A training step allocates the same arrays every time: activations, column
buffers, gradients, each a few MB. NumPy takes their memory from the C library's ``malloc``, and
glibc hands big freed blocks back to the operating system (``munmap``, or trimming the top of the
heap once more than a threshold is free there). The next array of that size is then fresh pages,
and the first write to each 4 KB page is a page fault that the kernel serves by zeroing the page.
On a virtual machine that costs about 3 microseconds a page, 10-15% of a convolutional training
step (docs/performance.md).

So at import tinyae raises two glibc thresholds (``mallopt``): blocks up to 32 MB (glibc's
maximum) come from the heap instead of their own mapping, and up to 256 MB of free memory at the
heap's top is kept instead of returned. After the first step, every later step reuses memory that
is already mapped: no page faults. The price: the process keeps
its peak footprint (``release`` hands the free part back), as PyTorch's GPU caching allocator does.

The settings are process-wide. Set ``TINYAE_KEEP_FREED_MEMORY=0`` before importing tinyae to
leave the C library's defaults alone. On other C libraries (macOS, musl) nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["keep_freed_memory", "keeps_freed_memory", "release"]

# glibc's mallopt parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 2**20  # the largest glibc accepts on 64-bit systems
TRIM_THRESHOLD = 256 * 2**20

_kept = False


def _glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc (the only one with these knobs), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Raise glibc's thresholds so freed memory stays in the process (see the module docstring).

    Returns whether the settings are in effect (False on a C library other than glibc). Called at
    import unless ``TINYAE_KEEP_FREED_MEMORY=0``; calling it again is harmless. It cannot be
    undone within the process (glibc's adaptive default is lost once a threshold is set).
    """
    global _kept
    libc = _glibc()
    if libc is None:
        return False
    # mallopt returns 1 on success.
    _kept = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    return _kept


def keeps_freed_memory() -> bool:
    """Whether :func:`keep_freed_memory` is in effect in this process."""
    return _kept


def release() -> bool:
    """Hand the process's free heap memory back to the operating system (``malloc_trim``).

    For after a training run, in a process that goes on with other work. Returns whether any
    memory was released (False also on a C library other than glibc).
    """
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


if os.environ.get("TINYAE_KEEP_FREED_MEMORY", "1").strip() != "0":
    keep_freed_memory()
