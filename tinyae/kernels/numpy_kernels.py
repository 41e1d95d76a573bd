"""im2col, col2im, a convolution's forward, batch norm's passes and Adam's update in pure NumPy: the
executable specification.

These are the reference the C++ and CUDA kernels are tested against, and the
fallback when the compiled extension is missing (or ``TINYAE_KERNELS=numpy``).
They favour clarity over speed but avoid Python loops over pixels. Their arguments are checked
once, by the public functions of :mod:`tinyae.kernels` that call them.

Notation (used in every docstring and shape comment of ``tinyae.kernels``):

=========  ==========================================================
N, C       batch size, channels
H, W       input height and width
KH, KW     kernel height and width
SH, SW     stride
PH, PW     zero padding added on each side
DH, DW     dilation (spacing between kernel taps)
OH, OW     output size: ``OH = (H + 2*PH - DH*(KH-1) - 1) // SH + 1``
=========  ==========================================================

Column layout: ``col[c, i, j, n, oh, ow] = x_padded[n, c, oh*SH + i*DH, ow*SW + j*DW]``,
shape ``(C, KH, KW, N, OH, OW)``, C-contiguous. Seen as a ``(C*KH*KW, N*OH*OW)``
matrix it turns a convolution into one GEMM:
``W.reshape(C_out, C*KH*KW) @ col.reshape(C*KH*KW, N*OH*OW)``.

A convolution's forward (``conv2d_direct``; weight (C_out, C/G, KH, KW), G groups, b (C_out,))::

    y[n, o] = b[o] + W_g[o] @ col_g[:, n]     col_g = im2col of the C/G input channels of group g

and a transposed convolution's (``conv_transpose2d_direct``; weight (C, C_out/G, KH, KW)), its adjoint::

    y = b + col2im(W_g^T @ x_g)               one product per group, then the windows folded back

and the weight gradient of a convolution (``conv2d_weight_grad_direct``) for an upstream gradient gy::

    gW_g = gy_g @ col_g^T                     (Cog, N*P) @ (N*P, Kg), reshaped to (Cog, C/G, KH, KW)

Batch norm (training mode, batch statistics) sees its input as x (N, C, L), L = H*W (1 for an
(N, C) input); each channel's statistics are over its M = N*L values::

    mean = sum(x) / M     var = sum((x - mean)^2) / M     inv_std = 1 / sqrt(var + eps)
    y = (x - mean) * inv_std * w + b
    gb = sum(gy)          gw = sum(gy * x_hat),  x_hat = (x - mean) * inv_std
    gx = inv_std * w * (gy - gb / M - x_hat * gw / M)

Adam's update of one parameter p with gradient g (step k; the optimizer computes
``step_size = lr / (1 - b1^k)`` and ``bias2_sqrt = sqrt(1 - b2^k)``)::

    d = g + wd * p   (wd * p - g when maximizing)
    m = b1 * m + (1 - b1) * d          v = b2 * v + (1 - b2) * d^2
    v_max = max(v_max, v), used as v   (amsgrad)
    p = p - step_size * m / (sqrt(v) / bias2_sqrt + eps)

``out=``: im2col and col2im can write into a caller's buffer instead of allocating one (a
conv layer can reuse one column buffer across chunks and steps). It must have exactly the
result's shape and dtype and be C-contiguous; it is *overwritten*, never accumulated into
(col2im with ``out=`` gives the same values as without), and it is returned.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import get_array_module
from ._checks import _may_share_memory
from .geometry import Geometry


def im2col(x: np.ndarray, geometry: Geometry, out: np.ndarray | None = None) -> np.ndarray:
    """Unfold the sliding windows of ``x`` (N, C, H, W) into columns (C, KH, KW, N, OH, OW).

    With ``out`` (C, KH, KW, N, OH, OW), the columns are written there and ``out`` is returned.
    """
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (
        geometry.kernel,
        geometry.stride,
        geometry.padding,
        geometry.dilation,
    )
    n, c, h, w = x.shape
    oh, ow = geometry.out_size(h, w)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # (N, C, H+2PH, W+2PW)
    s_n, s_c, s_h, s_w = xp.strides
    # A read-only view whose element [c, i, j, n, oh, ow] is xp[n, c, oh*SH + i*DH, ow*SW + j*DW]:
    # stepping i moves DH rows, stepping oh moves SH rows (same for columns). No data is copied yet.
    windows = np.lib.stride_tricks.as_strided(
        xp,
        shape=(c, kh, kw, n, oh, ow),  # (C, KH, KW, N, OH, OW)
        strides=(s_c, s_h * dh, s_w * dw, s_n, s_h * sh, s_w * sw),
        writeable=False,
    )
    if out is None:
        return np.ascontiguousarray(windows)  # (C, KH, KW, N, OH, OW): the one real copy
    np.copyto(out, windows)  # the same one copy, into the caller's buffer
    return out


def col2im(
    col: np.ndarray, output_size: tuple[int, int], geometry: Geometry, out: np.ndarray | None = None
) -> np.ndarray:
    """Fold columns (C, KH, KW, N, OH, OW) back into an image (N, C, H, W), (H, W) = ``output_size``,
    summing overlaps.

    This is the adjoint (transpose) of :func:`im2col`: every column entry is added
    to the input pixel it was copied from; entries that came from padding are dropped.
    With ``out`` (N, C, H, W), the image *overwrites* ``out`` (no accumulation onto what
    was there) and ``out`` is returned.
    """
    (sh, sw), (ph, pw), (dh, dw) = geometry.stride, geometry.padding, geometry.dilation
    h, w = output_size
    c, kh, kw, n, oh, ow = col.shape
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=col.dtype)  # (N, C, H+2PH, W+2PW)
    # One strided slice per kernel tap (i, j): tap (i, j) of window (oh, ow) reads padded pixel
    # (oh*SH + i*DH, ow*SW + j*DW). Within one tap the pixels are distinct, so `+=` on the slice is
    # safe; overlaps between windows come from different taps and accumulate across iterations.
    for i in range(kh):
        rows = slice(i * dh, i * dh + sh * (oh - 1) + 1, sh)
        for j in range(kw):
            cols = slice(j * dw, j * dw + sw * (ow - 1) + 1, sw)
            xp[:, :, rows, cols] += col[:, i, j].transpose(1, 0, 2, 3)  # (C, N, OH, OW) -> (N, C, OH, OW)
    inner = xp[:, :, ph : ph + h, pw : pw + w]  # (N, C, H, W): drop the padding
    if out is None:
        return np.ascontiguousarray(inner)
    np.copyto(out, inner)
    return out


def conv2d_direct(x: Any, weight: Any, bias: Any, geometry: Geometry) -> Any:
    """y = conv2d(x, weight) + bias, (N, C_out, OH, OW): im2col, then one product per group.

    The spec of the C++ kernel, which computes the same sums without the column buffer.
    """
    xp, g = get_array_module(x), geometry.groups
    n = x.shape[0]
    c_out, cg, kh, kw = weight.shape
    col = _unfold(x, geometry)  # (C, KH, KW, N, OH, OW)
    oh, ow = col.shape[4:]
    col = col.reshape(g, cg * kh * kw, n, oh * ow)  # (G, Kg, N, P)
    wm = weight.reshape(g, c_out // g, cg * kh * kw)  # (G, Cog, Kg)
    y = xp.einsum("gok,gknp->ngop", wm, col)  # (N, G, Cog, P)
    if bias is not None:
        y = y + bias.reshape(g, c_out // g, 1)
    return xp.ascontiguousarray(y).reshape(n, c_out, oh, ow)


def conv_transpose2d_direct(
    x: Any, weight: Any, bias: Any, output_size: tuple[int, int], geometry: Geometry
) -> Any:
    """y = conv_transpose2d(x, weight) + bias, (N, C_out, *output_size): W^T @ x per group, then col2im.

    x (N, C, H, W) must have the conv size of ``output_size``. The spec of the C++ kernel.
    """
    xp, g = get_array_module(x), geometry.groups
    n, c, h, w = x.shape
    cog, kh, kw = weight.shape[1:]
    xg = x.reshape(n, g, c // g, h * w)  # (N, G, Cg, H*W)
    wg = weight.reshape(g, c // g, cog * kh * kw)  # (G, Cg, Cog*KH*KW)
    col = xp.einsum("gck,ngcp->gknp", wg, xg)  # (G, Cog*KH*KW, N, H*W)
    col = col.reshape(g * cog, kh, kw, n, h, w)  # (C_out, KH, KW, N, H, W)
    y = _fold(xp.ascontiguousarray(col), output_size, geometry)  # (N, C_out, *output_size)
    return y if bias is None else y + bias.reshape(1, -1, 1, 1)


def conv2d_weight_grad_direct(x: Any, gy: Any, geometry: Geometry) -> Any:
    """gW (C_out, C/G, KH, KW) of y = conv2d(x, W) for gy (N, C_out, OH, OW): im2col, then gy @ col^T.

    The spec of the C++ kernel, which sums the same products without the column buffer.
    """
    xp, g, (kh, kw) = get_array_module(x), geometry.groups, geometry.kernel
    n, c = x.shape[:2]
    c_out = gy.shape[1]
    p = gy.shape[2] * gy.shape[3]  # spelled out: -1 cannot be inferred for an empty batch
    col = _unfold(x, geometry).reshape(g, c // g * kh * kw, n, p)  # (G, Kg, N, P)
    gyg = gy.reshape(n, g, c_out // g, p)  # (N, G, Cog, P)
    gw = xp.einsum("ngop,gknp->gok", gyg, col)  # (G, Cog, Kg)
    return xp.ascontiguousarray(gw).reshape(c_out, c // g, kh, kw)


def _unfold(x: Any, geometry: Geometry) -> Any:
    if get_array_module(x) is np:
        return im2col(x, geometry)
    from . import cuda  # CuPy arrays: the CUDA im2col (imported on first GPU use only)

    return cuda.im2col(x, geometry)


def _fold(col: Any, output_size: tuple[int, int], geometry: Geometry) -> Any:
    if get_array_module(col) is np:
        return col2im(col, output_size, geometry)
    from . import cuda

    return cuda.col2im(col, output_size, geometry)


def batch_norm_forward(x: Any, weight: Any, bias: Any, eps: float) -> tuple[Any, Any, Any, Any]:
    """Batch norm of x (N, C, L): returns (y (N, C, L), mean, var, inv_std), the vectors (C,).

    ``weight`` and ``bias`` (C,) may be None (w = 1, b = 0). ``var`` is the biased variance.
    NumPy or CuPy arrays (the GPU runs this twin).
    """
    xp = get_array_module(x)
    m = x.shape[0] * x.shape[2]  # M
    mean = xp.einsum("ncl->c", x) / m  # (C,); einsum reads x once, with no temporary
    y = x - mean[:, None]  # (N, C, L): x - mean, turned into y in place below
    var = xp.einsum("ncl,ncl->c", y, y) / m
    inv_std = 1 / xp.sqrt(var + x.dtype.type(eps))
    y *= (inv_std if weight is None else inv_std * weight)[:, None]
    if bias is not None:
        y += bias[:, None]
    return y, mean, var, inv_std


def batch_norm_backward(
    x: Any, gy: Any, mean: Any, inv_std: Any, weight: Any, need_gx: bool = True
) -> tuple[Any, Any, Any]:
    """Gradients of :func:`batch_norm_forward` for the upstream gradient gy (N, C, L):
    returns (gx (N, C, L) or None unless ``need_gx``, gw (C,), gb (C,))."""
    xp = get_array_module(x)
    m = x.shape[0] * x.shape[2]  # M
    x_hat = x - mean[:, None]  # (N, C, L); becomes x_hat, then the bracket of gx, in place
    x_hat *= inv_std[:, None]
    gb = xp.einsum("ncl->c", gy)
    gw = xp.einsum("ncl,ncl->c", gy, x_hat)
    if not need_gx:
        return None, gw, gb
    t = x_hat
    t *= (gw / m)[:, None]
    t += (gb / m)[:, None]  # (gb + x_hat * gw) / M
    gx = xp.subtract(gy, t, out=t)
    gx *= (inv_std if weight is None else inv_std * weight)[:, None]
    return gx, gw, gb


def adam_step(
    param: Any,
    grad: Any,
    exp_avg: Any,
    exp_avg_sq: Any,
    max_exp_avg_sq: Any,
    beta1: float,
    beta2: float,
    step_size: float,
    bias2_sqrt: float,
    eps: float,
    weight_decay: float = 0.0,
    maximize: bool = False,
    work: tuple[Any, Any] | None = None,
) -> None:
    """Adam's update of one parameter, in place: param, exp_avg (m), exp_avg_sq (v) and, unless
    None, max_exp_avg_sq (v_max). One array operation at a time, each in the arrays' dtype (the
    Python scalars are rounded to it, as NumPy does); the C++ kernel repeats them in this order,
    but flushes subnormal values (below 1.2e-38 in float32) to zero, which x86 CPUs handle ~100x
    slower. NumPy or CuPy arrays (the GPU runs this twin).

    ``work``: two arrays of param's shape and dtype for the temporaries (allocated when None),
    sharing no memory with the others, so that an optimizer can reuse them from step to step.
    """
    xp = get_array_module(param)
    if work is None:
        work = (xp.empty_like(param), xp.empty_like(param))
    elif len(work) != 2 or any(w.shape != param.shape or w.dtype != param.dtype for w in work):
        raise ValueError(f"adam_step: argument 'work' must be two arrays of shape {tuple(param.shape)} and "
                         f"dtype {param.dtype}")  # fmt: skip
    else:
        given = [a for a in (param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq) if a is not None]
        pairs = [(w, a) for w in work for a in given] + [(work[0], work[1])]
        if any(_may_share_memory(w, a) for w, a in pairs):
            raise ValueError("adam_step: argument 'work' shares memory with another argument")
    d, tmp = grad, work[1]
    if weight_decay != 0:
        d = xp.multiply(param, weight_decay, out=work[0])
        (xp.subtract if maximize else xp.add)(d, grad, out=d)
    elif maximize:
        d = xp.negative(grad, out=work[0])
    exp_avg *= beta1  # m <- b1 m + (1 - b1) d
    xp.multiply(d, 1 - beta1, out=tmp)
    exp_avg += tmp
    exp_avg_sq *= beta2  # v <- b2 v + (1 - b2) d^2
    xp.multiply(d, d, out=tmp)
    tmp *= 1 - beta2
    exp_avg_sq += tmp
    v = exp_avg_sq
    if max_exp_avg_sq is not None:
        v = xp.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
    xp.sqrt(v, out=tmp)  # denominator sqrt(v) / sqrt(1 - b2^k) + eps
    tmp /= bias2_sqrt
    tmp += eps
    xp.divide(exp_avg, tmp, out=tmp)
    tmp *= step_size
    param -= tmp
