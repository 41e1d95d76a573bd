"""The convolution planner: which algorithm computes each convolution, behind one call each.

:mod:`tinyae.nn.conv` says *what* a convolution and its gradients are; this module decides *how*
to compute them on arrays, and nothing here changes a result beyond float rounding:

* ``conv2d``, ``conv_transpose2d``, ``conv2d_weight_grad``: one op each;
* ``conv2d_backward``, ``conv_transpose2d_backward``: both gradients of a layer at once, sharing
  the work they have in common (used when no graph of the gradient is recorded).

The algorithms:

* **Direct kernels** (:func:`tinyae.kernels.conv2d_direct` and its two siblings): on a CPU with
  AVX-512F, float32, the sums are computed in registers straight from x, with no column buffer,
  when the layer is big enough to fill their 14 x 32 register tiles (``DIRECT_MIN_COG``,
  ``DIRECT_MIN_KG``).
* **im2col + GEMM** (:mod:`tinyae.kernels.conv_gemm`): everything else, in cache-sized chunks on
  tinyae's threads. A forward whose columns are small enough keeps them for the weight gradient
  (``KEEP_COL_RATIO``).
* **The flipped kernel**: at stride 1 a transposed conv is a plain conv of x with the kernel turned
  by 180 degrees and its channel axes swapped, padded by DH*(KH-1) - PH. That form unfolds x (C
  rows per tap) rather than forming W^T @ x (C_out rows per tap), so it is used when the
  transposed conv has fewer input than output channels (a decoder's last layer's input gradient).

Why each threshold is where it is, with the measurements: docs/performance.md.
"""

from __future__ import annotations

from typing import Any

from tinyae import kernels
from tinyae.backend import get_array_module
from tinyae.kernels import conv_gemm
from tinyae.kernels.conv_gemm import (
    channel_major,
    get_workspace_limit,
    one_gemm,
    set_workspace_limit,
)
from tinyae.kernels.geometry import Geometry

__all__ = [
    "Geometry",
    "conv2d",
    "conv_transpose2d",
    "conv2d_weight_grad",
    "conv2d_backward",
    "conv_transpose2d_backward",
    "channel_sum",
    "set_workspace_limit",
    "get_workspace_limit",
]

# ------------------------------------------------------------------ the choices
# Direct kernels need 16 output channels per group (one fills a single vector lane of 16) and a
# dot product of 32 terms; below that im2col + BLAS is faster (docs/performance.md).
DIRECT_MIN_COG = 16
DIRECT_MIN_KG = 32

# A forward keeps its columns for the weight gradient only when they are at most this many times
# the input, which the backward keeps anyway (a 1x1 kernel, or stride >= kernel); a 3x3 stride-1
# conv's are 9x its input, cheaper to recompute than to hold through every later layer.
KEEP_COL_RATIO = 2.0


def use_direct(x: Any, geom: Geometry, cog: int, kg: int) -> bool:
    """Whether a conv forward (Cog outputs per group, Kg terms per sum) runs the direct kernel."""
    if cog < DIRECT_MIN_COG or kg < DIRECT_MIN_KG:
        return False
    return kernels.conv2d_direct_runs_cpp(x, geom)


def use_direct_transpose(x: Any, w: Any, geom: Geometry, cog: int) -> bool:
    """The same for a transposed conv: its biggest output phase (oy mod SH, ox mod SW) sums
    Cig * ceil(KH/SH) * ceil(KW/SW) terms."""
    (sh, sw), (kh, kw) = geom.stride, geom.kernel
    if cog < DIRECT_MIN_COG or w.shape[0] // geom.groups * -(-kh // sh) * -(-kw // sw) < DIRECT_MIN_KG:
        return False
    return kernels.conv_transpose2d_direct_runs_cpp(x, geom)


def use_direct_weight_grad(img: Any, gout: Any, geom: Geometry) -> bool:
    """The same for a weight gradient (tiles of 14 taps x 32 output channels of gW)."""
    taps = img.shape[1] // geom.groups * geom.kernel[0] * geom.kernel[1]
    if gout.shape[1] // geom.groups < DIRECT_MIN_COG or taps < DIRECT_MIN_KG:
        return False
    if tuple(gout.shape[2:]) != geom.out_size(*img.shape[2:]):  # e.g. a cropped gradient
        return False
    return kernels.conv2d_weight_grad_direct_runs_cpp(img, gout, geom)


def columns_worth_keeping(x: Any, geom: Geometry) -> bool:
    """Whether a conv forward keeps its column buffer for the weight gradient."""
    n, c, h, wd = x.shape
    oh, ow = geom.out_size(h, wd)
    return c * geom.kernel[0] * geom.kernel[1] * n * oh * ow <= KEEP_COL_RATIO * x.size


