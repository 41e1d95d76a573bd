"""Layers with weights or state: Modules that hold them and call a functional op in ``forward``.

(The layers without parameters, activations, reshapes and pools, are in :mod:`tinyae.nn.stateless`.)

Signatures, weight layouts, default initialisation and ``repr`` text are PyTorch's, so
that a model reads (and prints) the same in both. Notation as in :mod:`tinyae.nn.conv`:
N batch, C / C_out channels, H, W height and width, KH, KW kernel size.

Default initialisation (PyTorch's): for Linear, Conv2d and ConvTranspose2d
``kaiming_uniform_(weight, a=sqrt(5))``, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the
bias from the same U(-1/sqrt(fan_in), 1/sqrt(fan_in)), where fan_in = weight.shape[1] * KH * KW
(see :mod:`tinyae.nn.init`; for ConvTranspose2d's (C, C_out/groups, KH, KW) weight that is
C_out/groups * KH * KW). BatchNorm starts as the identity: weight 1, bias 0.

Every layer checks its input where the user calls it and names itself, the expected
size and the shape it got (e.g. ``Linear(in_features=3, ...)`` given a (2, 5) input).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tinyae import backend
from tinyae.kernels.geometry import int_arg, pair_arg
from tinyae.nn import functional as F
from tinyae.nn import init
from tinyae.nn.dropout import check_probability
from tinyae.nn.module import Module, Parameter
from tinyae.tensor import Tensor

__all__ = ["BatchNorm1d", "BatchNorm2d", "Conv2d", "ConvTranspose2d", "Dropout", "Linear"]


# ------------------------------------------------------------------ helpers
def _empty(shape: tuple[int, ...], dtype: Any) -> Tensor:
    """A zero tensor to be filled by an initialiser (float32 unless ``dtype`` says otherwise)."""
    return Tensor(np.zeros(shape, dtype=backend.DEFAULT_DTYPE if dtype is None else np.dtype(dtype)))


def _check_tensor(layer: Module, input: Any) -> None:
    if not isinstance(input, Tensor):
        raise TypeError(f"{layer!r}: input must be a Tensor, got {type(input).__name__}")


def _default_init(weight: Tensor, bias: Tensor | None) -> None:
    """PyTorch's default for Linear / Conv: weight and bias both ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = init.calculate_fan_in_and_fan_out(weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        init.uniform_(bias, -bound, bound)


def _weight_and_bias(
    layer: Module, weight_shape: tuple[int, ...], bias_size: int | None, device: Any, dtype: Any
) -> None:
    """Create ``layer.weight`` and ``layer.bias`` (a None placeholder when ``bias_size`` is None),
    initialise them as PyTorch does (``layer.reset_parameters()``) and move them to ``device``."""
    layer.weight = Parameter(_empty(weight_shape, dtype))
    if bias_size is not None:
        layer.bias = Parameter(_empty((bias_size,), dtype))
    else:
        layer.register_parameter("bias", None)
    layer.reset_parameters()
    if device is not None:
        layer.to(device)


