"""Batch normalisation: ``batch_norm`` (functional) and its training-mode Function.

Notation: the input x has shape (N, C) or (N, C, L) or (N, C, H, W); statistics are
per channel c, over the axes A = every axis but the channel axis 1, holding
M = N (* L or * H * W) values each. w (weight) and b (bias) are per-channel vectors.

Training mode (batch statistics)::

    mu = mean_A(x)            var = mean_A((x - mu)^2)          (biased: divides by M)
    x_hat = (x - mu) / sqrt(var + eps)
    y = w * x_hat + b                                           (per channel)

and the running statistics are updated with the UNBIASED variance, as PyTorch::

    running_mean <- (1 - momentum) * running_mean + momentum * mu
    running_var  <- (1 - momentum) * running_var  + momentum * var * M / (M - 1)

Evaluation mode uses the running statistics in place of mu and var (constants), so
it is an affine map ``y = x * scale + shift`` per channel, built from Tensor ops.

Backward (closed form; inv_std = 1 / sqrt(var + eps))::

    dL/db = sum_A(gy)             dL/dw = sum_A(gy * x_hat)
    dL/dx = w * inv_std * (gy - (dL/db + x_hat * dL/dw) / M)

Normalisation and the affine step are ONE Function (not normalise, multiply, add:
three ops that would keep x_hat twice and the product once). Like PyTorch it keeps
only x and the per-channel statistics, and rebuilds x_hat in the backward.
"""

from __future__ import annotations

from typing import Any

from tinyae import backend, kernels
from tinyae.autograd import Function
from tinyae.ops.arithmetic import sqrt
from tinyae.ops.reduce import mean
from tinyae.ops.reduce import sum as sum_
from tinyae.ops.shape import reshape
from tinyae.tensor import Tensor

__all__ = ["BatchNormFunction", "batch_norm"]


class BatchNormFunction(Function):
    """(x[, w][, b]) -> y = w * x_hat + b with batch statistics (w and b optional, as given).

    After the call, ``batch_mean`` and ``batch_var`` (biased, keepdims shape
    (1, C, 1, ...)) hold the statistics, for the running-average update.
    """

    def __init__(self, axes: tuple[int, ...], eps: float, has_weight: bool, has_bias: bool) -> None:
        self.axes, self.eps = axes, eps
        self.has_weight, self.has_bias = has_weight, has_bias

    def _params(self, params: tuple) -> tuple[Any, Any]:
        """(w, b) out of the inputs after x, None where not given."""
        w = params[0] if self.has_weight else None
        b = params[-1] if self.has_bias else None
        return w, b

    def forward(self, x, *params):
        w, b = self._params(params)
        self.save_for_backward(x, w)  # x to rebuild x_hat, w to scale dL/dx; of b only the shape
        n, c = x.shape[:2]
        # The passes over the data are kernels (tinyae.kernels): one fused loop per channel in C++.
        y, mean, var, inv_std = kernels.batch_norm_forward(x.reshape(n, c, -1), w, b, self.eps)  # (N, C, L)
        bshape = (1, -1) + (1,) * (x.ndim - 2)  # a (C,) vector broadcast over x
        self.batch_mean, self.batch_var, self.inv_std = mean.reshape(bshape), var.reshape(bshape), inv_std
        return y.reshape(x.shape)

    def backward(self, gy):
        # x_hat and inv_std are rebuilt as functions of x, so that a second derivative sees how
        # the batch statistics move with x.
        x, w = self.saved_tensors
        m = x.size // x.shape[1]  # M
        bshape = (1, -1) + (1,) * (x.ndim - 2)
        centered = x - mean(x, self.axes, keepdims=True)
        inv_std = 1 / sqrt(mean(centered * centered, self.axes, keepdims=True) + self.eps)
        x_hat = centered * inv_std
        gb = sum_(gy, self.axes, keepdims=True)  # (1, C, 1, 1)
        gw = sum_(gy * x_hat, self.axes, keepdims=True)
        scale = inv_std if w is None else inv_std * reshape(w, bshape)
        gx = scale * (gy - (gb + x_hat * gw) / m) if self.needs_input_grad[0] else None
        return self._per_input(gx, reshape(gw, (-1,)), reshape(gb, (-1,)))

    def backward_arrays(self, gy):
        # The closed form on arrays, one fused kernel call, reusing the forward's statistics.
        x, w = self.saved_tensors
        n, c = x.shape[:2]
        gx, gw, gb = kernels.batch_norm_backward(
            x.data.reshape(n, c, -1),  # (N, C, L)
            gy.reshape(n, c, -1),
            self.batch_mean.reshape(c),
            self.inv_std,
            None if w is None else w.data,
            need_gx=self.needs_input_grad[0],
        )
        return self._per_input(None if gx is None else gx.reshape(x.shape), gw, gb)

    def _per_input(self, gx: Any, gw: Any, gb: Any) -> tuple:
        """(gx[, gw][, gb]) in the order of the inputs, None where no gradient is needed."""
        need = self.needs_input_grad
        grads = [gx]
        if self.has_weight:
            grads.append(gw if need[len(grads)] else None)
        if self.has_bias:
            grads.append(gb if need[len(grads)] else None)
        return tuple(grads)


