"""im2col / col2im, a direct conv2d, batch norm's passes and Adam's update: one API, one
implementation per backend.

Every convolution kernel takes one :class:`Geometry` (kernel, stride, padding, dilation, groups),
the same object from the conv layers down to the C++ extension.
``im2col(x, geometry)`` turns the sliding windows of an image ``x`` (N, C, H, W) into a column
buffer ``col`` (C, KH, KW, N, OH, OW), so that a convolution is one matrix product;
``col2im(col, (H, W), geometry)`` is its adjoint (it sums overlapping windows back into an
(N, C, H, W) image). The notation is defined in :mod:`tinyae.kernels.numpy_kernels`, the readable
spec. ``conv2d_direct(x, weight, bias, geometry)`` is a whole convolution forward,
``conv_transpose2d_direct(x, weight, bias, output_size, geometry)`` a transposed one and
``conv2d_weight_grad_direct(x, gy, geometry)`` a convolution's weight gradient;
in C++ (float32, CPUs with AVX-512F) they never build the column buffer, elsewhere the twin runs
them as im2col plus a product, or a product plus col2im (``*_runs_cpp`` says which).
``batch_norm_forward`` / ``batch_norm_backward`` are batch norm's passes over an (N, C, L) view
(the formulas are in that module too); in C++ each direction is one fused loop per channel.
``adam_step`` is Adam's update of one parameter, in place; in C++ one pass over its elements.

Which implementation runs is decided by the array:

* CuPy array -> CUDA kernels (:mod:`tinyae.kernels.cuda`; batch norm and Adam: the twin, on CuPy);
* NumPy array -> the C++ extension ``tinyae._C`` (:mod:`tinyae.kernels.cpp`), unless it
  is missing or the environment variable ``TINYAE_KERNELS=numpy`` was set at import
  (or :func:`set_kernels` says so) -> the NumPy twin (:mod:`tinyae.kernels.numpy_kernels`).

All of them accept float32 and float64 only. The functions here check their arguments, once;
the implementations behind them trust them (the C++ extension re-checks only what keeps its
memory accesses in bounds, since it can be called directly).

Both functions take an optional ``out=`` buffer of exactly the result's shape and dtype,
C-contiguous, writeable, on the input's device and not overlapping it. The result is written
there (col2im *overwrites* ``out``; it never accumulates onto it) and ``out`` is returned.
Why: a caller that runs im2col chunk after chunk can reuse one column buffer, and a fresh
buffer costs a page fault per 4 KB page whenever the allocator hands back new memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .. import parallel
from ..backend import is_cupy_array
from ..ops import activation
from ..parallel import get_num_threads, set_num_threads
from . import cpp, numpy_kernels
from ._checks import (
    check_adam,
    check_batch_norm,
    check_col2im,
    check_conv2d_direct,
    check_conv2d_weight_grad_direct,
    check_conv_transpose2d_direct,
    check_im2col,
    check_out,
)
from .geometry import Geometry, out_size

__all__ = [
    "Geometry",
    "im2col",
    "col2im",
    "conv2d_direct",
    "conv2d_direct_runs_cpp",
    "conv_transpose2d_direct",
    "conv_transpose2d_direct_runs_cpp",
    "conv2d_weight_grad_direct",
    "conv2d_weight_grad_direct_runs_cpp",
    "batch_norm_forward",
    "batch_norm_backward",
    "adam_step",
    "out_size",
    "backend_name",
    "set_kernels",
    "get_kernels",
    "cpp_available",
    "cpp_unavailable_reason",
    "num_threads",
    "set_num_threads",
]

_CHOICES = ("cpp", "numpy")


def _initial_choice() -> str:
    """CPU kernels chosen by ``TINYAE_KERNELS`` (default: C++ when built)."""
    env = os.environ.get("TINYAE_KERNELS", "").strip().lower()
    if env == "numpy":
        return "numpy"
    return "cpp"  # also for "", "cpp" or an unknown value; falls back to numpy when _C is missing


_cpu_choice = _initial_choice()


def set_kernels(name: str) -> None:
    """Select the CPU kernels: ``"cpp"`` (the default) or ``"numpy"`` (the twin).

    Asking for ``"cpp"`` when the extension is missing raises RuntimeError, so
    that a benchmark never silently measures the wrong code.
    """
    global _cpu_choice
    if name not in _CHOICES:
        raise ValueError(f"set_kernels: argument 'name' must be one of {_CHOICES}, got {name!r}")
    if name == "cpp" and not cpp.AVAILABLE:
        raise RuntimeError(f"set_kernels: cannot use the C++ kernels: {cpp.UNAVAILABLE_REASON}")
    _cpu_choice = name
    _route_hot_loops()


def _route_hot_loops() -> None:
    """While the C++ kernels are chosen, hand the lower layers' hot loops to them: float32 products
    of :func:`tinyae.parallel.matmul` (csrc/gemm.cpp, CPUs with AVX-512F) and the passes of ReLU
    and leaky ReLU (csrc/activation.cpp). NumPy does them otherwise."""
    chosen = get_kernels() == "cpp"
    parallel.use_gemm(cpp.matmul if chosen and cpp.GEMM else None)
    activation.use_fused(cpp if chosen else None)


def get_kernels() -> str:
    """The CPU kernels in use: ``"cpp"`` or ``"numpy"``."""
    return "cpp" if _cpu_choice == "cpp" and cpp.AVAILABLE else "numpy"


def backend_name(x: Any) -> str:
    """Which implementation a kernel call on array ``x`` would use: "cuda", "cpp" or "numpy"."""
    if is_cupy_array(x):
        return "cuda"
    return get_kernels()


def cpp_available() -> bool:
    """Whether the compiled C++ kernels (``tinyae._C``) can be imported."""
    return cpp.AVAILABLE


def cpp_unavailable_reason() -> str | None:
    """Why the C++ kernels cannot be used (None when they can)."""
    return cpp.UNAVAILABLE_REASON


def num_threads() -> int:
    """Threads a C++ kernel call uses, the calling thread included (0 when they are missing):
    :func:`tinyae.get_num_threads` (a call inside a :func:`tinyae.parallel.parallel_for` item
    runs on its thread alone)."""
    return get_num_threads() if cpp.AVAILABLE else 0


def _impl(x: Any) -> Any:
    name = backend_name(x)
    if name == "cuda":
        from . import cuda  # imported on first GPU use only

        return cuda
    return cpp if name == "cpp" else numpy_kernels


def im2col(x: Any, geometry: Geometry, out: Any = None) -> Any:
    """Unfold x (N, C, H, W) into col (C, KH, KW, N, OH, OW); zero padding.

    ``(OH, OW) = geometry.out_size(H, W)``. Raises TypeError for a dtype other than
    float32/float64 and ValueError for bad shapes. With ``out`` (C, KH, KW, N, OH, OW) the
    columns are written there and ``out`` is returned.
    """
    oh, ow = check_im2col(x, geometry)
    if out is not None:
        n, c = x.shape[:2]
        check_out("im2col", out, (c, *geometry.kernel, n, oh, ow), x, "x")
    return _impl(x).im2col(x, geometry, out=out)


def col2im(col: Any, output_size: tuple[int, int], geometry: Geometry, out: Any = None) -> Any:
    """Fold col (C, KH, KW, N, OH, OW) into x (N, C, H, W), (H, W) = ``output_size``, summing
    overlapping windows.

    The adjoint of :func:`im2col`: ``<im2col(x), c> == <x, col2im(c)>``. col's kernel and grid
    must be what the geometry gives for an image of that size, else ValueError. With ``out``
    (N, C, H, W) the image overwrites ``out`` (no accumulation) and ``out`` is returned.
    """
    hw = check_col2im(col, output_size, geometry)
    if out is not None:
        c, _, _, n = col.shape[:4]
        check_out("col2im", out, (n, c, *hw), col, "col")
    return _impl(col).col2im(col, hw, geometry, out=out)


def conv2d_direct_runs_cpp(x: Any, geometry: Geometry) -> bool:
    """Whether :func:`conv2d_direct` on ``x`` runs the C++ kernel: a float32 NumPy array, the C++
    kernels chosen, a CPU with AVX-512F, and one zero-padded sample (C, H + 2PH, W + 2PW) and 32
    output planes (OH, OW) within the kernel's per-thread scratch limit."""
    if backend_name(x) != "cpp" or not cpp.DIRECT_CONV or x.dtype != "float32" or x.ndim != 4:
        return False
    ph, pw = geometry.padding
    oh, ow = geometry.out_size(*x.shape[2:])
    padded = x.shape[1] * (x.shape[2] + 2 * ph) * (x.shape[3] + 2 * pw)
    return max(padded, 32 * oh * ow) <= cpp.DIRECT_MAX_SCRATCH


