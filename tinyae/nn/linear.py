"""The fully connected layer's op: ``y = x @ W^T + b`` for x (..., in), W (out, in), b (out,).

Gradients for gy (M, out), M the rows of x::

    gx = gy @ W          gW = gy^T @ x          gb = sum of gy over the rows
"""

from __future__ import annotations

from tinyae import parallel
from tinyae.autograd import Function
from tinyae.nn import _conv_args as args
from tinyae.ops.arithmetic import matmul
from tinyae.ops.shape import reshape, transpose
from tinyae.tensor import Tensor

__all__ = ["linear", "LinearFunction"]


class LinearFunction(Function):
    """y = x @ W^T + b for x (M, in), W (out, in); gx = gy @ W, gW = gy^T @ x, gb = sum of gy over M."""

    def forward(self, x, w, b=None):
        need_x, need_w = self.needs_input_grad[:2]
        self.save_for_backward(x if need_w else None, w if need_x else None)  # x for gW, W for gx
        y = parallel.matmul(x, w.T)  # (M, out); BLAS reads W transposed, no copy
        if b is not None:
            y += b
        return y

    def backward(self, gy):
        x, w = self.saved_tensors
        need = self.needs_input_grad
        gx = matmul(gy, w) if need[0] else None
        gw = matmul(transpose(gy, 0, 1), x) if need[1] else None
        gb = gy.sum(axis=0) if len(need) == 3 and need[2] else None
        return gx, gw, gb


def linear(
    input: Tensor,  # noqa: A002 - PyTorch's name
    weight: Tensor,
    bias: Tensor | None = None,
) -> Tensor:
    """Fully connected layer ``y = x @ W^T + b``: x (..., in), W (out, in), b (out,) -> (..., out)."""
    op = "linear"
    x, weight, bias = args.tensors(op, input, weight, bias)
    if weight.ndim != 2:
        raise ValueError(
            f"{op}: argument 'weight' must be 2-D (out_features, in_features), got shape {weight.shape}"
        )
    if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"{op}: input's last dimension must equal weight.shape[1] = {weight.shape[1]}; "
            f"got input shape {x.shape} and weight shape {weight.shape}"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(
            f"{op}: argument 'bias' must have shape ({weight.shape[0]},) to match weight {weight.shape}, "
            f"got {bias.shape}"
        )
    params = (weight,) if bias is None else (weight, bias)
    if x.ndim == 2:
        return LinearFunction()(x, *params)
    lead = x.shape[:-1]
    y = LinearFunction()(reshape(x, (-1, weight.shape[1])), *params)  # (M, out), M = prod(lead)
    return reshape(y, (*lead, weight.shape[0]))
