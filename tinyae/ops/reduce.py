"""Reductions: sum, mean, max/min, var, logsumexp.

Every reduction takes NumPy's ``axis``/``keepdims`` or PyTorch's ``dim``/``keepdim``
(either spelling, as PyTorch itself accepts). A reduction's backward spreads the
gradient back over the reduced axes: evenly for sum/mean, onto the winners for max.
"""

from __future__ import annotations

import builtins
from typing import Any

from tinyae import backend
from tinyae.autograd import Function
from tinyae.ops.shape import broadcast_to, normalize_dim, reshape
from tinyae.tensor import Tensor


def reduction_axes(op: str, ndim: int, axis: Any = None, dim: Any = None) -> tuple[int, ...] | None:
    """Normalise ``axis``/``dim`` (int, tuple or None = all) to sorted positive axes."""
    if axis is not None and dim is not None:
        raise TypeError(f"{op}: pass either axis or dim, not both")
    a = dim if axis is None else axis
    if a is None:
        return None
    items = a if isinstance(a, (tuple, list)) else (a,)
    axes = sorted({normalize_dim(op, d, ndim, "dim") for d in items})
    return tuple(axes)


def _keep(op: str, keepdims: bool | None, keepdim: bool | None) -> bool:
    if keepdims is not None and keepdim is not None:
        raise TypeError(f"{op}: pass either keepdims or keepdim, not both")
    return bool(keepdims if keepdims is not None else keepdim)


def _kept_shape(shape: tuple[int, ...], axes: tuple[int, ...] | None) -> tuple[int, ...]:
    """``shape`` with the reduced axes set to 1 (the keepdims shape)."""
    if axes is None:
        return (1,) * len(shape)
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


class Sum(Function):
    def __init__(self, axes: tuple[int, ...] | None, keepdims: bool) -> None:
        self.axes, self.keepdims = axes, keepdims

    def forward(self, x):
        return x.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, gy):
        x = self.inputs[0]
        return broadcast_to(reshape(gy, _kept_shape(x.shape, self.axes)), x.shape)


class Max(Function):
    """Maximum; ties share the gradient equally (``torch.amax``'s rule)."""

    def __init__(self, axes: tuple[int, ...] | None, keepdims: bool) -> None:
        self.axes, self.keepdims = axes, keepdims

    def forward(self, x):
        y = x.max(axis=self.axes, keepdims=self.keepdims)
        if self._recording:
            winners = x == y.reshape(_kept_shape(x.shape, self.axes))
            share = winners / winners.sum(axis=self.axes, keepdims=True)
            self.save_for_backward(share.astype(x.dtype))  # each maximum's share of gy
        return y

    def backward(self, gy):
        (share,) = self.saved_tensors
        shape = self.inputs[0].shape
        return broadcast_to(reshape(gy, _kept_shape(shape, self.axes)), shape) * share


def sum(  # noqa: A001 - PyTorch's name
    x: Tensor, axis: Any = None, keepdims: bool | None = None, *, dim: Any = None, keepdim: bool | None = None
) -> Tensor:
    axes = reduction_axes("sum", x.ndim, axis, dim)
    return Sum(axes, _keep("sum", keepdims, keepdim))(x)


def mean(
    x: Tensor, axis: Any = None, keepdims: bool | None = None, *, dim: Any = None, keepdim: bool | None = None
) -> Tensor:
    axes = reduction_axes("mean", x.ndim, axis, dim)
    count = x.size if axes is None else _prod(x.shape[a] for a in axes)
    return Sum(axes, _keep("mean", keepdims, keepdim))(x) / count


def max(  # noqa: A001 - PyTorch's name
    x: Tensor, axis: Any = None, keepdims: bool | None = None, *, dim: Any = None, keepdim: bool | None = None
) -> Tensor:
    """Largest value over ``axis``/``dim`` (the values only, like ``torch.amax``)."""
    if x.size == 0:
        raise ValueError(f"max: cannot reduce an empty tensor of shape {x.shape}")
    axes = reduction_axes("max", x.ndim, axis, dim)
    return Max(axes, _keep("max", keepdims, keepdim))(x)


def min(  # noqa: A001 - PyTorch's name
    x: Tensor, axis: Any = None, keepdims: bool | None = None, *, dim: Any = None, keepdim: bool | None = None
) -> Tensor:
    return -max(-x, axis, keepdims, dim=dim, keepdim=keepdim)


def var(
    x: Tensor,
    axis: Any = None,
    keepdims: bool | None = None,
    *,
    dim: Any = None,
    keepdim: bool | None = None,
    correction: int | None = None,
    unbiased: bool | None = None,
    ddof: int | None = None,
) -> Tensor:
    """Variance sum((x - mean)^2) / (n - correction).

    PyTorch's default ``correction=1`` (unbiased); NumPy's ``ddof`` and PyTorch's
    older ``unbiased`` flag are accepted too.
    """
    given = [c for c in (correction, ddof, None if unbiased is None else int(unbiased)) if c is not None]
    if len(given) > 1:
        raise TypeError("var: pass only one of correction, unbiased and ddof")
    corr = given[0] if given else 1
    axes = reduction_axes("var", x.ndim, axis, dim)
    keep = _keep("var", keepdims, keepdim)
    count = x.size if axes is None else _prod(x.shape[a] for a in axes)
    centered = x - mean(x, axes, keepdims=True)
    return sum(centered * centered, axes, keepdims=keep) / builtins.max(count - corr, 0)


def std(x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
    from tinyae.ops.arithmetic import sqrt

    return sqrt(var(x, *args, **kwargs))


def logsumexp(
    x: Tensor, dim: Any = None, keepdim: bool | None = None, *, axis: Any = None, keepdims: bool | None = None
) -> Tensor:
    """log(sum(exp(x))) computed stably by factoring out the max."""
    from tinyae.ops.arithmetic import exp, log

    axes = reduction_axes("logsumexp", x.ndim, axis, dim)
    keep = _keep("logsumexp", keepdims, keepdim)
    m = Tensor(x.data.max(axis=axes, keepdims=True))  # a constant shift: no gradient needed
    xp = backend.get_array_module(x.data)
    m.data = xp.where(xp.isfinite(m.data), m.data, 0)
    out = log(sum(exp(x - m), axes, keepdims=True)) + m
    return (
        out
        if keep
        else reshape(out, tuple(s for i, s in enumerate(out.shape) if axes is not None and i not in axes))
    )


def _prod(values: Any) -> int:
    result = 1
    for v in values:
        result *= v
    return result
