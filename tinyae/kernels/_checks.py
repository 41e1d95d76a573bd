"""Argument checks shared by every implementation of the kernels.

The kernels are called from deep inside conv2d and conv_transpose2d; a wrong
argument there would otherwise surface as a cryptic NumPy broadcast error or,
in C++, as an out-of-bounds read. So every implementation validates its
arguments up front and raises ``ValueError`` / ``TypeError`` with a message
that names the op, the argument and the offending value.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .geometry import Geometry, pair_arg

#: The only dtypes the kernels accept (the C++ and CUDA code is compiled for these).
SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_geometry(op: str, geometry: Any) -> None:
    if not isinstance(geometry, Geometry):
        raise TypeError(
            f"{op}: argument 'geometry' must be a tinyae.kernels.Geometry, got {type(geometry).__name__}"
        )


def check_array(op: str, name: str, a: Any, ndim: int) -> None:
    """Check that ``a`` is an ndarray of the given rank with a supported float dtype."""
    if not hasattr(a, "dtype") or not hasattr(a, "shape"):
        raise TypeError(f"{op}: argument '{name}' must be an ndarray, got {type(a).__name__}")
    if a.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{op}: argument '{name}' must be float32 or float64, got dtype {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{op}: argument '{name}' must be {ndim}-D, got shape {tuple(a.shape)}")


def check_im2col(x: Any, geometry: Geometry, op: str = "im2col") -> tuple[int, int]:
    """Validate im2col's arguments; return the window grid (OH, OW)."""
    check_array(op, "x", x, 4)
    check_geometry(op, geometry)
    oh, ow = geometry.out_size(x.shape[2], x.shape[3])
    if oh < 1 or ow < 1:
        raise ValueError(
            f"{op}: kernel {geometry.kernel} with dilation {geometry.dilation} does not fit the padded "
            f"input: x shape {tuple(x.shape)}, padding {geometry.padding} gives output size ({oh}, {ow})"
        )
    return oh, ow


def _check_operands(op: str, x: Any, name: str, other: Any, geometry: Geometry) -> None:
    """x and a second operand (weight or gy): both 4-D arrays of one supported float dtype."""
    check_array(op, "x", x, 4)
    check_array(op, name, other, 4)
    check_geometry(op, geometry)
    if other.dtype != x.dtype:
        raise TypeError(f"{op}: argument '{name}' must have dtype {x.dtype} like 'x', got {other.dtype}")


def _check_kernel(op: str, weight: Any, geometry: Geometry) -> None:
    if tuple(weight.shape[2:]) != geometry.kernel:
        raise ValueError(
            f"{op}: argument 'weight' has kernel size {tuple(weight.shape[2:])} but the geometry says "
            f"{geometry.kernel}"
        )


def _check_bias(op: str, bias: Any, x: Any, c_out: int) -> None:
    """A convolution's bias: None, or a vector (C_out,) of x's dtype."""
    if bias is None:
        return
    check_array(op, "bias", bias, 1)
    if bias.dtype != x.dtype or bias.shape != (c_out,):
        raise ValueError(
            f"{op}: argument 'bias' must be None or have shape ({c_out},) and dtype {x.dtype}, "
            f"got shape {tuple(bias.shape)} and dtype {bias.dtype}"
        )


def check_conv2d_direct(x: Any, weight: Any, bias: Any, geometry: Geometry) -> None:
    """Validate conv2d_direct's arguments."""
    op = "conv2d_direct"
    _check_operands(op, x, "weight", weight, geometry)
    _check_kernel(op, weight, geometry)
    groups, c, (c_out, cg) = geometry.groups, x.shape[1], weight.shape[:2]
    if c_out < 1 or c % groups or c_out % groups or cg * groups != c:
        raise ValueError(
            f"{op}: argument 'weight' must have shape (C_out, C/groups, KH, KW) with C_out a multiple of "
            f"groups={groups}, for x of shape {tuple(x.shape)}; got {tuple(weight.shape)}"
        )
    _check_bias(op, bias, x, c_out)
    check_im2col(x, geometry, op)  # the output size


