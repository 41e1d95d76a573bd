"""Tensor factories and the global random generator (``tinyae.manual_seed``).

All randomness in tinyae (weight init, dropout, reparameterization noise, shuffling
defaults) draws from one NumPy ``Generator`` so that ``manual_seed`` makes a run
reproducible. On a GPU the numbers are drawn on the host and copied once, which
keeps CPU and GPU runs identical for the same seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinyae import backend
from tinyae.tensor import Tensor

_generator = np.random.default_rng(0)


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the global generator; returns it."""
    global _generator
    _generator = np.random.default_rng(seed)
    return _generator


def generator() -> np.random.Generator:
    """The global generator (what init, dropout and samplers draw from)."""
    return _generator


def _shape(size: Any) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = size[0]
    return tuple(int(s) for s in size)


def _make(array: np.ndarray, dtype: Any, device: Any, requires_grad: bool) -> Tensor:
    dtype = backend.DEFAULT_DTYPE if dtype is None else np.dtype(dtype)
    return Tensor(array.astype(dtype, copy=False), requires_grad=requires_grad, device=device)


def _filled(shape: tuple[int, ...], value: Any, dtype: Any, device: Any, requires_grad: bool) -> Tensor:
    """A constant tensor, filled where it lives (no host array is copied to a GPU)."""
    dtype = backend.DEFAULT_DTYPE if dtype is None else np.dtype(dtype)
    return Tensor(backend.full(shape, value, dtype, device), requires_grad=requires_grad)


def zeros(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _filled(_shape(size), 0, dtype, device, requires_grad)


def ones(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _filled(_shape(size), 1, dtype, device, requires_grad)


def full(
    size: Any, fill_value: float, dtype: Any = None, device: Any = None, requires_grad: bool = False
) -> Tensor:
    return _filled(tuple(size), fill_value, dtype, device, requires_grad)


def randn(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples."""
    return _make(_generator.standard_normal(_shape(size)), dtype, device, requires_grad)


def rand(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1)."""
    return _make(_generator.random(_shape(size)), dtype, device, requires_grad)


def arange(
    start: float, end: float | None = None, step: float = 1, dtype: Any = None, device: Any = None
) -> Tensor:
    values = np.arange(start, end, step) if end is not None else np.arange(start)
    return Tensor(values if dtype is None else values.astype(dtype), device=device)


def zeros_like(x: Tensor, dtype: Any = None) -> Tensor:
    xp = backend.get_array_module(x.data)
    return Tensor(xp.zeros(x.shape, dtype=dtype or x.dtype))


def ones_like(x: Tensor, dtype: Any = None) -> Tensor:
    xp = backend.get_array_module(x.data)
    return Tensor(xp.ones(x.shape, dtype=dtype or x.dtype))


def randn_like(x: Tensor) -> Tensor:
    return randn(*x.shape, dtype=x.dtype, device=x.device)


def rand_like(x: Tensor) -> Tensor:
    return rand(*x.shape, dtype=x.dtype, device=x.device)
