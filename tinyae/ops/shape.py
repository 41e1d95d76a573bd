"""Shape ops: broadcasting, reshape, transpose/permute, (un)squeeze, cat/stack, pad, device/dtype moves.

Each op moves numbers around without changing them, so each backward moves the
gradient back the opposite way: ``broadcast_to`` <-> ``sum_to``, ``reshape`` <->
``reshape``, ``permute`` <-> the inverse permutation, ``pad`` <-> slicing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tinyae import backend
from tinyae.autograd import Function
from tinyae.tensor import Tensor, as_tensor


def normalize_dim(op: str, dim: int, ndim: int, name: str = "dim") -> int:
    """A possibly negative ``dim`` as an index in ``range(ndim)``, or a clear error."""
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise TypeError(f"{op}: {name} must be an int, got {type(dim).__name__}")
    if not -ndim <= dim < max(ndim, 1):
        raise ValueError(f"{op}: {name}={dim} is out of range for a tensor with {ndim} dimensions")
    return int(dim) % max(ndim, 1)


def _shape_arg(op: str, shape: Sequence[Any]) -> tuple[int, ...]:
    """Accept ``f(2, 3)`` as well as ``f((2, 3))``; sizes must be ints."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    for s in shape:
        if not isinstance(s, (int, np.integer)) or isinstance(s, bool):
            raise TypeError(f"{op}: sizes must be ints, got {type(s).__name__} ({s!r}) in {tuple(shape)}")
    return tuple(int(s) for s in shape)