# ------------------------------------------------------------------ linear
class Linear(Module):
    """y = x W^T + b: x (*, in_features) -> (*, out_features); W (out_features, in_features)."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, device: Any = None, dtype: Any = None
    ) -> None:
        super().__init__()
        self.in_features = int_arg("Linear", "in_features", in_features, 1)
        self.out_features = int_arg("Linear", "out_features", out_features, 1)
        out = self.out_features
        _weight_and_bias(self, (out, self.in_features), out if bias else None, device, dtype)

    def reset_parameters(self) -> None:
        _default_init(self.weight, self.bias)

    def forward(self, input: Tensor) -> Tensor:
        _check_tensor(self, input)
        if input.ndim == 0 or input.shape[-1] != self.in_features:
            raise ValueError(
                f"{self!r}: expected input of shape (*, in_features={self.in_features}), "
                f"got shape {input.shape}"
            )
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        )


# ------------------------------------------------------------- convolutions
class _ConvNd(Module):
    """What Conv2d and ConvTranspose2d share: arguments, weight, initialisation, repr."""

    transposed = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int],
        padding: int | Sequence[int] | str,
        dilation: int | Sequence[int],
        groups: int,
        bias: bool,
        padding_mode: str,
        output_padding: int | Sequence[int],
        device: Any,
        dtype: Any,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.in_channels = int_arg(name, "in_channels", in_channels, 1)
        self.out_channels = int_arg(name, "out_channels", out_channels, 1)
        self.groups = int_arg(name, "groups", groups, 1)
        for what, c in (("in_channels", self.in_channels), ("out_channels", self.out_channels)):
            if c % self.groups:
                raise ValueError(f"{name}: {what}={c} must be divisible by groups={self.groups}")
        self.kernel_size = pair_arg(name, "kernel_size", kernel_size, 1)
        self.stride = pair_arg(name, "stride", stride, 1)
        self.dilation = pair_arg(name, "dilation", dilation, 1)
        self.output_padding = pair_arg(name, "output_padding", output_padding, 0)
        if isinstance(padding, str):
            if self.transposed or padding not in ("same", "valid"):
                allowed = "an int or a pair" if self.transposed else "an int, a pair, 'same' or 'valid'"
                raise ValueError(f"{name}: padding must be {allowed}, got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(f"{name}: padding='same' is not supported for strided convolutions")
            self.padding: tuple[int, int] | str = padding
        else:
            self.padding = pair_arg(name, "padding", padding, 0)
        if padding_mode != "zeros":
            raise ValueError(f"{name}: only padding_mode='zeros' is supported, got {padding_mode!r}")
        self.padding_mode = padding_mode
        kh, kw = self.kernel_size
        if self.transposed:  # (C_in, C_out/groups, KH, KW)
            shape = (self.in_channels, self.out_channels // self.groups, kh, kw)
        else:  # (C_out, C_in/groups, KH, KW)
            shape = (self.out_channels, self.in_channels // self.groups, kh, kw)
        _weight_and_bias(self, shape, self.out_channels if bias else None, device, dtype)

    def reset_parameters(self) -> None:
        _default_init(self.weight, self.bias)

    def _check_input(self, input: Any) -> None:
        _check_tensor(self, input)
        if input.ndim not in (3, 4):
            raise ValueError(
                f"{self!r}: expected a 4-D (N, C, H, W) or 3-D (C, H, W) input, got shape {input.shape}"
            )
        channels = input.shape[-3]
        if channels != self.in_channels:
            raise ValueError(
                f"{self!r}: expected input with in_channels={self.in_channels} channels "
                f"(dim {input.ndim - 3}), got shape {input.shape}"
            )

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.output_padding != (0, 0):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Conv2d(_ConvNd):
    """2-D convolution: (N, C_in, H, W) -> (N, C_out, OH, OW); weight (C_out, C_in/groups, KH, KW)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] | str = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, 0, device, dtype)  # fmt: skip

    def forward(self, input: Tensor) -> Tensor:
        self._check_input(input)
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class ConvTranspose2d(_ConvNd):
    """Transposed convolution (the adjoint of Conv2d): (N, C_in, H, W) -> (N, C_out, H_out, W_out).

    Weight (C_in, C_out/groups, KH, KW). ``H_out = (H-1)*SH - 2*PH + DH*(KH-1) + output_padding + 1``;
    ``forward(x, output_size=(H_out, W_out))`` picks the size instead of ``output_padding``.
    """

    transposed = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        output_padding: int | Sequence[int] = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: int | Sequence[int] = 1,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, output_padding, device, dtype)  # fmt: skip

    def forward(self, input: Tensor, output_size: Sequence[int] | None = None) -> Tensor:
        self._check_input(input)
        w, b = self.weight, self.bias
        return F.conv_transpose2d(input, w, b, self.stride, self.padding, self.output_padding, self.groups,
                                  self.dilation, output_size=output_size)  # fmt: skip


# ------------------------------------------------------------- batch norm
class _BatchNorm(Module):
    """Shared by BatchNorm1d and BatchNorm2d: parameters, running statistics, forward."""

    _dims: tuple[int, ...] = ()
    _dims_text = ""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.num_features = int_arg(name, "num_features", num_features, 1)
        if momentum is not None and not 0 <= momentum <= 1:
            raise ValueError(f"{name}: momentum must be in [0, 1] or None, got {momentum!r}")
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        c = self.num_features
        if affine:
            self.weight = Parameter(_empty((c,), dtype))
            if bias:
                self.bias = Parameter(_empty((c,), dtype))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", _empty((c,), dtype))
            self.register_buffer("running_var", _empty((c,), dtype))
            self.register_buffer("num_batches_tracked", Tensor(np.array(0, dtype=np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()
        if device is not None:
            self.to(device)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            init.zeros_(self.running_mean)
            init.ones_(self.running_var)
            self.num_batches_tracked.data[...] = 0

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def _check_input(self, input: Any) -> None:
        _check_tensor(self, input)
        name = type(self).__name__
        if input.ndim not in self._dims:
            raise ValueError(f"{name}: expected {self._dims_text} input, got shape {input.shape}")
        if input.shape[1] != self.num_features:
            raise ValueError(
                f"{name}: expected input with num_features={self.num_features} channels (dim 1), "
                f"got shape {input.shape}"
            )
        if self.training and input.size // self.num_features <= 1:
            raise ValueError(
                f"{name}: expected more than 1 value per channel when training, "
                f"got input of shape {input.shape}"
            )

    def forward(self, input: Tensor) -> Tensor:
        self._check_input(input)
        # momentum=None means a cumulative average: the k-th batch gets weight 1/k.
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked.data)
        # Batch statistics in training, and in eval when there are no running statistics.
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats  # pass buffers only to use or update them
        return F.batch_norm(
            input,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
            use_batch_stats,
            factor,
            self.eps,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) inputs, statistics per channel over N (and L)."""

    _dims = (2, 3)
    _dims_text = "a 2-D (N, C) or 3-D (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) inputs, statistics per channel over N, H and W."""

    _dims = (4,)
    _dims_text = "a 4-D (N, C, H, W)"


# ---------------------------------------------------------------- dropout
class Dropout(Module):
    """Inverted dropout with probability ``p`` in training; the identity in eval mode."""

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        self.p = check_probability("Dropout", p)
        self.inplace = inplace  # accepted for PyTorch compatibility; the output is always new

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout(input, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"
