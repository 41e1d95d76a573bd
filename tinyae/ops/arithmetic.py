"""Elementwise arithmetic and matrix multiplication.

Binary ops broadcast like NumPy. Broadcasting copies an input along new or size-1
axes, so its backward sums the gradient back over those axes (``sum_to``).

Notation: ``x``, ``y`` are inputs, ``gy`` the gradient of the output; every
``backward`` returns d(loss)/d(input) = gy * d(output)/d(input).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinyae import backend, parallel
from tinyae.autograd import Function
from tinyae.ops.shape import broadcast_shape, broadcast_to, squeeze, sum_to, transpose, unsqueeze
from tinyae.tensor import Tensor, _as_tensors


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


class _Binary(Function):
    """Shared pieces of broadcasting binary ops."""

    def reduce_grads(self, ga: Tensor | None, gb: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
        a, b = self.inputs
        return (
            sum_to(ga, a.shape) if ga is not None else None,
            sum_to(gb, b.shape) if gb is not None else None,
        )


def _binary(cls: type, op: str, a: Any, b: Any) -> Tensor:
    a, b = _as_tensors((a, b), op)
    if a.shape != b.shape:  # equal shapes always broadcast
        broadcast_shape(op, a.shape, b.shape)
    return cls()(a, b)


class Add(_Binary):
    def forward(self, a, b):
        return a + b

    def backward(self, gy):
        return self.reduce_grads(gy, gy)


class Sub(_Binary):
    def forward(self, a, b):
        return a - b

    def backward(self, gy):
        return self.reduce_grads(gy, -gy if self.needs_input_grad[1] else None)


class Mul(_Binary):
    def forward(self, a, b):
        need_a, need_b = self.needs_input_grad
        self.save_for_backward(a if need_b else None, b if need_a else None)  # d(ab)/da = b
        return parallel.elementwise(backend.get_array_module(a).multiply, a, b)  # split when big

    def backward(self, gy):
        a, b = self.saved_tensors
        need_a, need_b = self.needs_input_grad
        return self.reduce_grads(gy * b if need_a else None, gy * a if need_b else None)


class Div(_Binary):
    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a / b

    def backward(self, gy):
        a, b = self.saved_tensors
        ga = gy / b
        return self.reduce_grads(ga, -ga * a / b if self.needs_input_grad[1] else None)


class Pow(_Binary):
    """a ** b for two tensors: d/da = b a^(b-1), d/db = a^b log(a)."""

    def forward(self, a, b):
        y = a**b
        self.save_for_backward(a, b, y)
        return y

    def backward(self, gy):
        a, b, y = self.saved_tensors
        ga = gy * b * a ** (b - 1) if self.needs_input_grad[0] else None
        gb = gy * y * log(a) if self.needs_input_grad[1] else None
        return self.reduce_grads(ga, gb)


class PowScalar(Function):
    """x ** c for a constant exponent c."""

    def __init__(self, c: float) -> None:
        self.c = c

    def forward(self, x):
        self.save_for_backward(x)
        return x**self.c

    def backward(self, gy):
        (x,) = self.saved_tensors
        return gy * self.c * x ** (self.c - 1)


def add(a: Any, b: Any) -> Tensor:
    return _binary(Add, "add", a, b)


def sub(a: Any, b: Any) -> Tensor:
    return _binary(Sub, "sub", a, b)


def mul(a: Any, b: Any) -> Tensor:
    return _binary(Mul, "mul", a, b)


def div(a: Any, b: Any) -> Tensor:
    return _binary(Div, "div", a, b)


def pow(a: Any, b: Any) -> Tensor:  # noqa: A001 - PyTorch's name
    if isinstance(b, (int, float)) and isinstance(a, Tensor):
        return PowScalar(b)(a)
    return _binary(Pow, "pow", a, b)


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


def neg(x: Tensor) -> Tensor:
    return Neg()(x)


# ------------------------------------------------------------- elementwise
class Exp(Function):
    def forward(self, x):
        y = backend.get_array_module(x).exp(x)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        (y,) = self.saved_tensors
        return gy * y  # d/dx e^x = e^x


class Log(Function):
    def forward(self, x):
        self.save_for_backward(x)
        return backend.get_array_module(x).log(x)

    def backward(self, gy):
        (x,) = self.saved_tensors
        return gy / x


class Sqrt(Function):
    def forward(self, x):
        y = backend.get_array_module(x).sqrt(x)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        (y,) = self.saved_tensors
        return gy / (2 * y)


class Abs(Function):
    def forward(self, x):
        if self._recording:
            self.save_for_backward(backend.get_array_module(x).sign(x))
        return backend.get_array_module(x).abs(x)

    def backward(self, gy):
        (sign,) = self.saved_tensors  # a constant: d|x|/dx = sign(x)
        return gy * sign


class Clip(Function):
    """Gradient passes where the input lies inside [lo, hi] and is zero outside."""

    def __init__(self, lo: float | None, hi: float | None) -> None:
        self.lo, self.hi = lo, hi

    def forward(self, x):
        if self._recording:
            inside = backend.get_array_module(x).ones_like(x, dtype=bool)
            if self.lo is not None:
                inside &= x >= self.lo
            if self.hi is not None:
                inside &= x <= self.hi
            self.save_for_backward(inside.astype(x.dtype))
        return backend.get_array_module(x).clip(x, self.lo, self.hi)

    def backward(self, gy):
        (inside,) = self.saved_tensors  # 1 inside [lo, hi], 0 outside
        return gy * inside


class Maximum(_Binary):
    """Elementwise max; at ties the gradient is split equally (as PyTorch)."""

    def forward(self, a, b):
        if self._recording:
            self.save_for_backward(((a > b) + 0.5 * (a == b)).astype(a.dtype))  # a's share of gy
        return backend.get_array_module(a, b).maximum(a, b)

    def backward(self, gy):
        (mask_a,) = self.saved_tensors
        return self.reduce_grads(gy * mask_a, gy * (1 - mask_a))


def exp(x: Tensor) -> Tensor:
    return Exp()(x)


def log(x: Tensor) -> Tensor:
    return Log()(x)


def sqrt(x: Tensor) -> Tensor:
    return Sqrt()(x)


def abs(x: Tensor) -> Tensor:  # noqa: A001 - PyTorch's name
    return Abs()(x)


def clip(x: Tensor, min: float | None = None, max: float | None = None) -> Tensor:  # noqa: A002
    """Clamp values to [min, max] (``torch.clamp``); either bound may be None."""
    if min is None and max is None:
        raise ValueError("clip: at least one of min and max must be given")
    for name, bound in (("min", min), ("max", max)):
        if bound is not None and not _is_number(bound):
            raise TypeError(f"clip: {name} must be a number or None, got {type(bound).__name__}")
    return Clip(min, max)(x)


clamp = clip


def maximum(a: Any, b: Any) -> Tensor:
    return _binary(Maximum, "maximum", a, b)


def minimum(a: Any, b: Any) -> Tensor:
    a, b = _as_tensors((a, b), "minimum")
    return -maximum(-a, -b)


class Where(Function):
    """``cond ? a : b`` with a constant boolean condition."""

    def __init__(self, cond: Any) -> None:
        self.cond = cond

    def forward(self, a, b):
        return backend.get_array_module(a, b).where(self.cond, a, b)

    def backward(self, gy):
        a, b = self.inputs  # only their shapes
        zero = Tensor(backend.get_array_module(gy.data).zeros((), dtype=gy.dtype))
        ga = sum_to(where(self.cond, gy, zero), a.shape) if self.needs_input_grad[0] else None
        gb = sum_to(where(self.cond, zero, gy), b.shape) if self.needs_input_grad[1] else None
        return ga, gb


def where(condition: Any, a: Any, b: Any) -> Tensor:
    """Pick ``a`` where ``condition`` holds, else ``b`` (all three broadcast)."""
    a, b = _as_tensors((a, b), "where")
    cond = condition.data if isinstance(condition, Tensor) else condition
    # A Tensor or GPU array condition must live with the inputs; plain host data (bools, lists,
    # NumPy arrays) is copied to their device, as class targets are in the losses.
    if isinstance(condition, Tensor) or backend.is_cupy_array(cond):
        if backend.device_of(cond) != a.device:
            raise RuntimeError(
                f"where: expected the condition on the inputs' device, "
                f"found {a.device} and {backend.device_of(cond)}"
            )
    shape = broadcast_shape("where", a.shape, b.shape, np.shape(cond))  # np.shape reads a GPU array's .shape
    cond = backend.get_array_module(a.data).asarray(cond, dtype=bool)
    return Where(cond)(broadcast_to(a, shape), broadcast_to(b, shape))


# ------------------------------------------------------------------ matmul
class MatMul(Function):
    """Batched matrix product of tensors with ndim >= 2 (batch dims broadcast).

    (..., M, K) @ (..., K, N) -> (..., M, N); ga = gy @ b^T, gb = a^T @ gy.
    """

    def forward(self, a, b):
        need_a, need_b = self.needs_input_grad
        self.save_for_backward(a if need_b else None, b if need_a else None)
        return parallel.matmul(a, b)  # split over tinyae's threads when big

    def backward(self, gy):
        a, b = self.saved_tensors
        a_shape, b_shape = self.inputs[0].shape, self.inputs[1].shape
        ga = sum_to(matmul(gy, transpose(b)), a_shape) if self.needs_input_grad[0] else None
        gb = sum_to(matmul(transpose(a), gy), b_shape) if self.needs_input_grad[1] else None
        return ga, gb


def matmul(a: Any, b: Any) -> Tensor:
    """``a @ b`` with NumPy's rules for 1-D (vector) and batched operands."""
    a, b = _as_tensors((a, b), "matmul")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(
            f"matmul: both operands need at least 1 dimension, got shapes {a.shape} and {b.shape}"
        )
    if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} are not aligned (inner dimensions differ)")
    try:
        broadcast_shape("matmul", a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(
            f"matmul: batch dimensions of shapes {a.shape} and {b.shape} cannot be broadcast together"
        ) from None
    if a.ndim == 1:  # a row vector, dropped again from the result
        return squeeze(matmul(unsqueeze(a, 0), b), -2 if b.ndim > 1 else -1)
    if b.ndim == 1:  # a column vector
        return squeeze(matmul(a, unsqueeze(b, -1)), -1)
    return MatMul()(a, b)
