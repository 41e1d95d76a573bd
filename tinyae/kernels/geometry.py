"""``Geometry``: the numbers that place a convolution's windows, in one object.

One object crosses every layer: the conv layers build it once from their arguments (and check
them there), the planner and the kernels read it, and the C++ extension takes it as it is.
``int_arg`` and ``pair_arg`` are the one parser of integer arguments (sizes, strides, groups...)
for every layer and op, with one wording: ``conv2d: argument 'stride' must be positive, got 0``.

=========  ===============================================================
kernel     (KH, KW), the window size
stride     (SH, SW), how far the window moves
padding    (PH, PW), zeros added on each side
dilation   (DH, DW), spacing between the window's taps
groups     G: the channels split into G independent convolutions
=========  ===============================================================

A window grid over an (H, W) image has ``OH = (H + 2*PH - DH*(KH-1) - 1) // SH + 1`` rows (OW alike).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Largest accepted value: far beyond any real convolution, and small enough that the kernels'
# index arithmetic (H + 2*PH, DH*(KH-1), ...) never overflows 64 bits.
MAX_PARAM = 2**30


def out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    """Window positions along one axis; below 1 when the window does not fit."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _at_least(minimum: int) -> str:
    return "positive" if minimum == 1 else "non-negative" if minimum == 0 else f">= {minimum}"


def int_arg(op: str, name: str, value: Any, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (bools are refused: ``True`` is not a size)."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{op}: argument '{name}' must be an int, got {type(value).__name__}")
    v = int(value)
    if v < minimum:
        raise ValueError(f"{op}: argument '{name}' must be {_at_least(minimum)}, got {v}")
    return v


def pair_arg(op: str, name: str, value: Any, minimum: int) -> tuple[int, int]:
    """An int or an (h, w) pair of ints, each >= ``minimum``, as a pair."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{op}: argument '{name}' must be an int or a pair of ints, got {tuple(value)}")
        h, w = value
    else:
        h = w = value
    try:
        return int_arg(op, name, h, minimum), int_arg(op, name, w, minimum)
    except ValueError:
        raise ValueError(f"{op}: argument '{name}' must be {_at_least(minimum)}, got {value!r}") from None


@dataclass(frozen=True)
class Geometry:
    """Kernel size, stride, padding, dilation (pairs) and groups of one convolution, checked once."""

    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self) -> None:
        for name, minimum in (("kernel", 1), ("stride", 1), ("padding", 0), ("dilation", 1)):
            object.__setattr__(self, name, pair_arg("Geometry", name, getattr(self, name), minimum))
        object.__setattr__(self, "groups", int_arg("Geometry", "groups", self.groups, 1))
        for name in ("kernel", "stride", "padding", "dilation", "groups"):
            value = getattr(self, name)
            if max(value if isinstance(value, tuple) else (value,)) > MAX_PARAM:
                raise ValueError(f"Geometry: argument '{name}' is too large: {value}")

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        """(OH, OW): the window grid over an (h, w) image."""
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel, self.stride, self.padding, self.dilation
        return out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw)

    def replace(self, **changes: Any) -> Geometry:
        """A copy with some fields changed (e.g. ``groups=1`` for one group's view)."""
        fields = {k: getattr(self, k) for k in ("kernel", "stride", "padding", "dilation", "groups")}
        return Geometry(**{**fields, **changes})
