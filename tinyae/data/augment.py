"""Data augmentation: new training images made from old ones by moves that keep the label.

A classifier that sees only 100 labelled digits learns them by heart; shown each digit
moved by a pixel or two in every direction, it has to learn what stays the same under
the move, which is what a digit's class is. The transform is a callable like the
corruptions in :mod:`tinyae.data.noise` (``transform(x, rng) -> new array``, NumPy
or CuPy, never in place), applied to each training batch afresh:

    RandomShift(s)    each image moved by its own (dy, dx), each uniform in {-s, ..., s};
                      the uncovered border is 0 (MNIST's background), what leaves is cut off

Test images are never augmented.
"""

from __future__ import annotations

from typing import Any

from tinyae.backend import get_array_module
from tinyae.data.noise import Noise

__all__ = ["RandomShift"]


class RandomShift(Noise):
    """Move each image (N, C, H, W) by a random whole number of pixels, up to ``max_shift`` each way."""

    def __init__(self, max_shift: int) -> None:
        if isinstance(max_shift, bool) or int(max_shift) != max_shift or max_shift < 0:
            raise ValueError(f"RandomShift: max_shift must be a whole number >= 0, got {max_shift!r}")
        self.max_shift = int(max_shift)

    def apply(self, x: Any, gen: Any) -> Any:
        if x.ndim != 4:
            raise ValueError(f"RandomShift: expected images (N, C, H, W), got shape {tuple(x.shape)}")
        xp, s = get_array_module(x), self.max_shift
        n, c, h, w = x.shape
        if s == 0 or n == 0:
            return x.copy()
        padded = xp.pad(x, ((0, 0), (0, 0), (s, s), (s, s)))  # (N, C, H + 2s, W + 2s)
        dy = gen.integers(-s, s + 1, size=n)  # (N,) the move down
        dx = gen.integers(-s, s + 1, size=n)  # (N,) the move right
        # Output pixel (i, j) of image k is input pixel (i - dy, j - dx): padded (i - dy + s, j - dx + s).
        rows = xp.arange(h)[None, :] + (s - dy)[:, None]  # (N, H)
        cols = xp.arange(w)[None, :] + (s - dx)[:, None]  # (N, W)
        k = xp.arange(n)[:, None, None, None]  # (N, 1, 1, 1)
        ch = xp.arange(c)[None, :, None, None]  # (1, C, 1, 1)
        return padded[k, ch, rows[:, None, :, None], cols[:, None, None, :]]  # (N, C, H, W)

    def __repr__(self) -> str:
        return f"RandomShift(max_shift={self.max_shift})"
