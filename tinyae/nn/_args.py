"""Integer arguments of the layers and functional ops, checked in one place with one wording.

``int_arg(op, name, value, minimum)`` and ``pair_arg(...)`` (an int or an (h, w) pair, as
PyTorch's ``kernel_size``, ``stride``, ``padding`` ...) return plain ints or raise, e.g.
``conv2d: argument 'stride' must be positive, got 0``.
"""

from __future__ import annotations

from typing import Any


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