def check_conv_transpose2d_direct(
    x: Any, weight: Any, bias: Any, output_size: Any, geometry: Geometry
) -> tuple[int, int]:
    """Validate conv_transpose2d_direct's arguments; return the output size (H_out, W_out)."""
    op = "conv_transpose2d_direct"
    _check_operands(op, x, "weight", weight, geometry)
    _check_kernel(op, weight, geometry)
    groups, c, (cw, cog) = geometry.groups, x.shape[1], weight.shape[:2]
    if cw != c or c % groups or cog < 1:
        raise ValueError(
            f"{op}: argument 'weight' must have shape (C, C_out/groups, KH, KW) with C a multiple of "
            f"groups={groups}, for x of shape {tuple(x.shape)}; got {tuple(weight.shape)}"
        )
    _check_bias(op, bias, x, cog * groups)
    out_h, out_w = pair_arg(op, "output_size", output_size, 1)
    if geometry.out_size(out_h, out_w) != tuple(x.shape[2:]):
        raise ValueError(
            f"{op}: argument 'x' has (H, W) = {tuple(x.shape[2:])} but the output size ({out_h}, {out_w}) "
            f"and geometry give {geometry.out_size(out_h, out_w)}"
        )
    return out_h, out_w


def check_conv2d_weight_grad_direct(x: Any, gy: Any, geometry: Geometry) -> None:
    """Validate conv2d_weight_grad_direct's arguments."""
    op = "conv2d_weight_grad_direct"
    _check_operands(op, x, "gy", gy, geometry)
    oh, ow = check_im2col(x, geometry, op)
    groups, (n, c) = geometry.groups, x.shape[:2]
    if gy.shape[0] != n or tuple(gy.shape[2:]) != (oh, ow) or gy.shape[1] % groups or c % groups:
        raise ValueError(
            f"{op}: argument 'gy' must have shape (N, C_out, OH, OW) = ({n}, C_out, {oh}, {ow}) with C and "
            f"C_out multiples of groups={groups}, for x of shape {tuple(x.shape)}; got {tuple(gy.shape)}"
        )


def check_col2im(col: Any, output_size: Any, geometry: Geometry) -> tuple[int, int]:
    """Validate col2im's arguments; return the image size (H, W).

    ``col`` (C, KH, KW, N, OH, OW) must be what im2col gives for an image of ``output_size``.
    """
    op = "col2im"
    check_array(op, "col", col, 6)
    check_geometry(op, geometry)
    h, w = pair_arg(op, "output_size", output_size, 1)
    oh, ow = geometry.out_size(h, w)
    if oh < 1 or ow < 1 or tuple(col.shape[1:3]) != geometry.kernel or tuple(col.shape[4:]) != (oh, ow):
        raise ValueError(
            f"{op}: argument 'col' has shape {tuple(col.shape)} = (C, KH, KW, N, OH, OW), but an image "
            f"of size ({h}, {w}) and {geometry} give (C, KH, KW, N, OH, OW) = "
            f"(C, {geometry.kernel[0]}, {geometry.kernel[1]}, N, {oh}, {ow})"
        )
    return h, w