def conv2d_direct(x: Any, weight: Any, bias: Any, geometry: Geometry) -> Any:
    """y = conv2d(x, weight) + bias: x (N, C, H, W), weight (C_out, C/groups, KH, KW), bias (C_out,)
    or None -> y (N, C_out, OH, OW).

    The C++ kernel where :func:`conv2d_direct_runs_cpp` (no column buffer: every output is summed
    in registers), otherwise the twin (im2col and a product per group). Raises TypeError for a
    dtype other than float32/float64 or mixed dtypes, ValueError for bad shapes or parameters.
    """
    check_conv2d_direct(x, weight, bias, geometry)
    impl = cpp if conv2d_direct_runs_cpp(x, geometry) else numpy_kernels
    return impl.conv2d_direct(x, weight, bias, geometry)


def conv_transpose2d_direct_runs_cpp(x: Any, geometry: Geometry) -> bool:
    """Whether :func:`conv_transpose2d_direct` runs the C++ kernel: as :func:`conv2d_direct_runs_cpp`,
    with dilation 1, one sample of x padded by twice the kernel and 32 planes of at most
    H * SH + KH by W * SW + KW (the largest output size) within the scratch limit."""
    if backend_name(x) != "cpp" or not cpp.DIRECT_CONV or x.dtype != "float32" or x.ndim != 4:
        return False
    if geometry.dilation != (1, 1):
        return False
    (kh, kw), (sh, sw) = geometry.kernel, geometry.stride
    h, w = x.shape[2:]
    padded = x.shape[1] * (h + 2 * kh) * (w + 2 * kw)
    return max(padded, 32 * (h * sh + kh) * (w * sw + kw)) <= cpp.DIRECT_MAX_SCRATCH


