"""Activations: relu, leaky_relu, sigmoid, tanh, softplus, softmax, log_softmax.

The numerically delicate ones are written so that no overflow reaches a result:

* sigmoid(x) = 1 / (1 + e^-x): for x << 0, e^-x overflows to inf and 1 / inf = 0, the correct limit
  (the overflow warning is silenced); every other x keeps full relative precision
* softplus(x) = log(1 + e^x) = max(x, 0) + log1p(e^-|x|)
* softmax(x) = e^(x - max x) / sum e^(x - max x)   (shift-invariant)
* log_softmax(x) = x - logsumexp(x)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinyae import backend
from tinyae.autograd import Function
from tinyae.ops.arithmetic import exp
from tinyae.ops.reduce import reduction_axes, sum
from tinyae.parallel import elementwise
from tinyae.tensor import Tensor


def _xp(x: Any) -> Any:
    return backend.get_array_module(x)


# One-pass loops for ReLU and leaky ReLU on float NumPy arrays: tinyae.kernels sets its C++ ones
# here while they are chosen (use_fused); None: the NumPy passes below.
_fused: Any = None


def use_fused(kernels: Any) -> None:
    """Run ReLU and leaky ReLU with ``kernels.leaky_relu(x, slope)`` and
    ``kernels.leaky_relu_backward(a, gy, slope)`` (None: NumPy's passes)."""
    global _fused
    _fused = kernels


def _fast(*arrays: Any) -> bool:
    """Whether the fused loops take these arrays: NumPy, float32 or float64, one dtype."""
    first = arrays[0]
    return (
        _fused is not None
        and all(isinstance(a, np.ndarray) and a.dtype == first.dtype for a in arrays)
        and first.dtype in (np.float32, np.float64)
    )


class ReLU(Function):
    """y = max(x, 0); dy/dx = 1 where x > 0, else 0."""

    def forward(self, x):
        y = _fused.leaky_relu(x, 0.0) if _fast(x) else elementwise(_relu, x)
        self.save_for_backward(y)  # y > 0 exactly where x > 0, and the next op keeps y anyway
        return y

    def backward(self, gy):
        (y,) = self.saved_tensors
        return gy * Tensor(_positive(y.data))

    def backward_arrays(self, gy):
        (y,) = self.saved_tensors
        if not _fusable(gy, y.data):
            return self.backward(Tensor(gy)).data
        if _fast(y.data, gy):
            return _fused.leaky_relu_backward(y.data, gy, 0.0)
        return elementwise(_masked, y.data, gy)  # mask and product in one buffer


def _relu(x: Any, out: Any = None) -> Any:
    return _xp(x).maximum(x, 0, out=out)


def _fusable(gy: Any, a: Any) -> bool:
    """Whether ``gy * factor(a)`` can be computed in the factor's buffer: same shape and dtype."""
    return gy.shape == a.shape and gy.dtype == a.dtype


def _masked(y: Any, g: Any, out: Any = None) -> Any:
    """g where y > 0, else 0: ReLU's input gradient."""
    factor = _positive(y, out=out)
    factor *= g
    return factor


def _positive(a: Any, out: Any = None) -> Any:
    """1 where a > 0, else 0, in a's dtype."""
    if out is None:
        return (a > 0).astype(a.dtype)
    return _xp(a).greater(a, 0, out=out)  # the bools are written as 0.0 and 1.0


class LeakyReLU(Function):
    """y = x for x > 0, s*x otherwise (slope s); dy/dx = 1 for x > 0, else s.

    Forward without a branch: y = max(x, s*x) when s <= 1 and min(x, s*x) when s > 1 (the
    larger/smaller of the two lines is the right one on each side of 0). ``np.where`` was ~15x
    slower on random signs. For s >= 0, y > 0 exactly where x > 0, so backward reads its mask off
    the output (which the next op keeps anyway) and the input can be freed; a negative slope
    flips the sign and keeps the input instead.
    """

    def __init__(self, slope: float) -> None:
        self.slope = slope

    def forward(self, x):
        y = _fused.leaky_relu(x, self.slope) if _fast(x) else elementwise(self._forward, x)
        self.save_for_backward(y if self.slope >= 0 else x)  # the sign of x, read off y or x
        return y

    def _forward(self, x: Any, out: Any = None) -> Any:
        xp = _xp(x)
        y = xp.multiply(x, x.dtype.type(self.slope), out=out)
        return xp.maximum(x, y, out=y) if self.slope <= 1 else xp.minimum(x, y, out=y)

    def backward(self, gy):
        (a,) = self.saved_tensors
        return gy * Tensor(self._slopes(a.data))

    def backward_arrays(self, gy):
        (a,) = self.saved_tensors
        if not _fusable(gy, a.data):
            return self.backward(Tensor(gy)).data
        if _fast(a.data, gy):
            return _fused.leaky_relu_backward(a.data, gy, self.slope)
        return elementwise(self._scaled, a.data, gy)  # slopes and product in one buffer

    def _scaled(self, a: Any, g: Any, out: Any = None) -> Any:
        factor = self._slopes(a, out=out)
        factor *= g
        return factor

    def _slopes(self, a: Any, out: Any = None) -> Any:
        factor = _positive(a, out=out)  # 1 where x > 0, else 0 ...
        factor *= a.dtype.type(1 - self.slope)
        factor += a.dtype.type(self.slope)  # ... then 1 where x > 0, else s: no branch
        return factor


class Sigmoid(Function):
    """y = 1 / (1 + e^-x); dy/dx = y (1 - y)."""

    def forward(self, x):
        if x.dtype.kind != "f":  # ints: as np.exp, in float64
            return _sigmoid(x.astype(np.float64))
        y = elementwise(_sigmoid, x)  # split over tinyae's threads when big
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        (y,) = self.saved_tensors
        return gy * y * (1 - y)


def _sigmoid(x: Any, out: Any = None) -> Any:
    xp = _xp(x)
    y = xp.negative(x, out=out)
    # (errstate is per thread, so it is set here, on the thread that computes)
    with np.errstate(over="ignore", under="ignore"):  # e^-x = inf for x < -88 (float32): 1 / inf = 0
        xp.exp(y, out=y)
    y += 1
    return xp.reciprocal(y, out=y)  # in place: one buffer, four passes, no branch


class Tanh(Function):
    """y = tanh x; dy/dx = 1 - y^2."""

    def forward(self, x):
        y = elementwise(_xp(x).tanh, x)  # split over tinyae's threads when big
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        (y,) = self.saved_tensors
        return gy * (1 - y * y)


class Softplus(Function):
    """log(1 + e^(beta x)) / beta; linear above ``threshold`` as in PyTorch."""

    def __init__(self, beta: float, threshold: float) -> None:
        self.beta, self.threshold = beta, threshold

    def forward(self, x):
        self.save_for_backward(x)
        xp = _xp(x)
        bx = x * x.dtype.type(self.beta)
        soft = (xp.maximum(bx, 0) + xp.log1p(xp.exp(-abs(bx)))) / x.dtype.type(self.beta)
        return xp.where(bx > self.threshold, x, soft)

    def backward(self, gy):
        (x,) = self.saved_tensors
        linear = Tensor((x.data * self.beta > self.threshold).astype(x.dtype))
        return gy * (linear + (1 - linear) * sigmoid(x * self.beta))


class Softmax(Function):
    """y = e^x / sum e^x; gx = y * (gy - sum(gy * y))."""

    def __init__(self, axis: int) -> None:
        self.axis = axis

    def forward(self, x):
        xp = _xp(x)
        e = xp.exp(x - x.max(axis=self.axis, keepdims=True))
        y = e / e.sum(axis=self.axis, keepdims=True)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        (y,) = self.saved_tensors
        return y * (gy - sum(gy * y, self.axis, keepdims=True))


class LogSoftmax(Function):
    """y = x - log sum e^x; gx = gy - e^y * sum(gy)."""

    def __init__(self, axis: int) -> None:
        self.axis = axis

    def forward(self, x):
        xp = _xp(x)
        shifted = x - x.max(axis=self.axis, keepdims=True)
        y = shifted - xp.log(xp.exp(shifted).sum(axis=self.axis, keepdims=True))
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        (y,) = self.saved_tensors
        return gy - exp(y) * sum(gy, self.axis, keepdims=True)


def relu(x: Tensor) -> Tensor:
    return ReLU()(x)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    if not isinstance(negative_slope, (int, float)) or isinstance(negative_slope, bool):
        raise TypeError(f"leaky_relu: negative_slope must be a number, got {type(negative_slope).__name__}")
    return LeakyReLU(negative_slope)(x)


def sigmoid(x: Tensor) -> Tensor:
    return Sigmoid()(x)


def tanh(x: Tensor) -> Tensor:
    return Tanh()(x)


def softplus(x: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    return Softplus(beta, threshold)(x)


def _one_axis(op: str, x: Tensor, dim: Any, axis: Any) -> int:
    if dim is None and axis is None:
        raise TypeError(f"{op}: dim is required (e.g. dim=1 for (N, classes) logits)")
    return reduction_axes(op, x.ndim, axis, dim)[0]


def softmax(x: Tensor, dim: int | None = None, *, axis: int | None = None) -> Tensor:
    return Softmax(_one_axis("softmax", x, dim, axis))(x)


def log_softmax(x: Tensor, dim: int | None = None, *, axis: int | None = None) -> Tensor:
    return LogSoftmax(_one_axis("log_softmax", x, dim, axis))(x)
