"""Pooling and nearest-neighbour upsampling: ``max_pool2d``, ``avg_pool2d``, ``interpolate``.

Notation (as in :mod:`tinyae.kernels`): input (N, C, H, W); window KH x KW; stride
SH, SW; padding PH, PW on each side; dilation DH, DW; padded size HP = H + 2*PH,
WP = W + 2*PW; output (N, C, OH, OW) with ``OH = (HP - DH*(KH-1) - 1) // SH + 1``.

Both pools read their windows with the kernels' ``im2col``:
``col[c, i, j, n, oh, ow] = x_padded[n, c, oh*SH + i*DH, ow*SW + j*DW]``.

* max pool:  y = max over the window (padding counts as -inf). Backward sends each
  output's gradient to the one input that won (the first maximum in scan order, as
  PyTorch); windows that overlap may pick the same winner, so gradients add up.
  The scatter's own backward is the matching gather, so double backward works.
* avg pool:  y = sum over the window / divisor, divisor = KH*KW (``count_include_pad=True``,
  PyTorch's default) or the number of real pixels in the window. It is linear: its
  backward is its adjoint (``col2im`` of the spread gradient), whose backward is the pool.
* nearest interpolation: output pixel (oh, ow) copies input pixel
  (floor(oh * H_in/H_out), floor(ow * W_in/W_out)), a pure gather written with
  existing differentiable ops (reshape/broadcast for integer factors, indexing otherwise).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tinyae import backend
from tinyae.autograd import Function
from tinyae.kernels import Geometry, col2im, im2col
from tinyae.kernels.geometry import pair_arg
from tinyae.ops.shape import broadcast_to, reshape
from tinyae.tensor import Tensor

__all__ = ["avg_pool2d", "interpolate", "max_pool2d", "upsample"]


# ------------------------------------------------------------ arguments
def _check_input(op: str, x: Any) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D input (N, C, H, W), got shape {x.shape}")
    if x.dtype.kind != "f":
        raise TypeError(f"{op}: input must be floating point, got dtype {x.dtype}")


class _PoolConfig:
    """Kernel, stride, padding, dilation and the output size of one pooling call."""

    def __init__(
        self, op: str, x: Tensor, kernel_size: Any, stride: Any, padding: Any, dilation: Any
    ) -> None:
        self.kh, self.kw = pair_arg(op, "kernel_size", kernel_size, 1)
        stride = kernel_size if stride is None or stride == () else stride  # PyTorch's default
        self.sh, self.sw = pair_arg(op, "stride", stride, 1)
        self.ph, self.pw = pair_arg(op, "padding", padding, 0)
        self.dh, self.dw = pair_arg(op, "dilation", dilation, 1)
        # As PyTorch: a window may not lie entirely in the padding.
        for p, k, d in ((self.ph, self.kh, self.dh), (self.pw, self.kw, self.dw)):
            if p > (d * (k - 1) + 1) // 2:
                raise ValueError(
                    f"{op}: padding {padding!r} must be at most half of the effective kernel size "
                    f"(kernel_size={kernel_size!r}, dilation={dilation!r})"
                )
        n, c, self.h, self.w = x.shape
        self.oh = (self.h + 2 * self.ph - self.dh * (self.kh - 1) - 1) // self.sh + 1
        self.ow = (self.w + 2 * self.pw - self.dw * (self.kw - 1) - 1) // self.sw + 1
        if self.oh < 1 or self.ow < 1:
            raise ValueError(
                f"{op}: input of shape {x.shape} is too small for kernel_size={kernel_size!r}, "
                f"padding={padding!r}, dilation={dilation!r} (output would be {self.oh} x {self.ow})"
            )

    def geometry(self, padding: bool = True) -> Geometry:
        """The window's geometry for im2col / col2im (without the padding: max pooling pads with -inf
        itself)."""
        ph, pw = (self.ph, self.pw) if padding else (0, 0)
        return Geometry((self.kh, self.kw), (self.sh, self.sw), (ph, pw), (self.dh, self.dw))


# ------------------------------------------------------------- max pool
class MaxPool2dFunction(Function):
    """y[n, c, oh, ow] = max of the window; remembers where each winner is."""

    def __init__(self, cfg: _PoolConfig) -> None:
        self.cfg = cfg

    def forward(self, x):
        xp = backend.get_array_module(x)
        cfg = self.cfg
        n, c, h, w = x.shape
        hp, wp = h + 2 * cfg.ph, w + 2 * cfg.pw
        planes = x.reshape(n * c, 1, h, w)  # every channel of every image is its own 1-channel image
        padded = xp.pad(planes, ((0, 0), (0, 0), (cfg.ph, cfg.ph), (cfg.pw, cfg.pw)), constant_values=-xp.inf)
        col = im2col(padded, cfg.geometry(padding=False))  # (1, KH, KW, N*C, OH, OW)
        col = col.reshape(cfg.kh * cfg.kw, n * c, cfg.oh, cfg.ow)  # (KH*KW, N*C, OH, OW)
        tap = col.argmax(axis=0)  # (N*C, OH, OW): first maximum wins (and NaN propagates)
        y = xp.take_along_axis(col, tap[None], axis=0)[0]  # (N*C, OH, OW)
        # Where each winner sits, as a flat index into the padded planes (N*C, HP, WP).
        i, j = tap // cfg.kw, tap % cfg.kw
        rows = xp.arange(cfg.oh).reshape(1, -1, 1) * cfg.sh + i * cfg.dh  # (N*C, OH, OW)
        cols = xp.arange(cfg.ow).reshape(1, 1, -1) * cfg.sw + j * cfg.dw
        plane = xp.arange(n * c).reshape(-1, 1, 1)
        self.winners = (plane * hp + rows) * wp + cols  # (N*C, OH, OW)
        return y.reshape(n, c, cfg.oh, cfg.ow)

    def backward(self, gy):
        return _ScatterToWinners(self.winners, self.cfg, self.inputs[0].shape)(gy)


class _ScatterToWinners(Function):
    """gy (N, C, OH, OW) -> gx (N, C, H, W): add each gy to its window's winner."""

    def __init__(self, winners: Any, cfg: _PoolConfig, x_shape: tuple[int, ...]) -> None:
        self.winners, self.cfg, self.x_shape = winners, cfg, x_shape

    def forward(self, gy):
        xp = backend.get_array_module(gy)
        n, c, h, w = self.x_shape
        ph, pw = self.cfg.ph, self.cfg.pw
        padded_size = n * c * (h + 2 * ph) * (w + 2 * pw)
        if xp is np:
            # bincount sums the weights that land on the same index: overlapping windows add up.
            flat = np.bincount(self.winners.ravel(), weights=gy.ravel(), minlength=padded_size)
        else:
            # CuPy's bincount reads max(index) back to the host (a copy and a wait); a scatter-add does not.
            flat = xp.zeros(padded_size, dtype=gy.dtype)
            backend.scatter_add(flat, self.winners.ravel(), gy.ravel())
        gx = flat.astype(gy.dtype, copy=False).reshape(n, c, h + 2 * ph, w + 2 * pw)  # (N, C, HP, WP)
        return xp.ascontiguousarray(gx[:, :, ph : ph + h, pw : pw + w])  # (N, C, H, W)

    def backward(self, ggx):
        return _GatherWinners(self.winners, self.cfg)(ggx)


