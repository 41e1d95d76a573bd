"""Argument checks shared by every implementation of the kernels.

The kernels are called from deep inside conv2d and conv_transpose2d; a wrong
argument there would otherwise surface as a cryptic NumPy broadcast error or,
in C++, as an out-of-bounds read. So every implementation validates its
arguments up front and raises ``ValueError`` / ``TypeError`` with a message
that names the op, the argument and the offending value.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

#: The only dtypes the kernels accept (the C++ and CUDA code is compiled for these).
SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    """Output length of a sliding window: ``(size + 2p - d(k-1) - 1) // s + 1``."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def check_int(op: str, name: str, value: Any, minimum: int) -> int:
    """Return ``value`` as an int, raising if it is not an integer >= ``minimum``."""
    if isinstance(value, (bool, np.bool_)):  # True is an int in Python, but never a kernel size
        raise TypeError(f"{op}: argument '{name}' must be an int, got bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{op}: argument '{name}' must be an int, got {type(value).__name__}") from None
    if value < minimum:
        what = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{op}: argument '{name}' must be {what}, got {value}")
    return value


def check_array(op: str, name: str, a: Any, ndim: int) -> None:
    """Check that ``a`` is an ndarray of the given rank with a supported float dtype."""
    if not hasattr(a, "dtype") or not hasattr(a, "shape"):
        raise TypeError(f"{op}: argument '{name}' must be an ndarray, got {type(a).__name__}")
    if a.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{op}: argument '{name}' must be float32 or float64, got dtype {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{op}: argument '{name}' must be {ndim}-D, got shape {tuple(a.shape)}")


def check_im2col(
    x: Any, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, dh: int, dw: int
) -> tuple[int, ...]:
    """Validate im2col's arguments; return ``(kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)`` as ints."""
    op = "im2col"
    check_array(op, "x", x, 4)
    kh, kw = check_int(op, "kh", kh, 1), check_int(op, "kw", kw, 1)
    sh, sw = check_int(op, "sh", sh, 1), check_int(op, "sw", sw, 1)
    ph, pw = check_int(op, "ph", ph, 0), check_int(op, "pw", pw, 0)
    dh, dw = check_int(op, "dh", dh, 1), check_int(op, "dw", dw, 1)
    h, w = x.shape[2], x.shape[3]
    oh, ow = out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw)
    if oh < 1 or ow < 1:
        raise ValueError(
            f"{op}: kernel ({kh}, {kw}) with dilation ({dh}, {dw}) does not fit the padded input: "
            f"x shape {tuple(x.shape)}, padding ({ph}, {pw}) gives output size ({oh}, {ow})"
        )
    return kh, kw, sh, sw, ph, pw, dh, dw, oh, ow


def _check_operands(op: str, x: Any, name: str, other: Any) -> None:
    """x and a second operand (weight or gy): both 4-D arrays of one supported float dtype."""
    check_array(op, "x", x, 4)
    check_array(op, name, other, 4)
    if other.dtype != x.dtype:
        raise TypeError(f"{op}: argument '{name}' must have dtype {x.dtype} like 'x', got {other.dtype}")


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


def check_conv2d_direct(
    x: Any, weight: Any, bias: Any, sh: int, sw: int, ph: int, pw: int, dh: int, dw: int, groups: int
) -> tuple[int, ...]:
    """Validate conv2d_direct's arguments; return ``(sh, sw, ph, pw, dh, dw, groups)`` as ints."""
    op = "conv2d_direct"
    _check_operands(op, x, "weight", weight)
    groups = check_int(op, "groups", groups, 1)
    c, (c_out, cg, kh, kw) = x.shape[1], weight.shape
    if c_out < 1 or c % groups or c_out % groups or cg * groups != c:
        raise ValueError(
            f"{op}: argument 'weight' must have shape (C_out, C/groups, KH, KW) with C_out a multiple of "
            f"groups={groups}, for x of shape {tuple(x.shape)}; got {tuple(weight.shape)}"
        )
    _check_bias(op, bias, x, c_out)
    check_im2col(x, kh, kw, sh, sw, ph, pw, dh, dw)  # the strides, padding, dilation and output size
    return tuple(operator.index(v) for v in (sh, sw, ph, pw, dh, dw)) + (groups,)


