"""Differentiable ops, grouped by kind, and the Tensor methods and operators built on them.

``tensor.py`` defines the autograd machinery only; this module attaches ``+``, ``@``,
``x.sum()``, ``x.reshape()``... to ``Tensor`` so that the core never imports ops.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinyae import backend
from tinyae.ops.activation import leaky_relu, log_softmax, relu, sigmoid, softmax, softplus, tanh
from tinyae.ops.arithmetic import (
    abs,
    add,
    clamp,
    clip,
    div,
    exp,
    log,
    matmul,
    maximum,
    minimum,
    mul,
    neg,
    pow,
    sqrt,
    sub,
    where,
)
from tinyae.ops.index import getitem
from tinyae.ops.reduce import logsumexp, max, mean, min, std, sum, var
from tinyae.ops.shape import (
    broadcast_to,
    cat,
    expand,
    flatten,
    pad,
    permute,
    reshape,
    squeeze,
    stack,
    sum_to,
    transpose,
    unflatten,
    unsqueeze,
)
from tinyae.tensor import Tensor, as_tensor

__all__ = [
    "abs", "add", "broadcast_to", "cat", "clamp", "clip", "div", "exp", "expand", "flatten", "getitem",
    "leaky_relu", "log", "log_softmax", "logsumexp", "matmul", "max", "maximum", "mean", "min", "minimum",
    "mul", "neg", "pad", "permute", "pow", "relu", "reshape", "sigmoid", "softmax", "softplus", "sqrt",
    "squeeze", "stack", "std", "sub", "sum", "sum_to", "tanh", "transpose", "unflatten", "unsqueeze",
    "var", "where",
]  # fmt: skip


#: What may stand on the other side of ``+``, ``*``...: Tensors, numbers and arrays.
_OPERAND_TYPES = (Tensor, int, float, np.number, np.bool_, np.ndarray)


def _is_operand(other: Any) -> bool:
    return isinstance(other, _OPERAND_TYPES) or backend.is_cupy_array(other)


def _operator(fn: Any) -> Any:
    def method(self: Tensor, other: Any) -> Any:
        # NotImplemented lets Python raise its usual "unsupported operand type(s) for +" TypeError.
        return fn(self, other) if _is_operand(other) else NotImplemented

    return method


def _reflected(fn: Any) -> Any:
    def method(self: Tensor, other: Any) -> Any:
        return fn(as_tensor(other, like=self), self) if _is_operand(other) else NotImplemented

    return method


def _install_tensor_methods() -> None:
    T = Tensor
    T.__add__, T.__radd__ = _operator(add), _reflected(add)
    T.__sub__, T.__rsub__ = _operator(sub), _reflected(sub)
    T.__mul__, T.__rmul__ = _operator(mul), _reflected(mul)
    T.__truediv__, T.__rtruediv__ = _operator(div), _reflected(div)
    T.__pow__, T.__rpow__ = _operator(pow), _reflected(pow)
    T.__matmul__, T.__rmatmul__ = _operator(matmul), _reflected(matmul)
    T.__neg__ = neg
    T.__abs__ = abs
    T.__getitem__ = getitem
    for fn in (
        exp, log, sqrt, abs, clip, clamp, maximum, minimum, matmul, sum, mean, max, min, var, std, logsumexp,
        reshape, flatten, unflatten, permute, transpose, squeeze, unsqueeze, expand, broadcast_to, sum_to,
        relu, leaky_relu, sigmoid, tanh, softplus, softmax, log_softmax, neg,
    ):  # fmt: skip
        setattr(T, fn.__name__, fn)
    T.view = reshape
    T.clamp = clip  # ``clamp = clip`` shares the name "clip", so the loop above set only ``clip``
    T.pow = pow
    T.__hash__ = object.__hash__  # Tensors are identity-hashed (usable in sets and dicts)


_install_tensor_methods()