class _GatherWinners(Function):
    """g (N, C, H, W) -> (N, C, OH, OW): read g at each window's winner (adjoint of the scatter)."""

    def __init__(self, winners: Any, cfg: _PoolConfig) -> None:
        self.winners, self.cfg = winners, cfg

    def forward(self, g):
        xp = backend.get_array_module(g)
        n, c = g.shape[:2]
        ph, pw = self.cfg.ph, self.cfg.pw
        padded = xp.pad(g, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # (N, C, HP, WP)
        return padded.ravel()[self.winners].reshape(n, c, self.cfg.oh, self.cfg.ow)

    def backward(self, gy):
        return _ScatterToWinners(self.winners, self.cfg, self.inputs[0].shape)(gy)


def max_pool2d(
    input: Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Tensor:
    """Max over KH x KW windows (``torch.nn.functional.max_pool2d``); stride defaults to kernel_size."""
    _check_input("max_pool2d", input)
    if ceil_mode or return_indices:
        raise ValueError("max_pool2d: ceil_mode=True and return_indices=True are not supported")
    cfg = _PoolConfig("max_pool2d", input, kernel_size, stride, padding, dilation)
    return MaxPool2dFunction(cfg)(input)


# ------------------------------------------------------------- avg pool
class AvgPool2dFunction(Function):
    """y = (sum of the window) / divisor; linear, so backward is the adjoint below."""

    def __init__(self, cfg: _PoolConfig, divisor: Any) -> None:
        self.cfg, self.divisor = cfg, divisor

    def forward(self, x):
        col = im2col(x, self.cfg.geometry())  # (C, KH, KW, N, OH, OW)
        y = col.sum(axis=(1, 2)) / self.divisor  # (C, N, OH, OW)
        return y.transpose(1, 0, 2, 3).astype(x.dtype, copy=False)  # (N, C, OH, OW)

    def backward(self, gy):
        return _AvgPool2dAdjoint(self.cfg, self.divisor)(gy)


class _AvgPool2dAdjoint(Function):
    """gy (N, C, OH, OW) -> gx (N, C, H, W): spread gy / divisor over each window."""

    def __init__(self, cfg: _PoolConfig, divisor: Any) -> None:
        self.cfg, self.divisor = cfg, divisor

    def forward(self, gy):
        xp = backend.get_array_module(gy)
        cfg = self.cfg
        n, c = gy.shape[:2]
        share = (gy / self.divisor).astype(gy.dtype, copy=False).transpose(1, 0, 2, 3)  # (C, N, OH, OW)
        col = xp.ascontiguousarray(
            xp.broadcast_to(share[:, None, None], (c, cfg.kh, cfg.kw, n, cfg.oh, cfg.ow))
        )  # (C, KH, KW, N, OH, OW)
        return col2im(col, (cfg.h, cfg.w), cfg.geometry())

    def backward(self, ggx):
        return AvgPool2dFunction(self.cfg, self.divisor)(ggx)


def _window_counts(size: int, out: int, k: int, s: int, p: int) -> np.ndarray:
    """How many of each window's k taps fall inside [0, size) (not in the padding)."""
    start = np.arange(out) * s - p
    return np.minimum(start + k, size) - np.maximum(start, 0)


def avg_pool2d(
    input: Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """Mean over KH x KW windows (``torch.nn.functional.avg_pool2d``); stride defaults to kernel_size."""
    _check_input("avg_pool2d", input)
    if ceil_mode:
        raise ValueError("avg_pool2d: ceil_mode=True is not supported")
    cfg = _PoolConfig("avg_pool2d", input, kernel_size, stride, padding, 1)
    if divisor_override is not None:
        if (
            isinstance(divisor_override, bool)
            or not isinstance(divisor_override, int)
            or divisor_override < 1
        ):
            raise ValueError(f"avg_pool2d: divisor_override must be a positive int, got {divisor_override!r}")
        divisor: Any = float(divisor_override)
    elif count_include_pad:
        divisor = float(cfg.kh * cfg.kw)
    else:
        rows = _window_counts(cfg.h, cfg.oh, cfg.kh, cfg.sh, cfg.ph)
        cols = _window_counts(cfg.w, cfg.ow, cfg.kw, cfg.sw, cfg.pw)
        counts = (rows[:, None] * cols[None, :]).astype(input.dtype)  # (OH, OW)
        divisor = backend.to_device(counts, input.device)
    return AvgPool2dFunction(cfg, divisor)(input)


# ------------------------------------------------------------ upsampling
def _nearest_index(size_in: int, size_out: int, scale: float | None) -> np.ndarray:
    """Source index of each output position, computed exactly as PyTorch's CPU kernel.

    Equal sizes copy, doubling maps o -> o // 2; otherwise floor(o * step) clipped to
    the input, with step = 1 / scale_factor when a scale factor was given, else
    size_in / size_out, in float32 arithmetic.
    """
    out = np.arange(size_out)
    if size_out == size_in:
        return out
    if size_out == 2 * size_in:
        return out // 2
    step = np.float32(1 / scale) if scale is not None else np.float32(size_in) / np.float32(size_out)
    src = np.floor(out.astype(np.float32) * step).astype(np.int64)
    return np.minimum(src, size_in - 1)


def interpolate(
    input: Tensor,
    size: int | Sequence[int] | None = None,
    scale_factor: float | Sequence[float] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
) -> Tensor:
    """Nearest-neighbour resize of an (N, C, H, W) input (``torch.nn.functional.interpolate``).

    Give exactly one of ``size`` (output (OH, OW)) and ``scale_factor``
    (OH = floor(H * scale_factor)). Only ``mode="nearest"`` is implemented.
    """
    op = "interpolate"
    _check_input(op, input)
    if mode != "nearest":
        raise ValueError(f"{op}: only mode='nearest' is supported, got mode={mode!r}")
    if align_corners is not None:
        raise ValueError(f"{op}: align_corners can only be used with linear modes, not mode='nearest'")
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{op}: give exactly one of size and scale_factor (got size={size!r}, "
                         f"scale_factor={scale_factor!r})")  # fmt: skip
    n, c, h, w = input.shape
    if size is not None:
        oh, ow = pair_arg(op, "size", size, 1)
        scales: tuple[float | None, float | None] = (None, None)
    else:
        factors = tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * 2
        if len(factors) != 2 or not all(isinstance(f, (int, float)) and f > 0 for f in factors):
            raise ValueError(
                f"{op}: scale_factor must be a positive number or a pair of them, got {scale_factor!r}"
            )
        oh, ow = math.floor(h * factors[0]), math.floor(w * factors[1])
        if oh < 1 or ow < 1:
            raise ValueError(
                f"{op}: scale_factor={scale_factor!r} gives an empty output for input {input.shape}"
            )
        # recompute_scale_factor=True means: index with in/out, as if size had been given.
        scales = (None, None) if recompute_scale_factor else (float(factors[0]), float(factors[1]))

    rows = _nearest_index(h, oh, scales[0])  # (OH,) source row of each output row
    cols = _nearest_index(w, ow, scales[1])  # (OW,)
    fh, fw = oh // h, ow // w
    if (
        (fh * h, fw * w) == (oh, ow)
        and (rows == np.arange(oh) // fh).all()
        and (cols == np.arange(ow) // fw).all()
    ):
        # Integer factors: every input pixel becomes an FH x FW block. Broadcasting makes the
        # copies (its backward sums each block back), reshape lays them out.
        blocks = broadcast_to(
            reshape(input, (n, c, h, 1, w, 1)), (n, c, h, fh, w, fw)
        )  # (N, C, H, FH, W, FW)
        return reshape(blocks, (n, c, oh, ow))
    xp = backend.get_array_module(input.data)
    rows, cols = xp.asarray(rows), xp.asarray(cols)
    return input[:, :, rows[:, None], cols[None, :]]  # (N, C, OH, OW); indexing's backward adds repeats


upsample = interpolate