def conv_transpose2d_direct(
    x: Any, weight: Any, bias: Any, output_size: tuple[int, int], geometry: Geometry
) -> Any:
    """y = conv_transpose2d(x, weight) + bias: x (N, C, H, W), weight (C, C_out/groups, KH, KW), bias
    (C_out,) or None -> y (N, C_out, *output_size); (H, W) must be the conv size of output_size.

    The C++ kernel where :func:`conv_transpose2d_direct_runs_cpp` (one stride-1 sum per output phase,
    straight into y), otherwise the twin (a product per group, then col2im). Errors as
    :func:`conv2d_direct`.
    """
    hw = check_conv_transpose2d_direct(x, weight, bias, output_size, geometry)
    impl = cpp if conv_transpose2d_direct_runs_cpp(x, geometry) else numpy_kernels
    return impl.conv_transpose2d_direct(x, weight, bias, hw, geometry)


def conv2d_weight_grad_direct_runs_cpp(x: Any, gy: Any, geometry: Geometry) -> bool:
    """Whether :func:`conv2d_weight_grad_direct` runs the C++ kernel: float32 NumPy x and gy, and as
    :func:`conv2d_direct_runs_cpp` for x."""
    return conv2d_direct_runs_cpp(x, geometry) and gy.dtype == "float32" and backend_name(gy) == "cpp"