def _check_channel_tensor(name: str, t: Any, input: Tensor) -> None:
    if t is None:
        return
    if not isinstance(t, Tensor):
        raise TypeError(f"batch_norm: {name} must be a Tensor or None, got {type(t).__name__}")
    channels = input.shape[1]
    if t.shape != (channels,):
        raise ValueError(
            f"batch_norm: {name} must have shape ({channels},) for input of shape {input.shape} "
            f"(C={channels} channels in dim 1), got {t.shape}"
        )
    if t.device != input.device:
        raise RuntimeError(
            f"batch_norm: expected all tensors on the same device, input is on {input.device} "
            f"but {name} is on {t.device} (move the module with .to(device))"
        )


def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Normalise each channel of ``input`` (N, C, ...) as ``torch.nn.functional.batch_norm``.

    ``training=True``: batch statistics; ``running_mean``/``running_var`` (if given)
    are updated in place with ``momentum``. ``training=False``: the running
    statistics are used (they must be given).
    """
    if not isinstance(input, Tensor):
        raise TypeError(f"batch_norm: input must be a Tensor, got {type(input).__name__}")
    if input.ndim < 2:
        raise ValueError(f"batch_norm: input must have shape (N, C, ...), got {input.shape}")
    channels = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):  # fmt: skip
        _check_channel_tensor(name, t, input)
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != input.dtype:
            raise TypeError(
                f"batch_norm: {name} must have the dtype of input ({input.dtype}), got {t.dtype} "
                "(convert the module with .to(dtype) or .double())"
            )
    axes = (0, *range(2, input.ndim))
    count = input.size // channels if channels else 0  # M: values per channel
    bshape = (1, channels) + (1,) * (input.ndim - 2)  # broadcasts a (C,) vector over x

    if training:
        if count <= 1:
            raise ValueError(
                f"batch_norm: expected more than 1 value per channel when training, got input of shape "
                f"{input.shape}"
            )
        fn = BatchNormFunction(axes, eps, weight is not None, bias is not None)
        y = fn(input, *(t for t in (weight, bias) if t is not None))
        if running_mean is not None:
            running_mean.data *= 1 - momentum
            running_mean.data += (momentum * fn.batch_mean.reshape(channels)).astype(running_mean.dtype)
        if running_var is not None:
            unbiased = fn.batch_var.reshape(channels) * (count / (count - 1))
            running_var.data *= 1 - momentum
            running_var.data += (momentum * unbiased).astype(running_var.dtype)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: running_mean and running_var are required when training=False")
        xp = backend.get_array_module(input.data)
        inv_std = Tensor(1 / xp.sqrt(running_var.data.astype(input.dtype) + eps))  # (C,)
        # y = (x - running_mean) * inv_std * w + b = x * scale + shift: two full-size ops.
        scale = inv_std if weight is None else weight * inv_std
        shift = -Tensor(running_mean.data.astype(input.dtype)) * scale
        if bias is not None:
            shift = shift + bias
        y = input * reshape(scale, bshape) + reshape(shift, bshape)
    return y
