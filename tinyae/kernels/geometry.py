"""``Geometry``: the numbers that place a convolution's windows, in one object.

One object crosses every layer: the conv layers build it once from their arguments (and check
them there), the planner and the kernels read it, and the C++ extension takes it as it is.

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

import operator
from dataclasses import dataclass
from typing import Any

import numpy as np

# Largest accepted value: far beyond any real convolution, and small enough that the kernels'
# index arithmetic (H + 2*PH, DH*(KH-1), ...) never overflows 64 bits.
MAX_PARAM = 2**30


def out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    """Window positions along one axis; below 1 when the window does not fit."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _int(v: Any) -> int | None:
    """v as an int if it is one (a Python or NumPy integer, not a bool), else None."""
    if isinstance(v, (bool, np.bool_)):
        return None
    try:
        return operator.index(v)
    except TypeError:
        return None


def _pair(name: str, value: Any, minimum: int) -> tuple[int, int]:
    pair = (value, value) if _int(value) is not None else value
    ints = tuple(_int(v) for v in pair) if isinstance(pair, (tuple, list)) and len(pair) == 2 else ()
    if len(ints) != 2 or any(v is None or not minimum <= v <= MAX_PARAM for v in ints):
        what = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"Geometry: argument '{name}' must be a {what} int or pair of ints, got {value!r}")
    return ints


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
            object.__setattr__(self, name, _pair(name, getattr(self, name), minimum))
        g = _int(self.groups)
        if g is None or not 1 <= g <= MAX_PARAM:
            raise ValueError(f"Geometry: argument 'groups' must be a positive int, got {self.groups!r}")
        object.__setattr__(self, "groups", g)

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        """(OH, OW): the window grid over an (h, w) image."""
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel, self.stride, self.padding, self.dilation
        return out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw)

    def replace(self, **changes: Any) -> Geometry:
        """A copy with some fields changed (e.g. ``groups=1`` for one group's view)."""
        fields = {k: getattr(self, k) for k in ("kernel", "stride", "padding", "dilation", "groups")}
        return Geometry(**{**fields, **changes})