def check_conv_transpose2d_direct(
    x: Any,
    weight: Any,
    bias: Any,
    out_h: int,
    out_w: int,
    sh: int,
    sw: int,
    ph: int,
    pw: int,
    dh: int,
    dw: int,
    groups: int,
) -> tuple[int, ...]:
    """Validate conv_transpose2d_direct's arguments; return (out_h, out_w, sh, sw, ph, pw, dh, dw, groups)."""
    op = "conv_transpose2d_direct"
    _check_operands(op, x, "weight", weight)
    groups = check_int(op, "groups", groups, 1)
    c, (cw, cog, kh, kw) = x.shape[1], weight.shape
    if cw != c or c % groups or cog < 1 or kh < 1 or kw < 1:
        raise ValueError(
            f"{op}: argument 'weight' must have shape (C, C_out/groups, KH, KW) with C a multiple of "
            f"groups={groups}, for x of shape {tuple(x.shape)}; got {tuple(weight.shape)}"
        )
    _check_bias(op, bias, x, cog * groups)
    out_h, out_w = check_int(op, "out_h", out_h, 1), check_int(op, "out_w", out_w, 1)
    sh, sw = check_int(op, "sh", sh, 1), check_int(op, "sw", sw, 1)
    ph, pw = check_int(op, "ph", ph, 0), check_int(op, "pw", pw, 0)
    dh, dw = check_int(op, "dh", dh, 1), check_int(op, "dw", dw, 1)
    oh, ow = out_size(out_h, kh, sh, ph, dh), out_size(out_w, kw, sw, pw, dw)
    if (oh, ow) != tuple(x.shape[2:]):
        raise ValueError(
            f"{op}: argument 'x' has (H, W) = {tuple(x.shape[2:])} but the output size ({out_h}, {out_w}) "
            f"and parameters give ({oh}, {ow})"
        )
    return out_h, out_w, sh, sw, ph, pw, dh, dw, groups


def check_conv2d_weight_grad_direct(
    x: Any, gy: Any, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, dh: int, dw: int, groups: int
) -> tuple[int, ...]:
    """Validate conv2d_weight_grad_direct's arguments; return (kh, kw, sh, sw, ph, pw, dh, dw, groups)."""
    op = "conv2d_weight_grad_direct"
    _check_operands(op, x, "gy", gy)
    groups = check_int(op, "groups", groups, 1)
    kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = check_im2col(x, kh, kw, sh, sw, ph, pw, dh, dw)
    n, c = x.shape[:2]
    if gy.shape[0] != n or tuple(gy.shape[2:]) != (oh, ow) or gy.shape[1] % groups or c % groups:
        raise ValueError(
            f"{op}: argument 'gy' must have shape (N, C_out, OH, OW) = ({n}, C_out, {oh}, {ow}) with C and "
            f"C_out multiples of groups={groups}, for x of shape {tuple(x.shape)}; got {tuple(gy.shape)}"
        )
    return kh, kw, sh, sw, ph, pw, dh, dw, groups


def check_col2im(
    col: Any, h: int, w: int, sh: int, sw: int, ph: int, pw: int, dh: int, dw: int
) -> tuple[int, ...]:
    """Validate col2im's arguments; return ``(h, w, sh, sw, ph, pw, dh, dw)`` as ints.

    The kernel size and the output size are read from ``col``'s shape
    ``(C, KH, KW, N, OH, OW)``; OH and OW must be what im2col would have produced
    for an input of size ``(h, w)`` with these parameters.
    """
    op = "col2im"
    check_array(op, "col", col, 6)
    h, w = check_int(op, "h", h, 1), check_int(op, "w", w, 1)
    sh, sw = check_int(op, "sh", sh, 1), check_int(op, "sw", sw, 1)
    ph, pw = check_int(op, "ph", ph, 0), check_int(op, "pw", pw, 0)
    dh, dw = check_int(op, "dh", dh, 1), check_int(op, "dw", dw, 1)
    _, kh, kw, _, oh, ow = col.shape
    if kh < 1 or kw < 1:
        raise ValueError(f"{op}: argument 'col' has an empty kernel axis, shape {tuple(col.shape)}")
    want = (out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw))
    if want[0] < 1 or want[1] < 1 or (oh, ow) != want:
        raise ValueError(
            f"{op}: argument 'col' has shape {tuple(col.shape)} = (C, KH, KW, N, OH, OW), "
            f"but an input of size ({h}, {w}) with stride ({sh}, {sw}), padding ({ph}, {pw}) "
            f"and dilation ({dh}, {dw}) gives (OH, OW) = {want}"
        )
    return h, w, sh, sw, ph, pw, dh, dw


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
