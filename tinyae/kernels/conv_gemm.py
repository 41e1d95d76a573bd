"""Convolutions as im2col + GEMM, chunk by chunk over the batch: the general path of the planner.

Notation as in :mod:`tinyae.nn.conv`; G groups, Cg = C/G, Cog = C_out/G, Kg = Cg*KH*KW rows of
one group's column matrix, P = OH*OW. Per group g and chunk of m samples::

    conv2d:            y_g   = W_g @ col_g                (Cog, Kg) @ (Kg, m*P)
    conv_transpose2d:  col_g = W_g^T @ x_g, y = col2im(col)
    weight gradient:   gW_g  = gy_g @ col_g^T             summed over the chunks

**Memory.** The column buffer is KH*KW / (SH*SW) times the input. A batch whose buffer would exceed
the workspace limit (:func:`set_workspace_limit`, env ``TINYAE_WORKSPACE_MB``, default 32 MB) is
processed in chunks along N, one chunk's buffer alive at a time; the results are identical. On the
CPU chunks are cache-sized (``CPU_CHUNK_BYTES``), so each chunk's columns are read back while still
in the cache.

**Threads.** On the CPU the chunks of a big enough batch run on tinyae's T threads
(:func:`tinyae.parallel.parallel_for`), each chunk whole (unfold, multiply, fold) with BLAS on one
thread. A weight gradient summed over chunks keeps one part per chunk and adds them in chunk order,
so the result does not depend on which thread finished first.

**Two GEMM layouts.** Either per sample, straight between NCHW arrays (few rows per group, Kg), or
one GEMM over the chunk in the channel-major layout (G, Cg, N*P) (many rows; see ``one_gemm``).
Why each threshold is where it is: docs/performance.md.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from tinyae import kernels
from tinyae.backend import get_array_module, is_cupy_array
from tinyae.kernels.geometry import Geometry
from tinyae.parallel import get_num_threads, in_parallel_region, parallel_for, split

# ------------------------------------------------------------------ workspace and chunks
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


# CPU chunks stay cache-sized: streaming a 15-30 MB buffer through main memory twice costs up to
# 20% of a layer (docs/performance.md). A GPU wants few large launches: only the limit applies.
CPU_CHUNK_BYTES = 4 * 2**20

# Below this many column-buffer bytes a loop stays on the calling thread: a hand-off to another
# thread costs tens of microseconds.
MIN_PARALLEL_BYTES = 2**19


def chunks(n: int, bytes_per_sample: int, like: Any) -> list[tuple[int, int]]:
    """Split range(n) into consecutive [start, stop) slices whose buffers stay under the cap.

    ``like``: an array of the computation. On the CPU with T > 1 threads a big enough batch gets
    a multiple of T near-equal chunks, so that the threads finish together.
    """
    on_gpu = is_cupy_array(like)
    cap = _workspace_limit if on_gpu else min(_workspace_limit, CPU_CHUNK_BYTES)
    step = max(1, cap // max(bytes_per_sample, 1))
    count = -(-n // step)  # ceil: every chunk at most `step` samples
    t = get_num_threads()
    if t > 1 and not on_gpu and n * bytes_per_sample >= MIN_PARALLEL_BYTES:
        count = -(-count // t) * t
    return split(n, count)


def for_each_chunk(parts: list[tuple[int, int]], body: Any, like: Any) -> None:
    """body(i) for every chunk i: on T threads on the CPU, in order on a GPU (already parallel)."""
    parallel_for(len(parts), body, threads=1 if is_cupy_array(like) else None)


# ------------------------------------------------------------------ layouts
# Above this many rows per group (Kg), one GEMM over the whole chunk in the channel-major layout
# beats one GEMM per sample even with the transposing copies, which cost about 1/Kg of the
# multiply (docs/performance.md).
PER_SAMPLE_MAX_K = 64


def one_gemm(kg: int) -> bool:
    """Whether a GEMM with Kg rows per group multiplies the whole batch at once."""
    return kg > PER_SAMPLE_MAX_K


def contiguous(a: Any) -> Any:
    """``a`` itself when C-contiguous, else a contiguous copy: BLAS needs unit-stride operands
    (an upstream gradient is often a broadcast view with zero strides)."""
    return a if a.flags.c_contiguous else get_array_module(a).ascontiguousarray(a)


def channel_major(a: Any, groups: int) -> Any:
    """(N, C, H, W) -> (G, C/G, N*H*W), contiguous: a whole batch as one GEMM operand per group."""
    n, c = a.shape[:2]
    p = a.shape[2] * a.shape[3]  # spelled out: -1 cannot be inferred for an empty batch
    t = a.reshape(n, groups, c // groups, p).transpose(1, 2, 0, 3)  # (G, C/G, N, H*W)
    return get_array_module(a).ascontiguousarray(t).reshape(groups, c // groups, n * p)


def pad_bottom_right(a: Any, h: int, w: int) -> Any:
    """Zero-pad an NCHW array at the bottom and right up to (h, w) (a no-op when it is that size)."""
    dh, dw = h - a.shape[2], w - a.shape[3]
    if dh == 0 and dw == 0:
        return a
    return get_array_module(a).pad(a, ((0, 0), (0, 0), (0, dh), (0, dw)))


# ------------------------------------------------------------------ the three GEMM convolutions
class WeightGradSum:
    """gW = gout @ im2col(img)^T per group, summed chunk by chunk: (C_gout, C_img/G, KH, KW).

    Whoever unfolds ``img`` hands each chunk's columns to :meth:`add`, so that columns made for
    another product (a transposed conv's input gradient unfolds gy, which its weight gradient
    needs too) are not made twice. ``gout_cm``: gout in the channel-major layout, if at hand.
    """

    def __init__(self, img_shape: tuple[int, ...], gout: Any, geom: Geometry, gout_cm: Any) -> None:
        n, c, h, wd = img_shape
        (kh, kw), g = geom.kernel, geom.groups
        oh, ow = geom.out_size(h, wd)
        self.gout = contiguous(pad_bottom_right(gout, oh, ow))  # (N, C_gout, OH, OW)
        self.g, self.cog, self.kg, self.p = g, gout.shape[1] // g, c // g * kh * kw, oh * ow
        self.shape = (gout.shape[1], c // g, kh, kw)
        self.gout_cm = None
        if one_gemm(self.kg):
            self.gout_cm = gout_cm if gout_cm is not None else channel_major(self.gout, g)  # (G, Cog, N*P)
        # The one-GEMM path sums gW^T (G, Kg, Cog) and transposes it once at the end (adding into a
        # transposed view of gW instead was as slow as 15% of the GEMM).
        shape = (g, self.cog, self.kg) if self.gout_cm is None else (g, self.kg, self.cog)
        self.gw = get_array_module(gout).zeros(shape, dtype=gout.dtype)
        self.parts: dict[int, Any] = {}

    def add(self, col: Any, i: int, n0: int, n1: int) -> None:
        """Add chunk i, the samples n0:n1, given their columns col (G, Kg, m*P).

        Parts made on several threads are kept and summed in chunk order by :meth:`result`.
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


