"""Array backends: the one place that knows about NumPy versus CuPy.

Every piece of array code in tinyae asks :func:`get_array_module` which module
(``numpy`` or ``cupy``) owns its data, and writes ``xp.exp(x)`` instead of
``np.exp(x)``. That single indirection is what lets the same ops run on a GPU.

Devices are named as in PyTorch: ``"cpu"``, ``"cuda"`` (the current GPU) or
``"cuda:N"``.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import numpy as np

#: dtype of tensors made from Python floats, as in PyTorch.
DEFAULT_DTYPE = np.dtype(np.float32)

_cupy: ModuleType | None = None
_cupy_error: str | None = None
_cupy_checked = False


def _import_cupy() -> ModuleType | None:
    """Import CuPy once, remembering why it is unusable when it is."""
    global _cupy, _cupy_error, _cupy_checked
    if _cupy_checked:
        return _cupy
    _cupy_checked = True
    if os.environ.get("TINYAE_DISABLE_CUDA"):
        _cupy_error = "disabled by TINYAE_DISABLE_CUDA"
        return None
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install
        _cupy_error = f"CuPy is not importable ({type(exc).__name__}: {exc})"
        return None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        _cupy_error = f"CuPy found no usable GPU ({type(exc).__name__}: {exc})"
        return None
    if count == 0:
        _cupy_error = "CuPy is installed but no GPU is visible"
        return None
    _cupy = cupy
    return cupy


def cupy_or_none() -> ModuleType | None:
    """The cupy module when a GPU can be used, else None."""
    return _import_cupy()


def cuda_unavailable_reason() -> str | None:
    """Why the GPU is not used (None when it is available)."""
    _import_cupy()
    return _cupy_error


def cuda_is_available() -> bool:
    return _import_cupy() is not None


def is_cupy_array(a: Any) -> bool:
    # Checked by module name so that a machine without CuPy never imports it.
    return type(a).__module__.startswith("cupy")


def get_array_module(*arrays: Any) -> ModuleType:
    """``numpy`` or ``cupy``: the module that owns the given arrays."""
    for a in arrays:
        if is_cupy_array(a):
            return _import_cupy() or np
    return np


def device_of(a: Any) -> str:
    """PyTorch-style device name of an array: ``"cpu"`` or ``"cuda:N"``."""
    if is_cupy_array(a):
        return f"cuda:{a.device.id}"
    return "cpu"


def parse_device(device: Any) -> str:
    """Normalise ``"cpu"``, ``"cuda"``, ``"cuda:1"`` (or a Tensor device) to a name.

    ``"cuda"`` means the current GPU and becomes ``"cuda:N"``.
    """
    if device is None:
        return "cpu"
    name = str(device).strip().lower()
    if name == "cpu":
        return "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        cp = _import_cupy()
        if cp is None:
            raise RuntimeError(f"device {device!r} requested but CUDA is unavailable: {_cupy_error}")
        if name == "cuda":
            return f"cuda:{cp.cuda.Device().id}"
        index = name[5:]
        if not index.isdigit():
            raise ValueError(f"device: cannot parse {device!r}; expected 'cpu', 'cuda' or 'cuda:N'")
        count = cp.cuda.runtime.getDeviceCount()
        if int(index) >= count:
            raise ValueError(f"device {device!r}: only {count} GPU(s) visible (cuda:0..cuda:{count - 1})")
        return f"cuda:{int(index)}"
    raise ValueError(f"device: unknown device {device!r}; expected 'cpu', 'cuda' or 'cuda:N'")


def to_device(a: Any, device: Any) -> Any:
    """Copy (only when needed) an array to ``device``; returns the array there.

    Every host <-> GPU copy of tinyae's own code goes through here (or through
    ``.get()`` / ``cupy.asarray`` on user data), which is what tests/test_gpu.py counts.
    """
    target = parse_device(device)
    if target == "cpu":
        return a.get() if is_cupy_array(a) else a
    cp = _import_cupy()
    index = int(target.split(":")[1])
    if is_cupy_array(a) and a.device.id == index:
        return a
    with cp.cuda.Device(index):
        # cupy.asarray would hand back an array from another GPU unchanged; copy() moves it.
        return a.copy() if is_cupy_array(a) else cp.asarray(a)


def full(shape: tuple[int, ...], value: Any, dtype: Any, device: Any = "cpu") -> Any:
    """An array of ``shape`` filled with ``value``, made directly on ``device``.

    On a GPU the fill is a kernel with ``value`` as its argument: nothing is copied from the host.
    """
    target = parse_device(device)
    if target == "cpu":
        return np.full(shape, value, dtype=dtype)
    cp = _import_cupy()
    with cp.cuda.Device(int(target.split(":")[1])):
        return cp.full(shape, value, dtype=dtype)


def scatter_add(a: Any, indices: Any, values: Any) -> None:
    """``a[indices] += values`` in place, where repeated indices add up (``np.add.at``).

    CuPy's version is ``cupyx.scatter_add`` (atomic adds on the GPU).
    """
    if is_cupy_array(a):
        import cupyx

        cupyx.scatter_add(a, indices, values)
    else:
        np.add.at(a, indices, values)


def as_array(data: Any, dtype: Any = None, device: Any = None) -> Any:
    """Turn Python data or an array into an ndarray on ``device`` (CPU by default).

    Follows ``torch.tensor``: Python floats become float32, ints int64, bools bool;
    an existing ndarray keeps its dtype unless ``dtype`` is given.
    """
    if isinstance(data, np.ndarray) or is_cupy_array(data):
        arr = data
    else:
        arr = np.asarray(data)
        if dtype is None and arr.dtype.kind == "f":
            arr = arr.astype(DEFAULT_DTYPE)
        elif dtype is None and arr.dtype.kind in "iu" and arr.dtype != np.int64:
            arr = arr.astype(np.int64)
    if dtype is not None:
        dtype = np.dtype(dtype)
        if arr.dtype != dtype:
            arr = arr.astype(dtype)
    if device is not None:
        arr = to_device(arr, device)
    return arr
