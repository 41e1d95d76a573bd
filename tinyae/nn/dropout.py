"""Dropout (inverted): zero each element with probability p, scale the survivors by 1 / (1 - p).

In training::

    mask[i] = 1 / (1 - p) with probability 1 - p, else 0        (drawn once per call)
    y = x * mask                         dL/dx = dL/dy * mask

The scaling keeps E[y] = x, so nothing changes at evaluation time, when dropout is
the identity. The mask is a constant, so ``y = x * mask`` with the ordinary
differentiable multiply gives backward and double backward for free.

The mask is drawn from the global generator (``tinyae.creation.generator()``) on the
host and copied to the input's device: ``tinyae.manual_seed`` fixes it, on CPU and GPU alike.
"""

from __future__ import annotations

from tinyae import backend
from tinyae.creation import generator
from tinyae.tensor import Tensor

__all__ = ["check_probability", "dropout"]


def check_probability(op: str, p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise ValueError(f"{op}: dropout probability has to be between 0 and 1, but got {p!r}")
    return float(p)


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Inverted dropout (``torch.nn.functional.dropout``); the identity when not ``training``.

    ``inplace`` is accepted for compatibility; the result is always a new tensor.
    """
    p = check_probability("dropout", p)
    if not isinstance(input, Tensor):
        raise TypeError(f"dropout: input must be a Tensor, got {type(input).__name__}")
    if not training or p == 0:
        return input
    keep = generator().random(input.shape) >= p  # True with probability 1 - p
    scale = 0.0 if p == 1 else 1.0 / (1.0 - p)
    mask = backend.to_device((keep * scale).astype(input.dtype), input.device)
    return input * Tensor(mask)
