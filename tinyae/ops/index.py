"""Indexing: ``x[key]`` with ints, slices, None, Ellipsis, integer arrays and boolean masks.

Backward scatters the gradient into a zero tensor of the input's shape. With
integer-array indices the same element can be picked twice, so the scatter must
*add* (``np.add.at``), not assign.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinyae import backend
from tinyae.autograd import Function
from tinyae.tensor import Tensor


def _normalize_key(key: Any, xp: Any, device: str) -> tuple[Any, bool]:
    """Unwrap Tensors in ``key``; report whether it is basic (views only, no repeats).

    Index arrays end up on the indexed tensor's ``device``: NumPy indices (and lists) are
    copied to a GPU tensor's device; a GPU index for a CPU tensor is an error.
    """
    items = key if isinstance(key, tuple) else (key,)
    out, basic = [], True
    for k in items:
        if isinstance(k, Tensor):
            k = k.data
        if isinstance(k, list):
            k = xp.asarray(k) if k else xp.zeros(0, dtype=xp.int64)  # [] selects nothing, as in NumPy
        if isinstance(k, np.ndarray) and xp is not np:
            k = backend.to_device(k, device)
        elif backend.is_cupy_array(k) and backend.device_of(k) != device:
            raise RuntimeError(
                f"getitem: expected the index on the tensor's device, "
                f"found {device} and {backend.device_of(k)}"
            )
        if isinstance(k, (float, str)) or (hasattr(k, "dtype") and k.dtype.kind not in "biu"):
            raise TypeError(
                f"getitem: indices must be ints, slices, None, Ellipsis, or integer/boolean arrays, "
                f"got {type(k).__name__}" + (f" of dtype {k.dtype}" if hasattr(k, "dtype") else "")
            )
        if hasattr(k, "dtype") and getattr(k, "ndim", 0) > 0:
            basic = False
            if k.dtype.kind == "b":  # a mask selects the positions of its True values
                out.extend(k.nonzero())
                continue
        out.append(k)
    return tuple(out), basic


class GetItem(Function):
    def __init__(self, key: tuple, basic: bool) -> None:
        self.key, self.basic = key, basic

    def forward(self, x):
        return x[self.key]

    def backward(self, gy):
        return ScatterAdd(self.key, self.basic, self.inputs[0].shape)(gy)


class ScatterAdd(Function):
    """The adjoint of GetItem: zeros of ``shape`` with ``gy`` added at ``key``."""

    def __init__(self, key: tuple, basic: bool, shape: tuple[int, ...]) -> None:
        self.key, self.basic, self.shape = key, basic, shape

    def forward(self, gy):
        xp = backend.get_array_module(gy)
        gx = xp.zeros(self.shape, dtype=gy.dtype)
        if self.basic:
            gx[self.key] = gy  # a basic index never selects an element twice
        else:
            backend.scatter_add(gx, self.key, gy)  # np.add.at, or cupyx.scatter_add on a GPU
        return gx

    def backward(self, ggx):
        return GetItem(self.key, self.basic)(ggx)


def getitem(x: Tensor, key: Any) -> Tensor:
    xp = backend.get_array_module(x.data)
    key, basic = _normalize_key(key, xp, x.device)
    try:
        return GetItem(key, basic)(x)
    except IndexError as exc:
        raise IndexError(
            f"getitem: index {key!r} is invalid for a tensor of shape {x.shape}: {exc}"
        ) from None
