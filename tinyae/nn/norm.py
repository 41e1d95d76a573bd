"""Batch normalisation: ``batch_norm`` (functional) and its training-mode Function.

Notation: the input x has shape (N, C) or (N, C, L) or (N, C, H, W); statistics are
per channel c, over the axes A = every axis but the channel axis 1, holding
M = N (* L or * H * W) values each.

Training mode (batch statistics)::

    mu = mean_A(x)            var = mean_A((x - mu)^2)          (biased: divides by M)
    x_hat = (x - mu) / sqrt(var + eps)
    y = weight * x_hat + bias                                   (per channel)

and the running statistics are updated with the UNBIASED variance, as PyTorch::

    running_mean <- (1 - momentum) * running_mean + momentum * mu
    running_var  <- (1 - momentum) * running_var  + momentum * var * M / (M - 1)

Evaluation mode uses the running statistics in place of mu and var (constants).

Backward of x_hat (closed form; g = dL/dx_hat, inv_std = 1 / sqrt(var + eps))::

    dL/dx = inv_std * (g - mean_A(g) - x_hat * mean_A(g * x_hat))

The affine part (weight, bias) is ordinary broadcasting ops, so only the
normalisation needs its own Function.
"""

from __future__ import annotations

from typing import Any

from tinyae import backend
from tinyae.ops.arithmetic import sqrt
from tinyae.ops.reduce import mean, var
from tinyae.ops.shape import reshape
from tinyae.tensor import Function, Tensor, is_grad_enabled

__all__ = ["BatchNormFunction", "batch_norm"]


class BatchNormFunction(Function):
    """x -> x_hat = (x - mean_A(x)) / sqrt(var_A(x) + eps) with batch statistics.

    After the call, ``batch_mean`` and ``batch_var`` (biased, keepdims shape
    (1, C, 1, ...)) hold the statistics, for the running-average update.
    """

    needs_outputs = True

    def __init__(self, axes: tuple[int, ...], eps: float) -> None:
        self.axes = axes
        self.eps = eps

    def forward(self, x):
        xp = backend.get_array_module(x)
        mu = x.mean(axis=self.axes, keepdims=True)  # (1, C, 1, 1)
        centered = x - mu
        variance = (centered * centered).mean(axis=self.axes, keepdims=True)  # (1, C, 1, 1), biased
        self.inv_std = 1 / xp.sqrt(variance + x.dtype.type(self.eps))
        self.batch_mean, self.batch_var = mu, variance
        return centered * self.inv_std

    def backward(self, gy):
        x_hat = self.output()
        if is_grad_enabled():
            # create_graph=True: inv_std must stay a function of x so that the second
            # derivative sees how the batch variance moves with x.
            inv_std = 1 / sqrt(var(self.inputs[0], self.axes, keepdims=True, correction=0) + self.eps)
        else:
            inv_std = Tensor(self.inv_std)
        g_mean = mean(gy, self.axes, keepdims=True)
        g_xhat_mean = mean(gy * x_hat, self.axes, keepdims=True)
        return inv_std * (gy - g_mean - x_hat * g_xhat_mean)


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
    axes = (0, *range(2, input.ndim))
    count = input.size // channels if channels else 0  # M: values per channel
    bshape = (1, channels) + (1,) * (input.ndim - 2)  # broadcasts a (C,) vector over x

    if training:
        if count <= 1:
            raise ValueError(
                f"batch_norm: expected more than 1 value per channel when training, got input of shape "
                f"{input.shape}"
            )
        fn = BatchNormFunction(axes, eps)
        y = fn(input)
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
        inv_std = 1 / xp.sqrt(running_var.data.astype(input.dtype) + eps)
        shift = Tensor(running_mean.data.astype(input.dtype).reshape(bshape))
        y = (input - shift) * Tensor(inv_std.reshape(bshape))

    if weight is not None:
        y = y * reshape(weight, bshape)
    if bias is not None:
        y = y + reshape(bias, bshape)
    return y
