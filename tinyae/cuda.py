"""``tinyae.cuda``: is a GPU usable? (CuPy is imported only when asked.)"""

from __future__ import annotations

from tinyae import backend


def is_available() -> bool:
    """True when CuPy imports and sees at least one GPU."""
    return backend.cuda_is_available()


def unavailable_reason() -> str | None:
    """Why the GPU is not used, or None when it is available."""
    return backend.cuda_unavailable_reason()


def device_count() -> int:
    cp = backend.cupy_or_none()
    return 0 if cp is None else int(cp.cuda.runtime.getDeviceCount())


def synchronize() -> None:
    """Wait for queued GPU work (needed before timing GPU code)."""
    cp = backend.cupy_or_none()
    if cp is not None:
        cp.cuda.Device().synchronize()
