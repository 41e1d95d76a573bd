"""im2col and col2im on the GPU: CUDA C compiled at run time by CuPy.

The source below is compiled by NVRTC through ``cupy.RawModule`` the first time a
kernel is needed. CuPy is imported lazily, so importing tinyae never needs a GPU.

* ``im2col``: one thread per element of ``col`` (C, KH, KW, N, OH, OW); it reads
  its one input pixel (or writes 0 for padding).
* ``col2im``: a *gather*: one thread per output pixel (N, C, H, W) sums the column
  entries that were copied from it, in a fixed order. No atomics, so the result is
  bit-for-bit deterministic (a scatter with ``atomicAdd`` would not be).

Each kernel is written once as a template and exported under an explicit
``extern "C"`` name per dtype (``im2col_f32``, ``im2col_f64``, ...), which keeps
the names stable for ``RawModule.get_function`` and lets ``nvcc -c`` compile-check
the very same source in the tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import cupy_or_none
from .geometry import Geometry

CUDA_SOURCE = r"""
// Index type: 64-bit so that buffers beyond 2**31 elements work.
typedef long long idx_t;

template <typename T>
__device__ void im2col_impl(const T* __restrict__ x, T* __restrict__ col, idx_t total,
                            idx_t N, idx_t C, idx_t H, idx_t W, idx_t KH, idx_t KW,
                            idx_t SH, idx_t SW, idx_t PH, idx_t PW, idx_t DH, idx_t DW,
                            idx_t OH, idx_t OW) {
    // Grid-stride loop: thread t handles col elements t, t + stride, ...
    for (idx_t e = blockIdx.x * (idx_t)blockDim.x + threadIdx.x; e < total;
         e += (idx_t)blockDim.x * gridDim.x) {
        // Unravel e over (C, KH, KW, N, OH, OW); consecutive threads get consecutive ow (coalesced).
        idx_t r = e;
        const idx_t ow = r % OW; r /= OW;
        const idx_t oh = r % OH; r /= OH;
        const idx_t n = r % N;   r /= N;
        const idx_t j = r % KW;  r /= KW;
        const idx_t i = r % KH;  r /= KH;
        const idx_t c = r;
        const idx_t ih = oh * SH - PH + i * DH;
        const idx_t iw = ow * SW - PW + j * DW;
        T v = T(0);
        if (ih >= 0 && ih < H && iw >= 0 && iw < W) v = x[((n * C + c) * H + ih) * W + iw];
        col[e] = v;
    }
}

template <typename T>
__device__ void col2im_impl(const T* __restrict__ col, T* __restrict__ x, idx_t total,
                            idx_t N, idx_t C, idx_t H, idx_t W, idx_t KH, idx_t KW,
                            idx_t SH, idx_t SW, idx_t PH, idx_t PW, idx_t DH, idx_t DW,
                            idx_t OH, idx_t OW) {
    for (idx_t e = blockIdx.x * (idx_t)blockDim.x + threadIdx.x; e < total;
         e += (idx_t)blockDim.x * gridDim.x) {
        // Unravel e over the image (N, C, H, W).
        idx_t r = e;
        const idx_t w = r % W; r /= W;
        const idx_t h = r % H; r /= H;
        const idx_t c = r % C; r /= C;
        const idx_t n = r;
        const idx_t hp = h + PH, wp = w + PW;  // position in the padded image
        T sum = T(0);
        // Tap (i, j) of window (oh, ow) read padded pixel (oh*SH + i*DH, ow*SW + j*DW).
        for (idx_t i = 0; i < KH; ++i) {
            const idx_t th = hp - i * DH;
            if (th < 0) break;  // th only decreases with i
            if (th % SH != 0) continue;
            const idx_t oh = th / SH;
            if (oh >= OH) continue;
            for (idx_t j = 0; j < KW; ++j) {
                const idx_t tw = wp - j * DW;
                if (tw < 0) break;
                if (tw % SW != 0) continue;
                const idx_t ow = tw / SW;
                if (ow >= OW) continue;
                sum += col[((((c * KH + i) * KW + j) * N + n) * OH + oh) * OW + ow];
            }
        }
        x[e] = sum;
    }
}