def conv2d_weight_grad_direct(x: Any, gy: Any, geometry: Geometry) -> Any:
    """The weight gradient gW (C_out, C/groups, KH, KW) of y = conv2d(x, W) for the upstream gradient
    gy (N, C_out, OH, OW).

    The C++ kernel where :func:`conv2d_weight_grad_direct_runs_cpp` (each tile of gW summed in
    registers over the whole batch, no column buffer), otherwise the twin (im2col, then gy @ col^T).
    Errors as :func:`conv2d_direct`.
    """
    check_conv2d_weight_grad_direct(x, gy, geometry)
    impl = cpp if conv2d_weight_grad_direct_runs_cpp(x, gy, geometry) else numpy_kernels
    return impl.conv2d_weight_grad_direct(x, gy, geometry)


def _bn_impl(x: Any) -> Any:
    return cpp if backend_name(x) == "cpp" else numpy_kernels  # CuPy: the twin's array code


def batch_norm_forward(x: Any, weight: Any, bias: Any, eps: float) -> tuple[Any, Any, Any, Any]:
    """Batch norm of x (N, C, L) with batch statistics: (y, mean, var, inv_std), vectors (C,).

    ``weight`` / ``bias`` (C,) may be None; ``var`` is biased (divides by M = N*L).
    """
    check_batch_norm("batch_norm_forward", x, weight=weight, bias=bias)
    return _bn_impl(x).batch_norm_forward(x, weight, bias, eps)


def batch_norm_backward(
    x: Any, gy: Any, mean: Any, inv_std: Any, weight: Any, need_gx: bool = True
) -> tuple[Any, Any, Any]:
    """Gradients of :func:`batch_norm_forward` for gy (N, C, L): (gx or None, gw, gb)."""
    check_batch_norm("batch_norm_backward", x, gy, mean=mean, inv_std=inv_std, weight=weight)
    return _bn_impl(x).batch_norm_backward(x, gy, mean, inv_std, weight, need_gx)


def adam_step(
    param: Any,
    grad: Any,
    exp_avg: Any,
    exp_avg_sq: Any,
    max_exp_avg_sq: Any = None,
    *,
    beta1: float,
    beta2: float,
    step_size: float,
    bias2_sqrt: float,
    eps: float,
    weight_decay: float = 0.0,
    maximize: bool = False,
    work: tuple[Any, Any] | Callable[[], tuple[Any, Any]] | None = None,
) -> None:
    """Adam's update of ``param`` in place, with its state ``exp_avg`` (m), ``exp_avg_sq`` (v) and,
    for amsgrad, ``max_exp_avg_sq`` (formulas in :mod:`tinyae.kernels.numpy_kernels`).

    ``step_size = lr / (1 - beta1^k)`` and ``bias2_sqrt = sqrt(1 - beta2^k)`` at step k. All
    arrays share one shape and float dtype; the updated ones must be writeable and share no
    memory. The C++ kernel needs the updated arrays C-contiguous; other layouts run the twin.
    ``work``: two arrays of param's shape and dtype the twin may use for its temporaries, or a
    function returning them, called only when the twin runs (the one-pass C++ kernel needs none).
    """
    states = {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq, "max_exp_avg_sq": max_exp_avg_sq}
    check_adam(param, grad, states)
    written = [a for a in (param, exp_avg, exp_avg_sq, max_exp_avg_sq) if a is not None]
    use_cpp = backend_name(param) == "cpp" and all(a.flags.c_contiguous for a in written)
    args = (param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, beta1, beta2, step_size, bias2_sqrt, eps)
    if use_cpp:
        cpp.adam_step(*args, weight_decay, maximize)
    else:
        numpy_kernels.adam_step(*args, weight_decay, maximize, work() if callable(work) else work)


_route_hot_loops()  # the default choice, from TINYAE_KERNELS