def conv2d(
    x: Any, w: Any, b: Any, geom: Geometry, keep_columns: bool = False, weight_grad: Any = None
) -> tuple:
    """y = conv2d(x, W) + b chunk by chunk; returns (y, col), col the (G, Kg, N*P) columns when
    ``keep_columns`` and the batch was one chunk (else None). ``weight_grad``: a
    :class:`WeightGradSum` over x to hand each chunk's columns to."""
    xp = get_array_module(x)
    n, c, h, wd = x.shape
    c_out, cg, kh, kw = w.shape
    g, cog = geom.groups, c_out // geom.groups
    oh, ow = geom.out_size(h, wd)
    kg, p = cg * kh * kw, oh * ow
    wm = contiguous(w).reshape(g, cog, kg)  # (G, Cog, Kg)
    bias = None if b is None else b.reshape(g, cog, 1)  # broadcasts over (n, G, Cog, P)
    y = xp.empty((n, c_out, oh, ow), dtype=x.dtype)
    parts = chunks(n, c * kh * kw * p * x.dtype.itemsize, x)
    kept: list[Any] = []

    def one_chunk(i: int) -> None:
        n0, n1 = parts[i]
        m = n1 - n0
        col = kernels.im2col(x[n0:n1], geom)  # (C, KH, KW, m, OH, OW)
        col = col.reshape(g, kg, m * p)  # (G, Kg, m*P)
        out = y[n0:n1].reshape(m, g, cog, p)  # (m, G, Cog, P): a view of y
        if one_gemm(kg):
            t = xp.matmul(wm, col).reshape(g, cog, m, p).transpose(2, 0, 1, 3)  # (m, G, Cog, P)
            if bias is None:
                out[...] = t
            else:
                xp.add(t, bias, out=out)  # the transposing copy adds the bias on the way
        else:
            xp.matmul(wm, col.reshape(g, kg, m, p).transpose(2, 0, 1, 3), out=out)  # per sample
            if bias is not None:
                out += bias
        if weight_grad is not None:
            weight_grad.add(col, i, n0, n1)
        if keep_columns and len(parts) == 1:
            kept.append(col)

    for_each_chunk(parts, one_chunk, x)  # one chunk's buffer per thread alive at a time
    return y, (kept[0] if kept else None)


