"""Activations: relu, leaky_relu, sigmoid, tanh, softplus, softmax, log_softmax.

The numerically delicate ones are written so that no intermediate overflows:

* sigmoid(x) = 1 / (1 + e^-x) for x >= 0 and e^x / (1 + e^x) for x < 0
* softplus(x) = log(1 + e^x) = max(x, 0) + log1p(e^-|x|)
* softmax(x) = e^(x - max x) / sum e^(x - max x)   (shift-invariant)
* log_softmax(x) = x - logsumexp(x)
"""

from __future__ import annotations

from typing import Any

from tinyae import backend
from tinyae.ops.arithmetic import exp
from tinyae.ops.reduce import reduction_axes, sum
from tinyae.tensor import Function, Tensor


def _xp(x: Any) -> Any:
    return backend.get_array_module(x)


class ReLU(Function):
    needs_inputs = False
    needs_outputs = True

    def forward(self, x):
        return _xp(x).maximum(x, 0)

    def backward(self, gy):
        y = self.output().data  # y > 0 exactly where x > 0, and y is kept anyway by the next op
        return gy * Tensor((y > 0).astype(y.dtype))


class LeakyReLU(Function):
    def __init__(self, slope: float) -> None:
        self.slope = slope

    def forward(self, x):
        return _xp(x).where(x > 0, x, x * x.dtype.type(self.slope))

    def backward(self, gy):
        x = self.inputs[0].data
        return gy * Tensor(_xp(x).where(x > 0, 1, self.slope).astype(x.dtype))


class Sigmoid(Function):
    needs_inputs = False
    needs_outputs = True

    def forward(self, x):
        xp = _xp(x)
        e = xp.exp(-abs(x))  # in (0, 1]: never overflows
        return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))

    def backward(self, gy):
        y = self.output()
        return gy * y * (1 - y)


class Tanh(Function):
    needs_inputs = False
    needs_outputs = True

    def forward(self, x):
        return _xp(x).tanh(x)

    def backward(self, gy):
        y = self.output()
        return gy * (1 - y * y)


class Softplus(Function):
    """log(1 + e^(beta x)) / beta; linear above ``threshold`` as in PyTorch."""

    def __init__(self, beta: float, threshold: float) -> None:
        self.beta, self.threshold = beta, threshold

    def forward(self, x):
        xp = _xp(x)
        bx = x * x.dtype.type(self.beta)
        soft = (xp.maximum(bx, 0) + xp.log1p(xp.exp(-abs(bx)))) / x.dtype.type(self.beta)
        return xp.where(bx > self.threshold, x, soft)

    def backward(self, gy):
        x = self.inputs[0]
        linear = Tensor((x.data * self.beta > self.threshold).astype(x.dtype))
        return gy * (linear + (1 - linear) * sigmoid(x * self.beta))


class Softmax(Function):
    needs_inputs = False
    needs_outputs = True

    def __init__(self, axis: int) -> None:
        self.axis = axis

    def forward(self, x):
        xp = _xp(x)
        e = xp.exp(x - x.max(axis=self.axis, keepdims=True))
        return e / e.sum(axis=self.axis, keepdims=True)

    def backward(self, gy):
        y = self.output()
        return y * (gy - sum(gy * y, self.axis, keepdims=True))


class LogSoftmax(Function):
    needs_inputs = False
    needs_outputs = True

    def __init__(self, axis: int) -> None:
        self.axis = axis

    def forward(self, x):
        xp = _xp(x)
        shifted = x - x.max(axis=self.axis, keepdims=True)
        return shifted - xp.log(xp.exp(shifted).sum(axis=self.axis, keepdims=True))

    def backward(self, gy):
        return gy - exp(self.output()) * sum(gy, self.axis, keepdims=True)


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
