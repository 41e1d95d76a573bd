"""Argument checks of ``conv2d``, ``conv_transpose2d`` and ``linear``: done once, at the public entry.

Every error names the op, the argument and the shapes involved, as PyTorch's do.
"""

from __future__ import annotations

from typing import Any

from tinyae.kernels.geometry import int_arg, pair_arg
from tinyae.tensor import Tensor


def as_tensor_arg(op: str, name: str, v: Any) -> Tensor:
    if isinstance(v, Tensor):
        t = v
    elif hasattr(v, "dtype") and hasattr(v, "shape"):  # an ndarray
        t = Tensor(v)
    else:
        raise TypeError(f"{op}: argument '{name}' must be a Tensor, got {type(v).__name__}")
    if t.dtype.kind != "f" or t.dtype.itemsize not in (4, 8):
        raise TypeError(f"{op}: argument '{name}' must be float32 or float64, got dtype {t.dtype}")
    return t


def tensors(op: str, x: Any, weight: Any, bias: Any) -> tuple[Tensor, Tensor, Tensor | None]:
    """input, weight and bias as float Tensors of one dtype."""
    x, weight = as_tensor_arg(op, "input", x), as_tensor_arg(op, "weight", weight)
    if bias is not None:
        bias = as_tensor_arg(op, "bias", bias)
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != x.dtype:
            raise TypeError(f"{op}: input and {name} must have the same dtype, got {x.dtype} and {t.dtype}")
    return x, weight, bias


def check_input(op: str, x: Tensor) -> bool:
    """Check x is (N, C, H, W) or unbatched (C, H, W); return whether it is unbatched."""
    if x.ndim not in (3, 4):
        raise ValueError(
            f"{op}: argument 'input' must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape {x.shape}"
        )
    return x.ndim == 3


def check_weight(op: str, weight: Tensor, layout: str) -> None:
    if weight.ndim != 4:
        raise ValueError(f"{op}: argument 'weight' must be 4-D {layout}, got shape {weight.shape}")
    if any(s < 1 for s in weight.shape):
        raise ValueError(f"{op}: argument 'weight' has an empty dimension, shape {weight.shape}")


def check_bias(op: str, bias: Tensor | None, n_out: int, weight: Tensor) -> None:
    if bias is not None and bias.shape != (n_out,):
        raise ValueError(
            f"{op}: argument 'bias' must have shape ({n_out},) to match weight {weight.shape}, "
            f"got {bias.shape}"
        )


def check_groups(op: str, groups: Any, channels: dict[str, int]) -> int:
    groups = int_arg(op, "groups", groups, 1)
    for what, c in channels.items():
        if c % groups:
            raise ValueError(f"{op}: groups={groups} must divide the {what}, got {c}")
    return groups


def conv_padding(
    op: str, padding: Any, stride: tuple[int, int], dilation: tuple[int, int], kernel_hw: tuple[int, int]
) -> tuple[tuple[int, int], tuple[int, int]]:
    """conv2d's padding as (PH, PW), and the extra zero rows/columns for an odd 'same' padding.

    ``padding`` is an int, a pair, ``"valid"`` (none) or ``"same"`` (output size = input size;
    stride 1; when the total DH*(KH-1) is odd the extra row/column goes at the bottom/right).
    """
    if not isinstance(padding, str):
        return pair_arg(op, "padding", padding, 0), (0, 0)
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding != "same":
        raise ValueError(
            f"{op}: argument 'padding' must be an int, a pair, 'same' or 'valid', got {padding!r}"
        )
    if stride != (1, 1):
        raise ValueError(f"{op}: padding='same' needs stride 1 (as in PyTorch), got stride {stride}")
    total = (dilation[0] * (kernel_hw[0] - 1), dilation[1] * (kernel_hw[1] - 1))
    return (total[0] // 2, total[1] // 2), (total[0] % 2, total[1] % 2)


def transposed_output_size(
    op: str,
    x: Tensor,
    weight: Tensor,
    geometry: tuple[tuple[int, int], tuple[int, int], tuple[int, int]],
    output_padding: Any,
    output_size: Any,
    unbatched: bool,
) -> tuple[int, int]:
    """(H_out, W_out) of a transposed conv from ``output_size`` or ``output_padding``, checked.

    The smallest output a stride-S conv maps back to (H, W) is ``(H - 1)*S - 2P + D(K - 1) + 1``;
    output_padding (< max(stride, dilation)) or output_size picks one of the S sizes above it.
    """
    stride, padding, dilation = geometry
    kh, kw = weight.shape[2:]
    min_size = tuple(
        (size - 1) * s - 2 * p + d * (k - 1) + 1
        for size, s, p, d, k in zip(x.shape[2:], stride, padding, dilation, (kh, kw))
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
    return size