def conv_transpose2d(
    x: Any, w: Any, b: Any, geom: Geometry, out_hw: tuple[int, int], x_cm: Any = None
) -> Any:
    """y = col2im(W^T @ x) + b, y (N, G*Cog, *out_hw), chunk by chunk. ``x`` may be smaller than the
    conv size of ``out_hw`` (output_padding >= stride): the missing rows are zeros. ``x_cm``: x in
    the channel-major layout, if at hand."""
    xp = get_array_module(x)
    c, cog, kh, kw = w.shape
    g, cig = geom.groups, c // geom.groups
    out_h, out_w = out_hw
    h, wd = geom.out_size(out_h, out_w)
    n = x.shape[0]
    kg, p = cog * kh * kw, h * wd
    wt = contiguous(w).reshape(g, cig, kg).transpose(0, 2, 1)  # (G, Kg, Cig): BLAS reads it transposed
    padded = None
    if not one_gemm(kg):
        padded = contiguous(pad_bottom_right(x, h, wd))  # (N, C, H, W)
    elif x_cm is None or x.shape[2:] != (h, wd):
        x_cm = channel_major(pad_bottom_right(x, h, wd), g)  # (G, Cig, N*P)
    parts = chunks(n, g * kg * p * x.dtype.itemsize, x)
    y = None if len(parts) == 1 else xp.empty((n, g * cog, out_h, out_w), dtype=x.dtype)
    bias = None if b is None else b.reshape(1, -1, 1, 1)
    outputs: list[Any] = []

    def one_chunk(i: int) -> None:
        n0, n1 = parts[i]
        m = n1 - n0
        col = xp.empty((g * cog, kh, kw, m, h, wd), dtype=x.dtype)  # (C_out, KH, KW, m, H, W)
        if padded is None and cig == 1:  # an outer product: ~3x faster as a broadcast multiply
            xp.multiply(wt, x_cm[:, :, n0 * p : n1 * p], out=col.reshape(g, kg, m * p))
        elif padded is None:  # (G, Kg, Cig) @ (G, Cig, m*P)
            xp.matmul(wt, x_cm[:, :, n0 * p : n1 * p], out=col.reshape(g, kg, m * p))
        else:  # per sample: (G, Kg, Cig) @ (m, G, Cig, P) into the (m, G, Kg, P) view of col
            img = padded[n0:n1].reshape(m, g, cig, p)
            xp.matmul(wt, img, out=col.reshape(g, kg, m, p).transpose(2, 0, 1, 3))
        if y is None:  # one chunk: its output is y
            outputs.append(kernels.col2im(col, out_hw, geom))  # (N, C_out, OH, OW)
            if bias is not None:
                outputs[0] += bias
        elif bias is None:
            kernels.col2im(col, out_hw, geom, out=y[n0:n1])  # (m, C_out, OH, OW), straight into y
        else:
            part = kernels.col2im(col, out_hw, geom)  # (m, C_out, OH, OW)
            xp.add(part, bias, out=y[n0:n1])  # the copy into y adds the bias on the way

    for_each_chunk(parts, one_chunk, x)  # one chunk's buffer per thread alive at a time
    return y if y is not None else outputs[0]


def conv2d_weight_grad(img: Any, gout: Any, geom: Geometry, col: Any = None, gout_cm: Any = None) -> Any:
    """gW = gout @ im2col(img)^T per group; ``col`` (G, Kg, N*P): img's columns, if kept."""
    n, c, h, wd = img.shape
    (kh, kw), g = geom.kernel, geom.groups
    oh, ow = geom.out_size(h, wd)
    kg, p = c // g * kh * kw, oh * ow
    acc = WeightGradSum(img.shape, gout, geom, gout_cm)
    if col is not None:
        acc.add(col, 0, 0, n)
        return acc.result()
    parts = chunks(n, c * kh * kw * p * img.dtype.itemsize, img)

    def one_chunk(i: int) -> None:
        n0, n1 = parts[i]
        cols = kernels.im2col(img[n0:n1], geom)  # (C, KH, KW, m, OH, OW)
        acc.add(cols.reshape(g, kg, (n1 - n0) * p), i, n0, n1)  # (G, Kg, m*P)

    for_each_chunk(parts, one_chunk, img)  # one chunk's buffer per thread alive at a time
    return acc.result()
