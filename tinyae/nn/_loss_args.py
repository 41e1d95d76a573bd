"""Argument checks and the reduction shared by the losses (:mod:`tinyae.nn.losses`,
:mod:`tinyae.nn.cross_entropy`): each error names the loss, the argument and the shapes."""

from __future__ import annotations

from typing import Any

import numpy as np

from tinyae import backend
from tinyae.tensor import Tensor, as_tensor

REDUCTIONS = ("none", "mean", "sum")


def check_reduction(op: str, reduction: str, allowed: tuple[str, ...] = REDUCTIONS) -> None:
    if reduction not in allowed:
        names = ", ".join(repr(r) for r in allowed)
        raise ValueError(f"{op}: reduction must be one of {names}, got {reduction!r}")


def check_input(op: str, input: Any, name: str = "input") -> Tensor:
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(input).__name__}")
    if input.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be floating point, got {input.dtype}")
    return input


def float_target(
    op: str, input: Tensor, target: Any, name: str = "target", input_name: str = "input"
) -> Tensor:
    """``target`` as a Tensor of ``input``'s shape and dtype, or a clear error.

    Arrays and Python numbers are converted to ``input``'s dtype; a Tensor of another
    floating dtype is refused (mixing float32 and float64 silently would hand float64
    gradients to float32 parameters).
    """
    if isinstance(target, Tensor):
        if target.dtype != input.dtype:
            raise TypeError(
                f"{op}: {input_name} is {input.dtype} but {name} is {target.dtype}; convert one of them "
                f"(e.g. {name}.to(dtype=input.dtype))"
            )
    else:
        xp = backend.get_array_module(input.data)
        target = as_tensor(xp.asarray(target, dtype=input.dtype), like=input)
    if target.shape != input.shape:
        raise ValueError(
            f"{op}: {input_name} shape {input.shape} and {name} shape {target.shape} differ; "
            f"they must be equal (no implicit broadcasting)"
        )
    return target


def broadcast_weight(op: str, input: Tensor, weight: Any, name: str) -> Tensor:
    """A weight that broadcasts to ``input``'s shape (without enlarging it), as a Tensor."""
    if not isinstance(weight, Tensor):
        weight = Tensor(backend.get_array_module(input.data).asarray(weight, dtype=input.dtype))
    try:
        shape = np.broadcast_shapes(weight.shape, input.shape)
    except ValueError:
        shape = None
    if shape != input.shape:
        raise ValueError(
            f"{op}: {name} of shape {weight.shape} does not broadcast to input shape {input.shape}"
        )
    if weight.dtype != input.dtype:
        raise TypeError(f"{op}: input is {input.dtype} but {name} is {weight.dtype}")
    return weight


def reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss
