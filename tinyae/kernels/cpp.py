"""The C++ kernels from the compiled extension ``tinyae._C``, when it is there.

``pip install .`` (or the editable developer install) compiles ``csrc/`` into
``tinyae/_C``. Without a compiler the package still works: :data:`AVAILABLE` is
False, :data:`UNAVAILABLE_REASON` says why, and the NumPy twin is used instead.

The C++ functions validate their arguments themselves and release the GIL while
they run. A non-contiguous input is copied once into a contiguous buffer; an
already C-contiguous input is used as it is (no copy). Their loops run on a small
thread pool of their own (``csrc/parallel.cpp`` explains why not OpenMP), on
:func:`tinyae.get_num_threads` threads (one inside :func:`tinyae.parallel.parallel_for`).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from ..parallel import get_num_threads, in_parallel_region
from .geometry import Geometry


def _import_extension() -> tuple[ModuleType | None, str | None]:
    """Import ``tinyae._C``; return (module, None) or (None, why not)."""
    try:
        from .. import _C as module  # type: ignore[attr-defined]
    except ImportError as exc:  # not built, or built for another Python
        return None, f"the C++ extension tinyae._C is not importable ({exc})"
    return module, None


_C, UNAVAILABLE_REASON = _import_extension()

AVAILABLE = _C is not None

# Whether the direct conv2d kernel runs here: it needs AVX-512F (checked at run time).
DIRECT_CONV = AVAILABLE and _C.conv2d_direct_supported()
DIRECT_MAX_SCRATCH = _C.DIRECT_MAX_SCRATCH if AVAILABLE else 0
# Whether the float32 matrix product (csrc/gemm.cpp) runs here: AVX-512F too.
GEMM = AVAILABLE and _C.gemm_supported()


def _threads() -> int:
    """Threads for one kernel call: T (:mod:`tinyae.parallel`), or 1 inside a parallel loop,
    whose threads already share the cores."""
    return 1 if in_parallel_region() else get_num_threads()


def _require() -> ModuleType:
    if _C is None:
        raise RuntimeError(f"C++ kernels requested but {UNAVAILABLE_REASON}")
    return _C


def im2col(x: np.ndarray, geometry: Geometry, out: np.ndarray | None = None) -> np.ndarray:
    """C++ im2col: x (N, C, H, W) -> col (C, KH, KW, N, OH, OW), written into ``out`` when given."""
    return _require().im2col(x, geometry, out=out, threads=_threads())


def col2im(
    col: np.ndarray, output_size: tuple[int, int], geometry: Geometry, out: np.ndarray | None = None
) -> np.ndarray:
    """C++ col2im: col (C, KH, KW, N, OH, OW) -> x (N, C, *output_size), overwriting ``out`` when given."""
    return _require().col2im(col, output_size, geometry, out=out, threads=_threads())


def conv2d_direct(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, geometry: Geometry
) -> np.ndarray:
    """C++ direct conv2d forward (float32, AVX-512): x (N, C, H, W) -> y (N, C_out, OH, OW)."""
    return _require().conv2d_direct(x, weight, bias, geometry, threads=_threads())


def conv_transpose2d_direct(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    output_size: tuple[int, int],
    geometry: Geometry,
) -> np.ndarray:
    """C++ direct conv_transpose2d forward (float32, AVX-512, dilation 1) -> y (N, C_out, *output_size)."""
    return _require().conv_transpose2d_direct(x, weight, bias, output_size, geometry, threads=_threads())


def matmul(a: np.ndarray, b: np.ndarray, threads: int) -> np.ndarray:
    """C++ float32 product a (M, K) @ b (K, N) on ``threads`` threads; transposed views read in place."""
    return _require().matmul(a, b, threads=threads)


def leaky_relu(x: np.ndarray, slope: float) -> np.ndarray:
    """C++ leaky ReLU (ReLU: slope 0), one pass: y = x where x > 0, slope * x elsewhere."""
    return _require().leaky_relu(x, slope, threads=_threads())


def leaky_relu_backward(a: np.ndarray, gy: np.ndarray, slope: float) -> np.ndarray:
    """C++ leaky ReLU gradient, one pass: gy where a > 0, slope * gy elsewhere."""
    return _require().leaky_relu_backward(a, gy, slope, threads=_threads())


def conv2d_weight_grad_direct(x: np.ndarray, gy: np.ndarray, geometry: Geometry) -> np.ndarray:
    """C++ direct conv2d weight gradient (float32, AVX-512) -> gW (C_out, C/G, KH, KW)."""
    return _require().conv2d_weight_grad_direct(x, gy, geometry, threads=_threads())


def batch_norm_forward(
    x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """C++ batch norm of x (N, C, L): (y, mean, var, inv_std)."""
    return _require().batch_norm_forward(x, weight, bias, float(eps), threads=_threads())


def batch_norm_backward(
    x: np.ndarray,
    gy: np.ndarray,
    mean: np.ndarray,
    inv_std: np.ndarray,
    weight: np.ndarray | None,
    need_gx: bool = True,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """C++ batch norm gradients: (gx or None, gw, gb)."""
    return _require().batch_norm_backward(x, gy, mean, inv_std, weight, bool(need_gx), threads=_threads())


def adam_step(
    param: np.ndarray,
    grad: np.ndarray,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    max_exp_avg_sq: np.ndarray | None,
    beta1: float,
    beta2: float,
    step_size: float,
    bias2_sqrt: float,
    eps: float,
    weight_decay: float = 0.0,
    maximize: bool = False,
) -> None:
    """C++ Adam update in place, one pass; param and the states must be C-contiguous."""
    _require().adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, float(beta1), float(beta2),
                         float(step_size), float(bias2_sqrt), float(eps), float(weight_decay), bool(maximize),
                         threads=_threads())  # fmt: skip