def check_out(op: str, out: Any, shape: tuple[int, ...], src: Any, src_name: str) -> None:
    """Check an ``out=`` buffer: an ndarray of exactly ``shape``, ``src``'s dtype and array type,
    C-contiguous, writeable, on ``src``'s device and not overlapping ``src``.

    The kernels write every element of ``out`` with plain stores, so a buffer that is
    strided, read-only or aliases the input would give wrong results or write out of bounds.
    """
    if not hasattr(out, "dtype") or not hasattr(out, "shape") or not hasattr(out, "flags"):
        raise TypeError(f"{op}: argument 'out' must be an ndarray, got {type(out).__name__}")
    if type(out) is not type(src):  # e.g. a NumPy out for a CuPy input
        want, got = (f"{type(a).__module__.split('.')[0]}.{type(a).__name__}" for a in (src, out))
        raise TypeError(f"{op}: argument 'out' must be a {want} like '{src_name}', got {got}")
    if out.dtype != src.dtype:
        raise TypeError(
            f"{op}: argument 'out' must have dtype {src.dtype} like '{src_name}', got {out.dtype}"
        )
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{op}: argument 'out' must have shape {tuple(shape)}, got {tuple(out.shape)}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{op}: argument 'out' must be C-contiguous (shape {tuple(out.shape)})")
    if not getattr(out.flags, "writeable", True):  # CuPy arrays have no read-only flag
        raise ValueError(f"{op}: argument 'out' is read-only")
    out_dev, src_dev = getattr(out, "device", None), getattr(src, "device", None)
    if out_dev != src_dev:
        raise ValueError(f"{op}: argument 'out' is on device {out_dev} but '{src_name}' is on {src_dev}")
    if _may_share_memory(out, src):
        raise ValueError(f"{op}: argument 'out' overlaps the memory of '{src_name}'")


def _may_share_memory(a: Any, b: Any) -> bool:
    """Bounds-only overlap test (cheap; conservative), for NumPy and CuPy arrays alike."""
    if isinstance(a, np.ndarray):
        return bool(np.may_share_memory(a, b))
    import cupy  # only reached with CuPy arrays

    return bool(cupy.may_share_memory(a, b))


def check_batch_norm(op: str, x: Any, gy: Any = None, **vectors: Any) -> None:
    """x (N, C, L) float; gy (if given) x's shape and dtype; each vector None or (C,) of x's dtype."""
    check_array(op, "x", x, 3)
    if gy is not None:
        check_array(op, "gy", gy, 3)
        if gy.shape != x.shape or gy.dtype != x.dtype:
            raise ValueError(
                f"{op}: argument 'gy' must have the shape and dtype of 'x' {tuple(x.shape)} {x.dtype}, "
                f"got {tuple(gy.shape)} {gy.dtype}"
            )
    c = x.shape[1]
    for name, v in vectors.items():
        if v is None:
            continue
        check_array(op, name, v, 1)
        if v.shape != (c,) or v.dtype != x.dtype:
            raise ValueError(
                f"{op}: argument '{name}' must have shape ({c},) and dtype {x.dtype} for x of shape "
                f"{tuple(x.shape)}, got {tuple(v.shape)} {v.dtype}"
            )


def check_adam(param: Any, grad: Any, states: dict[str, Any]) -> None:
    """param, grad and each state array (None: absent) of one shape, float dtype and array type;
    param and the states, which are updated in place, writeable; no two of them sharing memory."""
    op = "adam_step"
    given = {"param": param, "grad": grad, **{k: v for k, v in states.items() if v is not None}}
    for name, a in given.items():
        if not hasattr(a, "dtype") or not hasattr(a, "shape") or not hasattr(a, "flags"):
            raise TypeError(f"{op}: argument '{name}' must be an ndarray, got {type(a).__name__}")
        if a.dtype not in SUPPORTED_DTYPES:
            raise TypeError(f"{op}: argument '{name}' must be float32 or float64, got dtype {a.dtype}")
        if a.dtype != param.dtype or type(a) is not type(param):
            raise TypeError(
                f"{op}: argument '{name}' must have the dtype and array type of 'param' "
                f"({param.dtype} {type(param).__name__}), got {a.dtype} {type(a).__name__}"
            )
        if a.shape != param.shape:
            raise ValueError(
                f"{op}: argument '{name}' must have the shape of 'param' {tuple(param.shape)}, "
                f"got {tuple(a.shape)}"
            )
        if name != "grad" and not getattr(a.flags, "writeable", True):  # CuPy has no read-only flag
            raise ValueError(f"{op}: argument '{name}' is read-only")
    names = list(given)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            if _may_share_memory(given[first], given[second]):
                raise ValueError(f"{op}: arguments '{first}' and '{second}' share memory")