# ------------------------------------------------------------- broadcasting
def broadcast_shape(op: str, *shapes: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        listed = " and ".join(str(tuple(s)) for s in shapes)
        raise ValueError(f"{op}: shapes {listed} cannot be broadcast together") from None


class BroadcastTo(Function):
    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def forward(self, x):
        return backend.get_array_module(x).broadcast_to(x, self.shape)

    def backward(self, gy):
        return sum_to(gy, self.inputs[0].shape)


class SumTo(Function):
    """Sum over the axes that broadcasting added or stretched: the adjoint of broadcast_to."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def forward(self, x):
        lead = x.ndim - len(self.shape)
        stretched = tuple(i + lead for i, s in enumerate(self.shape) if s == 1 and x.shape[i + lead] != 1)
        y = x.sum(axis=tuple(range(lead)) + stretched, keepdims=True)
        return y.reshape(self.shape)

    def backward(self, gy):
        return broadcast_to(gy, self.inputs[0].shape)


def broadcast_to(x: Tensor, shape: Sequence[int]) -> Tensor:
    shape = tuple(shape)
    if x.shape == shape:
        return x
    if broadcast_shape("broadcast_to", x.shape, shape) != shape:
        raise ValueError(f"broadcast_to: cannot broadcast shape {x.shape} to {shape}")
    return BroadcastTo(shape)(x)


def sum_to(x: Tensor, shape: Sequence[int]) -> Tensor:
    """Sum ``x`` down to ``shape`` (which ``x``'s shape must be a broadcast of)."""
    shape = tuple(shape)
    if x.shape == shape:
        return x
    if len(shape) > x.ndim or broadcast_shape("sum_to", x.shape, shape) != x.shape:
        raise ValueError(f"sum_to: cannot sum shape {x.shape} down to {shape} (it is not a broadcast of it)")
    return SumTo(shape)(x)


def expand(x: Tensor, *sizes: Any) -> Tensor:
    """PyTorch's ``expand``: broadcast to ``sizes``; -1 keeps a dimension's size."""
    sizes = _shape_arg("expand", sizes)
    lead = len(sizes) - x.ndim
    if lead < 0:
        raise ValueError(f"expand: {len(sizes)} sizes given for a tensor with {x.ndim} dimensions {x.shape}")
    target = tuple(x.shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(sizes))
    if broadcast_shape("expand", x.shape, target) != target:
        raise ValueError(f"expand: cannot expand shape {x.shape} to {target}")
    return broadcast_to(x, target)


# ---------------------------------------------------------------- reshaping
class Reshape(Function):
    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def forward(self, x):
        return x.reshape(self.shape)

    def backward(self, gy):
        return reshape(gy, self.inputs[0].shape)


def reshape(x: Tensor, *shape: Any) -> Tensor:
    shape = _shape_arg("reshape", shape)
    if shape == x.shape:
        return x
    if shape.count(-1) > 1 or any(s < -1 for s in shape):
        raise ValueError(f"reshape: invalid target shape {shape} for input of shape {x.shape}")
    known = int(np.prod([s for s in shape if s != -1]))
    ok = known == x.size if -1 not in shape else known > 0 and x.size % known == 0
    if not ok:
        raise ValueError(f"reshape: cannot reshape input of shape {x.shape} ({x.size} elements) to {shape}")
    return Reshape(shape)(x)


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dims ``start_dim..end_dim`` into one (``torch.flatten``)."""
    if x.ndim == 0:
        return reshape(x, 1)
    s = normalize_dim("flatten", start_dim, x.ndim, "start_dim")
    e = normalize_dim("flatten", end_dim, x.ndim, "end_dim")
    if s > e:
        raise ValueError(f"flatten: start_dim={start_dim} comes after end_dim={end_dim}")
    return reshape(x, x.shape[:s] + (-1,) + x.shape[e + 1 :])


def unflatten(x: Tensor, dim: int, sizes: Sequence[int]) -> Tensor:
    d = normalize_dim("unflatten", dim, x.ndim)
    return reshape(x, x.shape[:d] + tuple(sizes) + x.shape[d + 1 :])


def squeeze(x: Tensor, dim: int | Sequence[int] | None = None) -> Tensor:
    """Drop size-1 dims (all of them, or just ``dim`` when it has size 1, as PyTorch)."""
    if dim is None:
        dims = [i for i, s in enumerate(x.shape) if s == 1]
    else:
        dims = [
            normalize_dim("squeeze", d, x.ndim) for d in (dim if isinstance(dim, (tuple, list)) else [dim])
        ]
        dims = [d for d in dims if x.shape[d] == 1]
    return reshape(x, tuple(s for i, s in enumerate(x.shape) if i not in dims))


def unsqueeze(x: Tensor, dim: int) -> Tensor:
    d = normalize_dim("unsqueeze", dim, x.ndim + 1)
    return reshape(x, x.shape[:d] + (1,) + x.shape[d:])


class Permute(Function):
    def __init__(self, axes: tuple[int, ...]) -> None:
        self.axes = axes

    def forward(self, x):
        return x.transpose(self.axes)

    def backward(self, gy):
        return permute(gy, tuple(np.argsort(self.axes)))


def permute(x: Tensor, *dims: Any) -> Tensor:
    dims = _shape_arg("permute", dims)
    if sorted(normalize_dim("permute", d, x.ndim) for d in dims) != list(range(x.ndim)):
        raise ValueError(f"permute: dims {dims} are not a permutation of the {x.ndim} dims of {x.shape}")
    dims = tuple(d % x.ndim for d in dims)
    if dims == tuple(range(x.ndim)):
        return x
    return Permute(dims)(x)


def transpose(x: Tensor, dim0: int = -2, dim1: int = -1) -> Tensor:
    """Swap two dims (PyTorch's ``transpose``; ``permute`` reorders them all)."""
    a = normalize_dim("transpose", dim0, x.ndim, "dim0")
    b = normalize_dim("transpose", dim1, x.ndim, "dim1")
    axes = list(range(x.ndim))
    axes[a], axes[b] = axes[b], axes[a]
    return permute(x, tuple(axes))


# ------------------------------------------------------------- cat / stack
class Cat(Function):
    def __init__(self, axis: int) -> None:
        self.axis = axis

    def forward(self, *xs):
        return backend.get_array_module(*xs).concatenate(xs, axis=self.axis)

    def backward(self, gy):
        grads, start = [], 0
        for x in self.inputs:
            index = [slice(None)] * gy.ndim
            index[self.axis] = slice(start, start + x.shape[self.axis])
            grads.append(gy[tuple(index)])
            start += x.shape[self.axis]
        return tuple(grads)


def cat(tensors: Sequence[Tensor], dim: int = 0, *, axis: int | None = None) -> Tensor:
    """Join tensors along an existing dim (``torch.cat``)."""
    tensors = [as_tensor(t, op="cat") for t in tensors]
    if not tensors:
        raise ValueError("cat: expected a non-empty sequence of tensors")
    dim = normalize_dim("cat", dim if axis is None else axis, tensors[0].ndim)
    ref = tensors[0].shape
    for t in tensors[1:]:
        if t.ndim != len(ref) or any(a != b for i, (a, b) in enumerate(zip(t.shape, ref)) if i != dim):
            raise ValueError(f"cat: shapes {ref} and {t.shape} differ outside dim {dim}")
    return Cat(dim)(*tensors)


def stack(tensors: Sequence[Tensor], dim: int = 0, *, axis: int | None = None) -> Tensor:
    """Join equally shaped tensors along a new dim (``torch.stack``)."""
    tensors = [as_tensor(t, op="stack") for t in tensors]
    if not tensors:
        raise ValueError("stack: expected a non-empty sequence of tensors")
    for t in tensors[1:]:
        if t.shape != tensors[0].shape:
            raise ValueError(
                f"stack: all tensors must have the same shape, got {tensors[0].shape} and {t.shape}"
            )
    d = normalize_dim("stack", dim if axis is None else axis, tensors[0].ndim + 1)
    return cat([unsqueeze(t, d) for t in tensors], d)


# -------------------------------------------------------------------- pad
class Pad(Function):
    def __init__(self, widths: tuple[tuple[int, int], ...], value: float) -> None:
        self.widths = widths
        self.value = value

    def forward(self, x):
        xp = backend.get_array_module(x)
        return xp.pad(x, self.widths, mode="constant", constant_values=self.value)

    def backward(self, gy):
        index = tuple(slice(lo, gy.shape[i] - hi) for i, (lo, hi) in enumerate(self.widths))
        return gy[index]


def pad(x: Tensor, pad: Sequence[int], mode: str = "constant", value: float = 0.0) -> Tensor:
    """Constant padding as ``torch.nn.functional.pad``.

    ``pad`` lists (before, after) pairs starting from the LAST dim:
    ``(left, right, top, bottom)`` pads W then H of an NCHW tensor.
    """
    if mode != "constant":
        raise ValueError(f"pad: only mode='constant' is supported, got {mode!r}")
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad: pad must hold (before, after) pairs for at most {x.ndim} dims, got {pad}")
    if any(p < 0 for p in pad):
        raise ValueError(f"pad: negative padding {pad} is not supported")
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return Pad(tuple(widths), value)(x)


# ------------------------------------------------------ device and dtype
class To(Function):
    """Copy to another device and/or dtype; backward copies the gradient back."""

    def __init__(self, device: str, dtype: np.dtype) -> None:
        self.device = device
        self.dtype = dtype

    def forward(self, x):
        self.src = (backend.device_of(x), x.dtype)
        return backend.to_device(x, self.device).astype(self.dtype, copy=False)

    def backward(self, gy):
        device, dtype = self.src
        return to(gy, device=device, dtype=dtype)


def to(x: Tensor, device: Any = None, dtype: Any = None) -> Tensor:
    device = x.device if device is None else backend.parse_device(device)
    dtype = x.dtype if dtype is None else np.dtype(dtype)
    if device == x.device and dtype == x.dtype:
        return x
    if x.requires_grad and dtype.kind != "f":
        return Tensor(backend.to_device(x.data, device).astype(dtype))
    return To(device, dtype)(x)