def flip_possible(geom: Geometry, w_shape: tuple[int, ...]) -> bool:
    """Whether a transposed conv with weight (C, Cog, KH, KW) equals a conv with the flipped kernel:
    stride 1 and a padding DH*(KH-1) - PH that is not negative."""
    kh, kw = geom.kernel
    (dh, dw), (ph, pw) = geom.dilation, geom.padding
    return geom.stride == (1, 1) and ph <= dh * (kh - 1) and pw <= dw * (kw - 1)


def as_flipped_conv(geom: Geometry, w_shape: tuple[int, ...]) -> bool:
    """Whether a transposed conv runs as a flipped-kernel conv: possible, and fewer rows per tap
    (C/G < Cog). With equal channel counts neither form wins consistently, so it stays."""
    c, cog = w_shape[:2]
    return flip_possible(geom, w_shape) and c // geom.groups < cog


def flip_kernel(w: Any, groups: int) -> Any:
    """W (C, Cog, KH, KW) -> W' (G*Cog, C/G, KH, KW): per group the channel axes swapped and the
    kernel turned by 180 degrees. Its own inverse."""
    c, cog, kh, kw = w.shape
    t = w.reshape(groups, c // groups, cog, kh, kw).transpose(0, 2, 1, 3, 4)  # (G, Cog, C/G, KH, KW)
    t = t[..., ::-1, ::-1]  # the kernel turned by 180 degrees
    return get_array_module(w).ascontiguousarray(t).reshape(groups * cog, c // groups, kh, kw)


def _flipped(
    geom: Geometry, w_shape: tuple[int, ...], x_hw: tuple[int, int], out_hw: tuple[int, int], w: Any
) -> tuple:
    """The conv form of a stride-1 transposed conv: (W' or None when w is None, its geometry, the
    zero rows and columns to add below and right of x for output_padding, which needs DH > 1)."""
    (dh, dw), (ph, pw), (kh, kw) = geom.dilation, geom.padding, geom.kernel
    conv_geom = geom.replace(stride=(1, 1), padding=(dh * (kh - 1) - ph, dw * (kw - 1) - pw))
    extra = (out_hw[0] - (x_hw[0] + dh * (kh - 1) - 2 * ph), out_hw[1] - (x_hw[1] + dw * (kw - 1) - 2 * pw))
    return (None if w is None else flip_kernel(w, geom.groups)), conv_geom, extra


def _pad(x: Any, extra: tuple[int, int]) -> Any:
    if x is None or extra == (0, 0):
        return x
    return get_array_module(x).pad(x, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))


def _crop(a: Any, hw: tuple[int, int]) -> Any:
    """a[:, :, :H, :W]: a conv's natural output cut to a transposed conv's input size (only
    smaller when output_padding >= stride)."""
    return a if tuple(a.shape[2:]) == tuple(hw) else a[:, :, : hw[0], : hw[1]]


# ------------------------------------------------------------------ one op each
def conv2d(x: Any, w: Any, b: Any, geom: Geometry, keep_columns: bool = False) -> tuple[Any, Any]:
    """y = conv2d(x, W) + b -> (y, col): ``col`` the column buffer, kept when asked and small
    (:func:`columns_worth_keeping`), for :func:`conv2d_weight_grad`; else None."""
    c_out, cg, kh, kw = w.shape
    cog, kg = c_out // geom.groups, cg * kh * kw
    keep = keep_columns and columns_worth_keeping(x, geom)
    if not keep and use_direct(x, geom, cog, kg):
        return kernels.conv2d_direct(x, w, b, geom), None
    return conv_gemm.conv2d(x, w, b, geom, keep_columns=keep)


def conv_transpose2d(
    x: Any, w: Any, b: Any, geom: Geometry, out_hw: tuple[int, int], x_cm: Any = None
) -> Any:
    """y = col2im(W^T @ x) + b with the output size given. ``x_cm``: x channel-major, if at hand."""
    out_hw = (int(out_hw[0]), int(out_hw[1]))
    if as_flipped_conv(geom, w.shape):
        wf, conv_geom, extra = _flipped(geom, w.shape, x.shape[2:], out_hw, w)
        return conv2d(_pad(x, extra), wf, b, conv_geom)[0]
    if x.shape[2:] == geom.out_size(*out_hw) and use_direct_transpose(x, w, geom, w.shape[1]):
        return kernels.conv_transpose2d_direct(x, w, b, out_hw, geom)
    return conv_gemm.conv_transpose2d(x, w, b, geom, out_hw, x_cm=x_cm)


def conv2d_weight_grad(img: Any, gout: Any, geom: Geometry, col: Any = None, gout_cm: Any = None) -> Any:
    """gW (C_gout, C_img/G, KH, KW) = gout @ im2col(img)^T per group. ``col``: img's columns and
    ``gout_cm``: gout channel-major, if the caller has them."""
    if col is None and use_direct_weight_grad(img, gout, geom):
        return kernels.conv2d_weight_grad_direct(img, gout, geom)
    return conv_gemm.conv2d_weight_grad(img, gout, geom, col=col, gout_cm=gout_cm)


def channel_sum(gy: Any) -> Any:
    """The bias gradient: gy (N, C, OH, OW) summed over (N, OH, OW). ``einsum`` over the (N, C, P)
    view reads gy once, ~3x faster than ``sum`` over the axes (0, 2, 3)."""
    n, c, h, w = gy.shape
    return get_array_module(gy).einsum("ncp->c", gy.reshape(n, c, h * w))


# ------------------------------------------------------------------ both gradients at once
def conv2d_backward(
    gy: Any,
    x: Any,
    w: Any,
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    geom: Geometry,
    col: Any = None,
) -> tuple[Any, Any]:
    """(gx, gW) of y = conv2d(x, W): gx = conv_transpose2d(gy, W), gW = conv2d_weight_grad(x, gy).

    ``w`` is None when gx is not needed, ``x`` when gW is not (what the forward saved). Both
    multiply gy in the channel-major layout: it is transposed once for both (unless the input
    gradient runs as a flipped conv, which unfolds gy, or both run as direct kernels)."""
    need_x, need_w = w is not None, x is not None
    kg = w_shape[1] * w_shape[2] * w_shape[3]
    share = one_gemm(kg) and need_x and need_w and not as_flipped_conv(geom, w_shape)
    if share and use_direct_transpose(gy, w, geom, w_shape[1]):
        share = not use_direct_weight_grad(x, gy, geom)
    gy_cm = channel_major(gy, geom.groups) if share else None
    gx = conv_transpose2d(gy, w, None, geom, x_shape[2:], x_cm=gy_cm) if need_x else None
    gw = conv2d_weight_grad(x, gy, geom, col=col, gout_cm=gy_cm) if need_w else None
    return gx, gw


def conv_transpose2d_backward(
    gy: Any, x: Any, w: Any, x_shape: tuple[int, ...], w_shape: tuple[int, ...], geom: Geometry
) -> tuple[Any, Any]:
    """(gx, gW) of y = conv_transpose2d(x, W): gx = conv2d(gy, W), gW = conv2d_weight_grad(gy, x).

    ``w`` is None when gx is not needed, ``x`` when gW is not. The input gradient unfolds gy; the
    weight gradient needs the same columns, so they are summed into it chunk by chunk as they are
    made (unless both run as direct kernels). A flipped-kernel transposed conv takes the gradients
    of its conv form."""
    need_x, need_w = w is not None, x is not None
    x_hw = tuple(x_shape[2:])
    if as_flipped_conv(geom, w_shape):
        wf, conv_geom, extra = _flipped(geom, w_shape, x_hw, gy.shape[2:], w)
        xf_shape = (*x_shape[:2], x_hw[0] + extra[0], x_hw[1] + extra[1])
        wf_shape = (w_shape[1] * geom.groups, w_shape[0] // geom.groups, *w_shape[2:])
        gxf, gwf = conv2d_backward(gy, _pad(x, extra) if need_w else None, wf, xf_shape, wf_shape, conv_geom)
        gx = None if gxf is None else _crop(gxf, x_hw)
        return gx, (None if gwf is None else flip_kernel(gwf, geom.groups))
    c, cog, kh, kw = w_shape
    direct_x = use_direct(gy, geom, c // geom.groups, cog * kh * kw)
    both_direct = need_x and need_w and direct_x and use_direct_weight_grad(gy, x, geom)
    gx = gw = None
    if need_x:
        acc = None
        if need_w and not both_direct:
            acc = conv_gemm.WeightGradSum(gy.shape, x, geom, None)
        if acc is None:
            y, _ = conv2d(gy, w, None, geom)  # the planner's choice, direct where it pays
        else:
            y, _ = conv_gemm.conv2d(gy, w, None, geom, weight_grad=acc)
        gx = _crop(y, x_hw)
        if acc is not None:
            gw = acc.result()
    if need_w and gw is None:
        gw = conv2d_weight_grad(gy, x, geom)
    return gx, gw
