"""Gradient utilities: ``clip_grad_norm_`` and ``clip_grad_value_`` (as ``torch.nn.utils``).

Notation: g_1, ..., g_n are the gradients of the parameters (those whose ``.grad`` is set),
viewed together as one long vector; ||.||_p is its p-norm:

    ||g||_p = (sum_i sum_j |g_ij|^p)^(1/p)      ||g||_inf = max_ij |g_ij|

The trailing underscore means "changes its argument": the parameters' ``.grad`` are
replaced. They are replaced by new arrays, never scaled in place, because one gradient
array may be shared by two tensors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from tinyae import backend
from tinyae.tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _with_grads(op: str, parameters: Tensor | Iterable[Tensor]) -> list[Tensor]:
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    for p in params:
        if not isinstance(p, Tensor):
            raise TypeError(f"{op}: parameters must be Tensors, got {type(p).__name__}")
    return [p for p in params if p.grad is not None]


def clip_grad_norm_(
    parameters: Tensor | Iterable[Tensor],
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> Tensor:
    """Scale all gradients together so that their total ``norm_type``-norm is at most ``max_norm``.

    total = ||(g_1, ..., g_n)||_p (computed as the p-norm of the per-tensor norms), and every
    gradient is multiplied by min(1, max_norm / (total + 1e-6)) -- PyTorch's rule, the 1e-6
    guarding against division by zero. Returns the total norm *before* clipping, as a 0-d
    Tensor (useful to log). ``norm_type`` may be ``float("inf")``. With
    ``error_if_nonfinite`` a nan or inf total raises RuntimeError instead of spreading nan.
    """
    op = "clip_grad_norm_"
    params = _with_grads(op, parameters)
    norm_type = float(norm_type)
    if not norm_type > 0:
        raise ValueError(f"{op}: norm_type must be > 0 (or inf), got {norm_type}")
    if not params:
        return Tensor(0.0)
    grads = [p.grad.data for p in params]
    xp = backend.get_array_module(grads[0])
    # One norm per tensor, then the norm of those norms: equal to the norm of the concatenation.
    norms = xp.stack([xp.linalg.norm(g.ravel(), ord=norm_type) for g in grads])
    total = norms.max() if math.isinf(norm_type) else xp.linalg.norm(norms, ord=norm_type)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(
            f"{op}: the total norm of order {norm_type} of the gradients is {float(total)}; "
            "pass error_if_nonfinite=False to clip anyway"
        )
    coef = max_norm / (float(total) + 1e-6)
    if coef < 1.0:  # multiplying by min(coef, 1) = 1 would change nothing
        for p in params:
            g = p.grad.data
            p.grad = Tensor(g * g.dtype.type(coef))  # a new array: g may be shared
    return Tensor(xp.asarray(total))  # an array keeps the gradients' dtype (float64 stays float64)


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float) -> None:
    """Clamp every gradient element to [-clip_value, clip_value] (new arrays, as above)."""
    op = "clip_grad_value_"
    if not clip_value >= 0:
        raise ValueError(f"{op}: clip_value must be >= 0, got {clip_value}")
    for p in _with_grads(op, parameters):
        xp = backend.get_array_module(p.grad.data)
        p.grad = Tensor(xp.clip(p.grad.data, -clip_value, clip_value))
