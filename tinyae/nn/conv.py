"""Convolution, transposed convolution and the fully connected layer, with PyTorch's semantics.

Notation (used in every docstring and shape comment of this module):

=============  ===============================================================
N              batch size
C, C_out       input and output channels;  G = groups, Cg = C / G, Cog = C_out / G
H, W           input height and width
KH, KW         kernel height and width
SH, SW         stride
PH, PW         zero padding added on each side
DH, DW         dilation (spacing between kernel taps)
OH, OW         output size of a convolution: ``OH = (H + 2*PH - DH*(KH-1) - 1) // SH + 1``
P              OH*OW, pixels of one output plane
K, Kg          C*KH*KW, rows of the column matrix;  Kg = K / G, rows of one group
=============  ===============================================================

Weight layouts are PyTorch's: conv2d ``(C_out, Cg, KH, KW)``, conv_transpose2d ``(C, Cog, KH, KW)``,
linear ``(out_features, in_features)``.

**Convolution as one matrix product.** ``im2col`` copies every window of x into a column buffer
``col`` (C, KH, KW, N, OH, OW) = a (K, N*P) matrix, so that per group g::

    y_g  = W_g @ col_g            (Cog, Kg) @ (Kg, N*P)  ->  (Cog, N*P), then transposed to NCHW

**The three gradients of y = conv2d(x, W)** for an upstream gradient gy::

    dL/dW_g = gy_g @ col_g^T                     the weight gradient (its own op, ``Conv2dWeightGrad``)
    dL/dcol_g = W_g^T @ gy_g;  dL/dx = col2im(dL/dcol)      =  conv_transpose2d(gy, W)
    dL/db = sum of gy over (N, OH, OW)

``conv_transpose2d`` is *defined* as that input gradient: ``y = col2im(W^T @ x)``, so its own input
gradient is ``conv2d(gy, W)`` and its weight gradient is ``Conv2dWeightGrad(gy, x)``. Each backward
below is written with these Tensor-level ops, so differentiating a gradient again (double
backward, e.g. a gradient penalty through a convolutional discriminator) works for both.

A transposed convolution's output size is ambiguous (several H_out give the same conv size), so the
internal ops always receive the output size explicitly and never infer it.

**Stride 1: the flipped kernel.** At stride 1 a transposed conv is also a plain conv of x with the
kernel turned by 180 degrees and its channel axes swapped (``FlipKernel``), padded by
DH*(KH-1) - PH. That form unfolds x (C rows per tap) instead of producing W^T @ x (C_out rows per
tap), so it is used when the transposed conv has fewer input than output channels: the input
gradient of a conv with few output channels, e.g. a decoder's last layer (see ``_as_flipped_conv``).

**Memory.** The column buffer is KH*KW / (SH*SW) times the input. A batch whose buffer would exceed
the workspace limit (:func:`set_workspace_limit`, env ``TINYAE_WORKSPACE_MB``, default 32 MB) is
processed in chunks along N, one chunk's buffer alive at a time; the results are identical. On the
CPU chunks are smaller still, cache-sized (``_CPU_CHUNK_BYTES``, 4 MB), which is faster:
each chunk's columns are read back while still in the cache. The forward's buffer is kept for the
weight gradient only when it is not much bigger than x (see ``_KEEP_COL_RATIO``) and fits in one
chunk; otherwise the backward unfolds x again, chunk by chunk. What a training step
holds between its forward and backward is then what PyTorch holds: each layer's input.

**Threads.** On the CPU the chunks of a big enough batch are run by tinyae's T threads
(:func:`tinyae.parallel.parallel_for`), each chunk whole (unfold, multiply, fold) with BLAS on one
thread; there are then a multiple of T chunks, and T chunk buffers alive at a time. A weight
gradient summed over chunks keeps one part per chunk and adds them in chunk order, so that the
result does not depend on which thread finished first.

**Speed.** Every multiply is one BLAS GEMM per group and chunk: either per sample, straight
between NCHW arrays (few rows per group, Kg), or over the chunk in the channel-major layout
(G, C/G, N*P) (many rows; see ``_PER_SAMPLE_MAX_K``). Work needed twice within one backward is done
once: the channel-major gy serves both conv gradients, and each chunk of im2col(gy) serves both
gradients of a transposed conv (its weight gradient is summed as the input gradient's conv makes
the columns, see ``_WeightGradSum``). Inputs that need no gradient get none (a first layer's image
is never folded). The GEMMs run at the machine's matrix-multiply peak; what PyTorch (oneDNN, no
column buffers) saves over this design is the im2col/col2im passes, ~15% of a layer like L5.
Splitting a stride-2 transposed conv into four stride-1 convs of its sub-kernels (one per output
phase) was slower (it needs four unfoldings of x, or 1.3x the FLOPs).

**Direct kernels.** On a CPU with AVX-512F, a float32 conv forward with enough output channels and
taps runs :func:`tinyae.kernels.conv2d_direct` instead: the same sums, computed in registers
straight from x, with no column buffer and no separate product (see ``_DIRECT_MIN_COG``). A
transposed conv forward (and so a conv's input gradient) runs
:func:`tinyae.kernels.conv_transpose2d_direct`: one such stride-1 sum per output phase (oy mod SH,
ox mod SW), written straight into y, with no W^T @ x buffer and no col2im (see
``_use_direct_transpose``). A weight gradient runs :func:`tinyae.kernels.conv2d_weight_grad_direct`,
which sums each tile of gW in registers over the whole batch (see ``_use_direct_weight_grad``);
their speed against im2col + BLAS is in docs/performance.md. The gradients are the same ops as
above; a forward whose columns a weight gradient will reuse keeps the im2col path.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

from tinyae import kernels, parallel
from tinyae.backend import get_array_module, is_cupy_array
from tinyae.kernels import out_size
from tinyae.nn._args import int_arg, pair_arg
from tinyae.ops.arithmetic import matmul
from tinyae.ops.index import getitem
from tinyae.ops.shape import broadcast_to, pad, reshape, squeeze, transpose, unsqueeze
from tinyae.parallel import get_num_threads, in_parallel_region, parallel_for, split
from tinyae.tensor import Function, Tensor, is_grad_enabled

__all__ = [
    "conv2d",
    "conv_transpose2d",
    "linear",
    "set_workspace_limit",
    "get_workspace_limit",
    "Conv2dFunction",
    "ConvTranspose2dFunction",
    "Conv2dWeightGrad",
    "ChannelSum",
    "LinearFunction",
]

# ------------------------------------------------------------------ workspace limit
# 32 MB: on W1-W5 (benchmarks/workloads.py) as fast as 256 MB (per-chunk GEMMs stay large), and a
# decoder's last 3x3 conv (32 channels, 128 x 28 x 28) no longer allocates its whole 115 MB buffer.
_DEFAULT_WORKSPACE_MB = 32.0


def _limit_from_env() -> int:
    raw = os.environ.get("TINYAE_WORKSPACE_MB", "").strip()
    if raw:
        try:
            mb = float(raw)
            if mb > 0:
                return int(mb * 2**20)
        except ValueError:
            pass
        warnings.warn(
            f"TINYAE_WORKSPACE_MB={raw!r} is not a positive number; using {_DEFAULT_WORKSPACE_MB:g} MB",
            stacklevel=2,
        )
    return int(_DEFAULT_WORKSPACE_MB * 2**20)


_workspace_limit = _limit_from_env()


def set_workspace_limit(nbytes: int) -> int:
    """Cap the im2col column buffer at ``nbytes`` bytes; return the previous cap.

    Bigger batches are split into chunks along N (one sample is the smallest chunk, so a
    single sample's buffer may exceed a very small cap). Results do not depend on the cap.
    """
    global _workspace_limit
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 1:
        raise ValueError(f"set_workspace_limit: argument 'nbytes' must be a positive int, got {nbytes!r}")
    previous, _workspace_limit = _workspace_limit, nbytes
    return previous


def get_workspace_limit() -> int:
    """The current cap on the column buffer, in bytes."""
    return _workspace_limit


# On the CPU a chunk's columns are also kept small enough to stay in the cache between being
# written (by im2col, or by the GEMM of a transposed conv) and read back (by the GEMM, or col2im):
# streaming a 15-30 MB buffer through main memory twice costs up to 20% of a layer's time, and a
# fresh buffer that big is new pages from the OS every time (docs/performance.md). On a GPU, which wants few
# large launches, only the workspace limit applies.
_CPU_CHUNK_BYTES = 4 * 2**20


# Below this many column-buffer bytes a convolution's loop stays on the calling thread: handing a
# chunk to another thread costs tens of microseconds.
_MIN_PARALLEL_BYTES = 2**19


def _chunks(n: int, bytes_per_sample: int, like: Any) -> list[tuple[int, int]]:
    """Split range(n) into consecutive [start, stop) slices whose buffers stay under the cap.

    ``like``: an array of the computation (on the CPU the cap is at most _CPU_CHUNK_BYTES). On the
    CPU with T > 1 threads a big enough batch gets a multiple of T chunks (at least T, fewer only
    when n < T), near-equal in size, so that the threads finish together.
    """
    on_gpu = is_cupy_array(like)
    cap = _workspace_limit if on_gpu else min(_workspace_limit, _CPU_CHUNK_BYTES)
    step = max(1, cap // max(bytes_per_sample, 1))
    count = -(-n // step)  # ceil: every chunk at most `step` samples
    t = get_num_threads()
    if t > 1 and not on_gpu and n * bytes_per_sample >= _MIN_PARALLEL_BYTES:
        count = -(-count // t) * t
    return split(n, count)


def _for_each_chunk(chunks: list[tuple[int, int]], body: Any, like: Any) -> None:
    """body(i) for every chunk i: on T threads on the CPU (:func:`tinyae.parallel.parallel_for`),
    in order on a GPU, whose kernels are already parallel."""
    parallel_for(len(chunks), body, threads=1 if is_cupy_array(like) else None)


# The forward's column buffer is kept for the weight gradient only when it is at most
# _KEEP_COL_RATIO times the input x (which the backward keeps anyway): a 1x1 kernel, or a stride
# at least as large as the kernel. A bigger one (a 3x3 stride-1 conv's is 9x its input, stride 2
# 2.25x) is cheaper to recompute in the backward (one im2col) than to hold through every later
# layer (docs/performance.md). PyTorch keeps only x, too.
_KEEP_COL_RATIO = 2.0


def _small_enough_to_keep(col_bytes: int, x_bytes: int) -> bool:
    return col_bytes <= _KEEP_COL_RATIO * x_bytes


# ------------------------------------------------------------------ geometry
@dataclass(frozen=True)
class _Geometry:
    """Per-axis stride, padding and dilation, and the number of groups, of one convolution."""

    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    def conv_out(self, h: int, w: int, kh: int, kw: int) -> tuple[int, int]:
        """(OH, OW) of a convolution of an (h, w) input."""
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        return out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw)

    def kernel_args(self) -> tuple[int, ...]:
        """(SH, SW, PH, PW, DH, DW) in the order of the im2col/col2im signatures."""
        return (*self.stride, *self.padding, *self.dilation)


# Below this many rows per group (Kg), the GEMMs run one sample at a time, reading and writing the
# NCHW layout directly. Above it, one big GEMM over the whole batch in the channel-major layout
# (G, C/G, N*P) is faster even with the transposing copy in and out: that copy costs about 1/Kg of
# the multiply (docs/performance.md).
_PER_SAMPLE_MAX_K = 64


def _one_gemm(kg: int) -> bool:
    """Whether a GEMM with Kg rows per group multiplies the whole batch at once."""
    return kg > _PER_SAMPLE_MAX_K


# The direct C++ convolution (kernels.conv2d_direct: no column buffer, outputs summed in registers)
# replaces im2col + GEMM in a forward pass when it runs in C++ here and the layer is big enough
# for its 14-position x 32-channel register tiles: at least 16 output channels per group (one
# fills a single vector lane of 16) and a dot product of at least 32 terms (docs/performance.md). The
# forwards that hand their columns to a weight gradient keep im2col.
_DIRECT_MIN_COG = 16
_DIRECT_MIN_KG = 32


def _use_direct(x: Any, geom: _Geometry, cog: int, kg: int) -> bool:
    if cog < _DIRECT_MIN_COG or kg < _DIRECT_MIN_KG:
        return False
    return kernels.conv2d_direct_runs_cpp(x, *geom.padding)


# The same for a transposed conv (kernels.conv_transpose2d_direct: one stride-1 sum per output phase
# (oy mod SH, ox mod SW), written straight into y: no W^T @ x buffer, no col2im). Its dot products
# have Cig * ceil(KH/SH) * ceil(KW/SW) terms in the biggest phase; the same bounds apply
# (docs/performance.md).
def _use_direct_transpose(x: Any, w: Any, geom: _Geometry, cog: int) -> bool:
    (sh, sw), (kh, kw) = geom.stride, w.shape[2:]
    if cog < _DIRECT_MIN_COG or w.shape[0] // geom.groups * -(-kh // sh) * -(-kw // sw) < _DIRECT_MIN_KG:
        return False
    return kernels.conv_transpose2d_direct_runs_cpp(x, w, *geom.dilation)


# And for a weight gradient (kernels.conv2d_weight_grad_direct: each tile of 14 taps x 32 output
# channels of gW summed in registers over the whole batch; no column buffer, no transposed copies
# of gy), with the forward's bounds: 16 output channels per group, 32 taps (docs/performance.md).
def _use_direct_weight_grad(img: Any, gout: Any, geom: _Geometry, kernel_hw: tuple[int, int]) -> bool:
    taps = img.shape[1] // geom.groups * kernel_hw[0] * kernel_hw[1]
    if gout.shape[1] // geom.groups < _DIRECT_MIN_COG or taps < _DIRECT_MIN_KG:
        return False
    if tuple(gout.shape[2:]) != geom.conv_out(*img.shape[2:], *kernel_hw):  # e.g. a cropped gradient
        return False
    return kernels.conv2d_weight_grad_direct_runs_cpp(img, gout, *geom.padding)


def _contiguous(a: Any) -> Any:
    """``a`` itself when C-contiguous, else a contiguous copy: BLAS needs unit-stride operands.

    Upstream gradients are often broadcast views (zero strides), which NumPy's matmul would
    otherwise multiply with a slow non-BLAS loop.
    """
    return a if a.flags.c_contiguous else get_array_module(a).ascontiguousarray(a)


def _channel_major(a: Any, groups: int) -> Any:
    """(N, C, H, W) -> (G, C/G, N*H*W), contiguous: a whole batch as one GEMM operand per group."""
    n, c = a.shape[:2]
    p = a.shape[2] * a.shape[3]  # spelled out: -1 cannot be inferred for an empty batch
    t = a.reshape(n, groups, c // groups, p).transpose(1, 2, 0, 3)  # (G, C/G, N, H*W)
    return get_array_module(a).ascontiguousarray(t).reshape(groups, c // groups, n * p)


def _pad_bottom_right(a: Any, h: int, w: int) -> Any:
    """Zero-pad an NCHW array at the bottom and right up to (h, w) (a no-op when it is that size)."""
    dh, dw = h - a.shape[2], w - a.shape[3]
    if dh == 0 and dw == 0:
        return a
    return get_array_module(a).pad(a, ((0, 0), (0, 0), (0, dh), (0, dw)))


class _WeightGradSum:
    """gW = gout @ im2col(img)^T per group, summed chunk by chunk over the batch: (C_gout, C_img/G, KH, KW).

    Whoever unfolds ``img`` hands each chunk's columns to :meth:`add`: ``Conv2dWeightGrad``, or the
    input-gradient conv of a transposed conv, whose columns of gy are exactly what the weight
    gradient needs (so gy is unfolded once, not twice). ``gout_cm``: gout in the channel-major
    layout, if the caller has it.
    """

    def __init__(
        self, img_shape: tuple[int, ...], gout: Any, geom: _Geometry, kernel_hw: tuple[int, int], gout_cm: Any
    ) -> None:
        n, c, h, wd = img_shape
        kh, kw = kernel_hw
        g = geom.groups
        oh, ow = geom.conv_out(h, wd, kh, kw)
        self.gout = _contiguous(_pad_bottom_right(gout, oh, ow))  # (N, C_gout, OH, OW)
        self.g, self.cog, self.kg, self.p = g, gout.shape[1] // g, c // g * kh * kw, oh * ow
        self.shape = (gout.shape[1], c // g, kh, kw)
        self.gout_cm = None
        if _one_gemm(self.kg):
            self.gout_cm = gout_cm if gout_cm is not None else _channel_major(self.gout, g)  # (G, Cog, N*P)
        # The one-GEMM path sums gW^T (G, Kg, Cog) and transposes it once at the end (adding into a
        # transposed view of gW instead was as slow as 15% of the GEMM).
        shape = (g, self.cog, self.kg) if self.gout_cm is None else (g, self.kg, self.cog)
        self.gw = get_array_module(gout).zeros(shape, dtype=gout.dtype)
        self.parts: dict[int, Any] = {}

    def add(self, col: Any, i: int, n0: int, n1: int) -> None:
        """Add chunk i, the samples n0:n1, given their columns col (G, Kg, m*P).

        Chunks run on several threads finish in any order; their parts are kept and summed in
        chunk order by :meth:`result`, so that the sum does not depend on timing.
        """
        xp = get_array_module(col)
        g, cog, kg, p, m = self.g, self.cog, self.kg, self.p, n1 - n0
        if self.gout_cm is not None:  # gW^T part: (G, Kg, m*P) @ (G, m*P, Cog), ~10% faster than gout @ col^T
            part = xp.matmul(col, self.gout_cm[:, :, n0 * p : n1 * p].transpose(0, 2, 1))
        else:  # per sample: (m, G, Cog, P) @ (m, G, P, Kg), then summed over the samples
            cols_t = col.reshape(g, kg, m, p).transpose(2, 0, 3, 1)
            part = xp.matmul(self.gout[n0:n1].reshape(m, g, cog, p), cols_t).sum(axis=0)
        if in_parallel_region():
            self.parts[i] = part
        else:
            self.gw += part

    def result(self) -> Any:
        gw = self.gw
        for i in sorted(self.parts):
            gw += self.parts[i]
        self.parts = {}
        if self.gout_cm is not None:
            gw = get_array_module(gw).ascontiguousarray(gw.transpose(0, 2, 1))  # (G, Cog, Kg)
        return gw.reshape(self.shape)


# ------------------------------------------------------------------ the Functions
class Conv2dFunction(Function):
    """y = conv2d(x, W) + b on arrays; backward with conv_transpose2d and Conv2dWeightGrad.

    ``save_col``: keep the forward's column buffer for the weight gradient (when it fits the cap).
    ``weight_grad``: a :class:`_WeightGradSum` over x to hand each chunk's columns to.
    Backward reads x only for dL/dW and W only for dL/dx (callers that know which gradients are
    needed narrow ``needs_inputs`` further); of b only the shape.
    """

    needs_inputs = (True, True, False)

    def __init__(self, geom: _Geometry, save_col: bool = False, weight_grad: Any = None) -> None:
        self.geom, self.save_col, self.weight_grad = geom, save_col, weight_grad
        self.col: Any = None

    def forward(self, x, w, b=None):
        xp = get_array_module(x)
        n, c, h, wd = x.shape
        c_out, cg, kh, kw = w.shape
        g, cog = self.geom.groups, c_out // self.geom.groups
        oh, ow = self.geom.conv_out(h, wd, kh, kw)
        kg, p = cg * kh * kw, oh * ow
        if self.weight_grad is None and not self.save_col and _use_direct(x, self.geom, cog, kg):
            return kernels.conv2d_direct(x, w, b, *self.geom.kernel_args(), groups=g)
        wm = _contiguous(w).reshape(g, cog, kg)  # (G, Cog, Kg)
        bias = None if b is None else b.reshape(g, cog, 1)  # broadcasts over (n, G, Cog, P)
        y = xp.empty((n, c_out, oh, ow), dtype=x.dtype)
        chunks = _chunks(n, c * kh * kw * p * x.dtype.itemsize, x)

        def one_chunk(i: int) -> None:
            n0, n1 = chunks[i]
            m = n1 - n0
            col = kernels.im2col(x[n0:n1], kh, kw, *self.geom.kernel_args())  # (C, KH, KW, m, OH, OW)
            col = col.reshape(g, kg, m * p)  # (G, Kg, m*P)
            out = y[n0:n1].reshape(m, g, cog, p)  # (m, G, Cog, P): a view of y
            if _one_gemm(kg):
                t = xp.matmul(wm, col).reshape(g, cog, m, p).transpose(2, 0, 1, 3)  # (m, G, Cog, P)
                if bias is None:
                    out[...] = t
                else:
                    xp.add(t, bias, out=out)  # the transposing copy adds the bias on the way
            else:
                xp.matmul(wm, col.reshape(g, kg, m, p).transpose(2, 0, 1, 3), out=out)  # per sample
                if bias is not None:
                    out += bias
            if self.weight_grad is not None:
                self.weight_grad.add(col, i, n0, n1)
            if self.save_col and len(chunks) == 1:
                self.col = col

        _for_each_chunk(chunks, one_chunk, x)  # one chunk's buffer per thread alive at a time
        self.weight_grad = None
        return y

    def backward(self, gy):
        x, w = self.inputs[:2]
        need_x, need_w = self.needs_input_grad[:2]
        gx = gw = gb = None
        g, kg = self.geom.groups, w.shape[1] * w.shape[2] * w.shape[3]
        # Both gradients multiply gy in the channel-major layout: transpose it once for both (unless
        # the input gradient is a flipped-kernel conv, which unfolds gy instead, or both gradients
        # run as direct kernels, which read gy as it is).
        share = _one_gemm(kg) and need_x and need_w and not _as_flipped_conv(self.geom, w.shape)
        if share and _use_direct_transpose(gy.data, w.data, self.geom, w.shape[1]):
            share = not _use_direct_weight_grad(x.data, gy.data, self.geom, w.shape[2:])
        gy_cm = _channel_major(gy.data, g) if share else None
        if need_x:
            # The adjoint of "unfold, then multiply by W": multiply by W^T, then fold back.
            gx = _conv_transpose2d(gy, w, None, self.geom, x.shape[2:], x_cm=gy_cm)
        if need_w:
            gw = Conv2dWeightGrad(self.geom, w.shape[2:], col=self.col, gout_cm=gy_cm)(x, gy)
        if len(self.inputs) == 3 and self.needs_input_grad[2]:
            gb = ChannelSum()(gy)
        self.col = None
        return gx, gw, gb


class ConvTranspose2dFunction(Function):
    """y = col2im(W^T @ x) + b with an explicit output size ``out_hw``; backward with conv2d.

    ``x`` (N, C, H, W) may be smaller than the conv size of ``out_hw`` (when output_padding >=
    stride, possible with dilation > stride); the extra rows and columns are zeros.
    ``x_cm``: x already in the channel-major layout, if the caller has it. (It is not kept for
    the weight gradient, which transposes x again: as big as x, it would be held through every
    later layer, for a copy that costs ~1% of the layer's time.)
    """

    needs_inputs = (True, True, False)  # as Conv2dFunction: x for dL/dW, W for dL/dx, b never

    def __init__(self, geom: _Geometry, out_hw: tuple[int, int], x_cm: Any = None) -> None:
        self.geom, self.out_hw, self.x_cm = geom, out_hw, x_cm

    def forward(self, x, w, b=None):
        xp = get_array_module(x)
        c, cog, kh, kw = w.shape
        g, cig = self.geom.groups, c // self.geom.groups
        out_h, out_w = self.out_hw
        h, wd = self.geom.conv_out(out_h, out_w, kh, kw)
        n = x.shape[0]
        kg, p = cog * kh * kw, h * wd
        if x.shape[2:] == (h, wd) and _use_direct_transpose(x, w, self.geom, cog):
            self.x_cm = None
            return kernels.conv_transpose2d_direct(x, w, b, out_h, out_w, *self.geom.kernel_args(), groups=g)
        wt = _contiguous(w).reshape(g, cig, kg).transpose(0, 2, 1)  # (G, Kg, Cig): BLAS reads it transposed
        x_cm = padded = None
        if not _one_gemm(kg):
            padded = _contiguous(_pad_bottom_right(x, h, wd))  # (N, C, H, W)
        elif self.x_cm is not None and x.shape[2:] == (h, wd):
            x_cm = self.x_cm  # (G, Cig, N*P), from the caller
        else:
            x_cm = _channel_major(_pad_bottom_right(x, h, wd), g)  # (G, Cig, N*P)
        chunks = _chunks(n, g * kg * p * x.dtype.itemsize, x)
        y = None if len(chunks) == 1 else xp.empty((n, g * cog, out_h, out_w), dtype=x.dtype)
        bias = None if b is None else b.reshape(1, -1, 1, 1)

        def one_chunk(i: int) -> None:
            n0, n1 = chunks[i]
            m = n1 - n0
            col = xp.empty((g * cog, kh, kw, m, h, wd), dtype=x.dtype)  # (C_out, KH, KW, m, H, W)
            if x_cm is not None and cig == 1:  # an outer product: ~3x faster as a broadcast multiply
                xp.multiply(wt, x_cm[:, :, n0 * p : n1 * p], out=col.reshape(g, kg, m * p))
            elif x_cm is not None:  # (G, Kg, Cig) @ (G, Cig, m*P)
                xp.matmul(wt, x_cm[:, :, n0 * p : n1 * p], out=col.reshape(g, kg, m * p))
            else:  # per sample: (G, Kg, Cig) @ (m, G, Cig, P) into the (m, G, Kg, P) view of col
                img = padded[n0:n1].reshape(m, g, cig, p)
                xp.matmul(wt, img, out=col.reshape(g, kg, m, p).transpose(2, 0, 1, 3))
            args = (out_h, out_w, *self.geom.kernel_args())
            if y is None:  # one chunk: its output is y
                outputs.append(kernels.col2im(col, *args))  # (N, C_out, OH, OW)
                if bias is not None:
                    outputs[0] += bias
            elif bias is None:
                kernels.col2im(col, *args, out=y[n0:n1])  # (m, C_out, OH, OW), straight into y
            else:
                part = kernels.col2im(col, *args)  # (m, C_out, OH, OW)
                xp.add(part, bias, out=y[n0:n1])  # the copy into y adds the bias on the way

        outputs: list[Any] = []
        _for_each_chunk(chunks, one_chunk, x)  # one chunk's buffer per thread alive at a time
        self.x_cm = None
        return y if y is not None else outputs[0]

    def backward(self, gy):
        x, w = self.inputs[:2]
        need_x, need_w = self.needs_input_grad[:2]
        gx = gw = gb = None
        col = None
        if need_x:
            # The input gradient conv2d(gy, W) unfolds gy; the weight gradient needs the same columns.
            # Without a graph to record, they are summed into it chunk by chunk as they are made;
            # otherwise (create_graph) the weight gradient is its own op, given the columns if kept.
            # When both run direct there are no columns to share: each is its own direct kernel.
            both_direct = (
                need_w
                and _use_direct(
                    gy.data, self.geom, w.shape[0] // self.geom.groups, w.shape[1] * w.shape[2] * w.shape[3]
                )
                and _use_direct_weight_grad(gy.data, x.data, self.geom, w.shape[2:])
            )
            acc = None
            if need_w and not is_grad_enabled() and not both_direct:
                acc = _WeightGradSum(gy.shape, x.data, self.geom, w.shape[2:], None)
            save = need_w and acc is None and not both_direct
            conv = Conv2dFunction(self.geom, save_col=save, weight_grad=acc)
            gx = _crop(conv(gy, w), x.shape[2:])
            col, conv.col = conv.col, None
            if acc is not None:
                gw = Tensor(acc.result())
        if need_w and gw is None:
            # y = col2im(W^T x) means <gy, y> = <im2col(gy), W^T x>: the conv weight gradient with
            # the roles swapped (gy is the image, x the output gradient).
            gw = Conv2dWeightGrad(self.geom, w.shape[2:], col=col)(gy, x)
        if len(self.inputs) == 3 and self.needs_input_grad[2]:
            gb = ChannelSum()(gy)
        return gx, gw, gb


class Conv2dWeightGrad(Function):
    """gW = gout @ im2col(img)^T per group: (C_gout, C_img/G, KH, KW), the weight gradient of a conv.

    Bilinear in (img, gout), so its backward is again a pair of convolutions:
    ``d/dimg = conv_transpose2d(gout, ggW)`` and ``d/dgout = conv2d(img, ggW)``. (It reads only the
    incoming gradient ggW and its inputs — never its own output.) ``col`` (the column buffer of
    ``img``) and ``gout_cm`` (gout in the channel-major layout) are buffers the caller already has;
    they are used once and dropped.
    """

    def __init__(
        self, geom: _Geometry, kernel_hw: tuple[int, int], col: Any = None, gout_cm: Any = None
    ) -> None:
        self.geom, self.kernel_hw, self.col, self.gout_cm = geom, tuple(kernel_hw), col, gout_cm

    def forward(self, img, gout):
        n, c, h, wd = img.shape
        kh, kw = self.kernel_hw
        g = self.geom.groups
        oh, ow = self.geom.conv_out(h, wd, kh, kw)
        kg, p = c // g * kh * kw, oh * ow
        if self.col is None and _use_direct_weight_grad(img, gout, self.geom, self.kernel_hw):
            self.gout_cm = None
            return kernels.conv2d_weight_grad_direct(img, gout, kh, kw, *self.geom.kernel_args(), groups=g)
        acc = _WeightGradSum(img.shape, gout, self.geom, self.kernel_hw, self.gout_cm)
        if self.col is not None:
            acc.add(self.col, 0, 0, n)  # (G, Kg, N*P), kept from the forward
        else:
            chunks = _chunks(n, c * kh * kw * p * img.dtype.itemsize, img)

            def one_chunk(i: int) -> None:
                n0, n1 = chunks[i]
                col = kernels.im2col(img[n0:n1], kh, kw, *self.geom.kernel_args())  # (C, KH, KW, m, OH, OW)
                acc.add(col.reshape(g, kg, (n1 - n0) * p), i, n0, n1)  # (G, Kg, m*P)

            _for_each_chunk(chunks, one_chunk, img)  # one chunk's buffer per thread alive at a time
        self.col = self.gout_cm = None
        return acc.result()

    def backward(self, ggw):
        img, gout = self.inputs
        g_img = g_gout = None
        if self.needs_input_grad[0]:
            g_img = _conv_transpose2d(gout, ggw, None, self.geom, img.shape[2:])
        if self.needs_input_grad[1]:
            g_gout = _crop(_conv2d(img, ggw, None, self.geom), gout.shape[2:])
        return g_img, g_gout


class ChannelSum(Function):
    """dL/db = sum of gy (N, C, OH, OW) over (N, OH, OW): the bias gradient, shape (C,).

    ``einsum`` over the (N, C, OH*OW) view reads gy once, ~3x faster than ``sum`` over the axes
    (0, 2, 3), which NumPy walks with strides. Linear in gy, so its backward broadcasts back.
    """

    needs_inputs = False

    def forward(self, gy):
        n, c, h, w = gy.shape
        return get_array_module(gy).einsum("ncp->c", gy.reshape(n, c, h * w))

    def backward(self, ggb):
        return broadcast_to(reshape(ggb, (1, -1, 1, 1)), self.inputs[0].shape)


class LinearFunction(Function):
    """y = x @ W^T + b for x (M, in), W (out, in); gx = gy @ W, gW = gy^T @ x, gb = sum of gy over M."""

    needs_inputs = (True, True, False)  # x for gW, W for gx, b never (``linear`` narrows it per call)

    def forward(self, x, w, b=None):
        y = parallel.matmul(x, w.T)  # (M, out); BLAS reads W transposed, no copy
        if b is not None:
            y += b
        return y

    def backward(self, gy):
        x, w = self.inputs[:2]
        gx = matmul(gy, w) if self.needs_input_grad[0] else None
        gw = matmul(transpose(gy, 0, 1), x) if self.needs_input_grad[1] else None
        gb = gy.sum(axis=0) if len(self.inputs) == 3 and self.needs_input_grad[2] else None
        return gx, gw, gb


# ------------------------------------------------------------------ internal Tensor-level ops
def _conv2d(x: Tensor, w: Tensor, b: Tensor | None, geom: _Geometry) -> Tensor:
    """Conv2dFunction on validated tensors; keeps its column buffer when the weight will need a gradient
    and the buffer is small (:func:`_small_enough_to_keep`)."""
    n, c, h, wd = x.shape
    kh, kw = w.shape[2:]
    oh, ow = geom.conv_out(h, wd, kh, kw)
    col_bytes = c * kh * kw * n * oh * ow * x.dtype.itemsize
    save = (
        is_grad_enabled() and w.requires_grad and _small_enough_to_keep(col_bytes, x.size * x.dtype.itemsize)
    )
    fn = Conv2dFunction(geom, save_col=save)
    fn.needs_inputs = (w.requires_grad, x.requires_grad, False)  # x only for dL/dW, W only for dL/dx
    return fn(*((x, w) if b is None else (x, w, b)))


def _conv_transpose2d(
    x: Tensor, w: Tensor, b: Tensor | None, geom: _Geometry, out_hw: Any, x_cm: Any = None
) -> Tensor:
    """ConvTranspose2dFunction on validated tensors, with the output size given explicitly.

    At stride 1 it may run as a conv2d with the flipped kernel instead (see :func:`_as_flipped_conv`).
    """
    if _as_flipped_conv(geom, w.shape):
        return _flipped_conv(x, w, b, geom, out_hw)
    fn = ConvTranspose2dFunction(geom, (int(out_hw[0]), int(out_hw[1])), x_cm=x_cm)
    fn.needs_inputs = (w.requires_grad, x.requires_grad, False)  # x only for dL/dW, W only for dL/dx
    return fn(*((x, w) if b is None else (x, w, b)))


class FlipKernel(Function):
    """W (C, Cog, KH, KW) -> W' (G*Cog, C/G, KH, KW): per group, the two channel axes swapped and the
    kernel turned by 180 degrees, ``W'[g*Cog + o, c, u, v] = W[g*C/G + c, o, KH-1-u, KW-1-v]``.

    A permutation of the entries that is its own inverse (doing it twice gives W back), so the
    adjoint, the backward, is the same map.
    """

    needs_inputs = False

    def __init__(self, groups: int) -> None:
        self.groups = groups

    def forward(self, w):
        c, cog, kh, kw = w.shape
        g = self.groups
        t = w.reshape(g, c // g, cog, kh, kw).transpose(0, 2, 1, 3, 4)  # (G, Cog, C/G, KH, KW)
        t = t[..., ::-1, ::-1]  # the kernel turned by 180 degrees
        return get_array_module(w).ascontiguousarray(t).reshape(g * cog, c // g, kh, kw)

    def backward(self, gw):
        return FlipKernel(self.groups)(gw)


def _flip_possible(geom: _Geometry, w_shape: tuple[int, ...]) -> bool:
    """Whether a transposed conv with weight (C, Cog, KH, KW) equals a conv with the flipped kernel.

    At stride 1, ``conv_transpose2d(x, W)`` is ``conv2d(x, FlipKernel(W))`` with padding
    DH*(KH-1) - PH, which must not be negative: output pixel i gets ``sum_u W[u] x[i + PH - u*DH]``,
    a correlation with the reversed kernel.
    """
    kh, kw = w_shape[2:]
    (dh, dw), (ph, pw) = geom.dilation, geom.padding
    return geom.stride == (1, 1) and ph <= dh * (kh - 1) and pw <= dw * (kw - 1)


def _as_flipped_conv(geom: _Geometry, w_shape: tuple[int, ...]) -> bool:
    """Whether a transposed conv with weight (C, Cog, KH, KW) runs as a flipped-kernel conv.

    When both forms are possible they differ in their buffer: the transposed conv's W^T @ x has
    Cog*KH*KW rows per group, the conv's im2col(x) C/G*KH*KW. Fewer rows means less memory and
    less traffic (the input gradient of a decoder's last conv, 32 -> 1 channels, batch 128 at
    28x28: a 3.6 MB buffer instead of 115 MB, ~10x faster). With equal channel counts neither
    wins consistently (within 15% either way on 32 and 64 channels), so the transposed conv stays.
    """
    c, cog = w_shape[:2]
    return _flip_possible(geom, w_shape) and c // geom.groups < cog


def _flipped_conv(x: Tensor, w: Tensor, b: Tensor | None, geom: _Geometry, out_hw: Any) -> Tensor:
    """A stride-1 ``conv_transpose2d(x, W)`` computed as ``conv2d(x, FlipKernel(W))``.

    Differentiable in x, W and b like any conv (double backward included). The output rows past
    the smallest output size (output_padding, possible at stride 1 when DH > 1) read x beyond its
    last row: x is zero-padded there.
    """
    (dh, dw), (ph, pw) = geom.dilation, geom.padding
    kh, kw = w.shape[2:]
    conv_geom = _Geometry((1, 1), (dh * (kh - 1) - ph, dw * (kw - 1) - pw), geom.dilation, geom.groups)
    extra_h = int(out_hw[0]) - (x.shape[2] + dh * (kh - 1) - 2 * ph)  # output_padding
    extra_w = int(out_hw[1]) - (x.shape[3] + dw * (kw - 1) - 2 * pw)
    if extra_h or extra_w:
        x = pad(x, (0, extra_w, 0, extra_h))
    return _conv2d(x, FlipKernel(geom.groups)(w), b, conv_geom)


def _crop(y: Tensor, out_hw: Any) -> Tensor:
    """y[:, :, :OH, :OW]: a convolution's natural output cut to a transposed conv's input size.

    Only needed when output_padding >= stride (dilation > stride): then the conv of the
    transposed conv's output has more rows/columns than its input had, and they get no gradient.
    """
    if tuple(out_hw) == y.shape[2:]:
        return y
    return getitem(y, (slice(None), slice(None), slice(0, out_hw[0]), slice(0, out_hw[1])))


# ------------------------------------------------------------------ argument checks
def _as_tensor_arg(op: str, name: str, v: Any) -> Tensor:
    if isinstance(v, Tensor):
        t = v
    elif hasattr(v, "dtype") and hasattr(v, "shape"):  # an ndarray
        t = Tensor(v)
    else:
        raise TypeError(f"{op}: argument '{name}' must be a Tensor, got {type(v).__name__}")
    if t.dtype.kind != "f" or t.dtype.itemsize not in (4, 8):
        raise TypeError(f"{op}: argument '{name}' must be float32 or float64, got dtype {t.dtype}")
    return t


def _tensors(op: str, x: Any, weight: Any, bias: Any) -> tuple[Tensor, Tensor, Tensor | None]:
    x, weight = _as_tensor_arg(op, "input", x), _as_tensor_arg(op, "weight", weight)
    if bias is not None:
        bias = _as_tensor_arg(op, "bias", bias)
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != x.dtype:
            raise TypeError(f"{op}: input and {name} must have the same dtype, got {x.dtype} and {t.dtype}")
    return x, weight, bias


def _check_input(op: str, x: Tensor) -> bool:
    """Check x is (N, C, H, W) or unbatched (C, H, W); return whether it is unbatched."""
    if x.ndim not in (3, 4):
        raise ValueError(
            f"{op}: argument 'input' must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape {x.shape}"
        )
    return x.ndim == 3


def _check_weight(op: str, weight: Tensor, layout: str) -> None:
    if weight.ndim != 4:
        raise ValueError(f"{op}: argument 'weight' must be 4-D {layout}, got shape {weight.shape}")
    if any(s < 1 for s in weight.shape):
        raise ValueError(f"{op}: argument 'weight' has an empty dimension, shape {weight.shape}")


def _check_bias(op: str, bias: Tensor | None, n_out: int, weight: Tensor) -> None:
    if bias is not None and bias.shape != (n_out,):
        raise ValueError(
            f"{op}: argument 'bias' must have shape ({n_out},) to match weight {weight.shape}, "
            f"got {bias.shape}"
        )


def _check_groups(op: str, groups: Any, channels: dict[str, int]) -> int:
    groups = int_arg(op, "groups", groups, 1)
    for what, c in channels.items():
        if c % groups:
            raise ValueError(f"{op}: groups={groups} must divide the {what}, got {c}")
    return groups


# ------------------------------------------------------------------ public functional API
def conv2d(
    input: Tensor,  # noqa: A002 - PyTorch's name
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> Tensor:
    """2-D convolution (cross-correlation, as PyTorch) of x (N, C, H, W) with W (C_out, Cg, KH, KW).

    ``y[n, o, i, j] = b[o] + sum_{c, u, v} W[o, c, u, v] * x_pad[n, g*Cg + c, i*SH + u*DH, j*SW + v*DW]``
    where g is the group of output channel o. Output (N, C_out, OH, OW). ``padding`` is an int,
    a pair, ``"valid"`` (no padding) or ``"same"`` (output size = input size; stride must be 1;
    when the total padding DH*(KH-1) is odd the extra row/column goes at the bottom/right).
    An unbatched (C, H, W) input gives a (C_out, OH, OW) output.
    """
    op = "conv2d"
    x, weight, bias = _tensors(op, input, weight, bias)
    unbatched = _check_input(op, x)
    if unbatched:
        x = unsqueeze(x, 0)
    _check_weight(op, weight, "(C_out, C_in/groups, KH, KW)")
    c_out, cg, kh, kw = weight.shape
    _check_bias(op, bias, c_out, weight)
    stride = pair_arg(op, "stride", stride, 1)
    dilation = pair_arg(op, "dilation", dilation, 1)
    groups = _check_groups(op, groups, {"output channels (weight.shape[0])": c_out})
    if x.shape[1] != cg * groups:
        raise ValueError(
            f"{op}: input has {x.shape[1]} channels but weight {weight.shape} with groups={groups} "
            f"expects {cg * groups} (= weight.shape[1] * groups); input shape {x.shape}"
        )

    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError(f"{op}: padding='same' needs stride 1 (as in PyTorch), got stride {stride}")
            total = (dilation[0] * (kh - 1), dilation[1] * (kw - 1))
            padding = (total[0] // 2, total[1] // 2)
            extra = (total[0] % 2, total[1] % 2)
            if extra != (0, 0):  # odd total: the extra row/column of zeros goes at the bottom/right
                x = pad(x, (0, extra[1], 0, extra[0]))
        else:
            raise ValueError(
                f"{op}: argument 'padding' must be an int, a pair, 'same' or 'valid', got {padding!r}"
            )
    else:
        padding = pair_arg(op, "padding", padding, 0)

    geom = _Geometry(stride, padding, dilation, groups)
    oh, ow = geom.conv_out(x.shape[2], x.shape[3], kh, kw)
    if oh < 1 or ow < 1:
        raise ValueError(
            f"{op}: kernel ({kh}, {kw}) with dilation {dilation} is larger than the padded input: "
            f"input shape {x.shape}, padding {padding}"
        )
    y = _conv2d(x, weight, bias, geom)
    return squeeze(y, 0) if unbatched else y


def conv_transpose2d(
    input: Tensor,  # noqa: A002 - PyTorch's name
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    output_padding: int | tuple[int, int] = 0,
    groups: int = 1,
    dilation: int | tuple[int, int] = 1,
    *,
    output_size: Any = None,
) -> Tensor:
    """Transposed 2-D convolution of x (N, C, H, W) with W (C, Cog, KH, KW): the adjoint of conv2d.

    Output (N, G*Cog, H_out, W_out) with PyTorch's size formula::

        H_out = (H - 1)*SH - 2*PH + DH*(KH - 1) + output_padding[0] + 1

    ``output_padding`` (< max(stride, dilation)) picks among the sizes that a stride-SH conv
    maps back to H. Alternatively ``output_size=(H_out, W_out)`` (or a full (N, C, H_out, W_out)
    shape, as ``ConvTranspose2d.forward`` takes in PyTorch) picks it, and ``output_padding`` is
    then ignored. An unbatched (C, H, W) input gives a (C_out, H_out, W_out) output.
    """
    op = "conv_transpose2d"
    x, weight, bias = _tensors(op, input, weight, bias)
    unbatched = _check_input(op, x)
    if unbatched:
        x = unsqueeze(x, 0)
    _check_weight(op, weight, "(C_in, C_out/groups, KH, KW)")
    c_in, cog, kh, kw = weight.shape
    groups = _check_groups(op, groups, {"input channels (weight.shape[0])": c_in})
    _check_bias(op, bias, cog * groups, weight)
    stride = pair_arg(op, "stride", stride, 1)
    dilation = pair_arg(op, "dilation", dilation, 1)
    if isinstance(padding, str):
        raise ValueError(f"{op}: argument 'padding' must be an int or a pair of ints, got {padding!r}")
    padding = pair_arg(op, "padding", padding, 0)
    if x.shape[1] != c_in:
        raise ValueError(
            f"{op}: input has {x.shape[1]} channels but weight {weight.shape} expects {c_in} "
            f"(= weight.shape[0]); input shape {x.shape}"
        )
    h, w = x.shape[2], x.shape[3]
    # The smallest output a stride-S conv maps back to (H, W); output_padding adds to it.
    min_size = tuple(
        (size - 1) * s - 2 * p + d * (k - 1) + 1
        for size, s, p, d, k in zip((h, w), stride, padding, dilation, (kh, kw))
    )
    if output_size is not None:
        size = tuple(output_size)
        if len(size) == x.ndim or (unbatched and len(size) == 3):
            size = size[-2:]
        if len(size) != 2:
            raise ValueError(f"{op}: argument 'output_size' must be (H_out, W_out), got {tuple(output_size)}")
        size = tuple(int_arg(op, "output_size", s, 1) for s in size)
        for axis in range(2):
            lo, hi = min_size[axis], min_size[axis] + stride[axis] - 1
            if not lo <= size[axis] <= hi:
                raise ValueError(
                    f"{op}: requested output_size {size} is invalid for input shape {x.shape}, "
                    f"weight {weight.shape}, stride {stride}, padding {padding}, dilation {dilation}: "
                    f"axis {axis} must be in [{lo}, {hi}]"
                )
    else:
        output_padding = pair_arg(op, "output_padding", output_padding, 0)
        for axis in range(2):
            if output_padding[axis] >= max(stride[axis], dilation[axis]):
                raise ValueError(
                    f"{op}: output_padding {output_padding} must be smaller than max(stride, dilation) "
                    f"per axis; got stride {stride}, dilation {dilation}"
                )
        size = (min_size[0] + output_padding[0], min_size[1] + output_padding[1])
    if size[0] < 1 or size[1] < 1:
        raise ValueError(
            f"{op}: output size {size} is not positive: input shape {x.shape}, weight {weight.shape}, "
            f"stride {stride}, padding {padding}, dilation {dilation}"
        )
    y = _conv_transpose2d(x, weight, bias, _Geometry(stride, padding, dilation, groups), size)
    return squeeze(y, 0) if unbatched else y


def linear(
    input: Tensor,  # noqa: A002 - PyTorch's name
    weight: Tensor,
    bias: Tensor | None = None,
) -> Tensor:
    """Fully connected layer ``y = x @ W^T + b``: x (..., in), W (out, in), b (out,) -> (..., out)."""
    op = "linear"
    x, weight, bias = _tensors(op, input, weight, bias)
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
    args = (weight,) if bias is None else (weight, bias)
    fn = LinearFunction()
    fn.needs_inputs = (weight.requires_grad, x.requires_grad, False)  # x only for gW, W only for gx
    if x.ndim == 2:
        return fn(x, *args)
    lead = x.shape[:-1]
    y = fn(reshape(x, (-1, weight.shape[1])), *args)  # (M, out), M = prod(lead)
    return reshape(y, (*lead, weight.shape[0]))