#define TINYAE_ARGS idx_t total, idx_t N, idx_t C, idx_t H, idx_t W, idx_t KH, idx_t KW, \
    idx_t SH, idx_t SW, idx_t PH, idx_t PW, idx_t DH, idx_t DW, idx_t OH, idx_t OW
#define TINYAE_PASS total, N, C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW

extern "C" {
__global__ void im2col_f32(const float* x, float* col, TINYAE_ARGS) {
    im2col_impl<float>(x, col, TINYAE_PASS);
}
__global__ void im2col_f64(const double* x, double* col, TINYAE_ARGS) {
    im2col_impl<double>(x, col, TINYAE_PASS);
}
__global__ void col2im_f32(const float* col, float* x, TINYAE_ARGS) {
    col2im_impl<float>(col, x, TINYAE_PASS);
}
__global__ void col2im_f64(const double* col, double* x, TINYAE_ARGS) {
    col2im_impl<double>(col, x, TINYAE_PASS);
}
}
"""

KERNEL_NAMES = ("im2col_f32", "im2col_f64", "col2im_f32", "col2im_f64")

_THREADS = 256
_MAX_BLOCKS = 65535 * 4  # the grid-stride loop covers anything larger

_module: Any = None


def _cupy() -> Any:
    cp = cupy_or_none()
    if cp is None:
        raise RuntimeError("CUDA kernels requested but CuPy / a GPU is not available")
    return cp


def _function(name: str) -> Any:
    """Compile the module once (per process) and return one kernel from it."""
    global _module
    cp = _cupy()
    if _module is None:
        _module = cp.RawModule(code=CUDA_SOURCE, options=("--std=c++14",))
    return _module.get_function(name)


def _launch(name: str, src: Any, dst: Any, dims: tuple[int, ...]) -> None:
    total = dst.size
    if total == 0:
        return
    blocks = min((total + _THREADS - 1) // _THREADS, _MAX_BLOCKS)
    args = (src, dst, np.int64(total), *(np.int64(d) for d in dims))
    _function(name)((blocks,), (_THREADS,), args)


def _suffix(dtype: Any) -> str:
    return "f32" if np.dtype(dtype) == np.float32 else "f64"


def im2col(x: Any, geometry: Geometry, out: Any = None) -> Any:
    """CUDA im2col: x (N, C, H, W) CuPy array -> col (C, KH, KW, N, OH, OW), into ``out`` when given."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (
        geometry.kernel,
        geometry.stride,
        geometry.padding,
        geometry.dilation,
    )
    cp = _cupy()
    n, c, h, w = x.shape
    oh, ow = geometry.out_size(h, w)
    with cp.cuda.Device(x.device.id):
        x = cp.ascontiguousarray(x)  # no copy when already contiguous
        col = cp.empty((c, kh, kw, n, oh, ow), dtype=x.dtype) if out is None else out
        dims = (n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)
        _launch("im2col_" + _suffix(x.dtype), x, col, dims)
    return col


def col2im(col: Any, output_size: tuple[int, int], geometry: Geometry, out: Any = None) -> Any:
    """CUDA col2im (gather, deterministic): col (C, KH, KW, N, OH, OW) -> x (N, C, *output_size).

    With ``out`` the image overwrites it: every pixel is written once (the gather sums in a register).
    """
    (sh, sw), (ph, pw), (dh, dw) = geometry.stride, geometry.padding, geometry.dilation
    h, w = output_size
    cp = _cupy()
    c, kh, kw, n, oh, ow = col.shape
    with cp.cuda.Device(col.device.id):
        col = cp.ascontiguousarray(col)
        x = cp.empty((n, c, h, w), dtype=col.dtype) if out is None else out
        dims = (n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)
        _launch("col2im_" + _suffix(col.dtype), col, x, dims)
    return x
