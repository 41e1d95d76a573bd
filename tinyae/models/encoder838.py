"""The 8-3-8 encoder: squeeze 8 one-hot patterns through 3 hidden units and back.

The lecture's toy problem (Rumelhart, Hinton & Williams, 1986): the inputs are
the 8 one-hot vectors e_1..e_8 and the network must reproduce its input. Three
hidden units can hold 2^3 = 8 distinct binary codes, so a perfect solution
has to invent a 3-bit code for the 8 patterns; with sigmoid hidden units it
usually learns something close to a binary code (in some order).

    h = sigmoid(W1 x + b1)        x: (N, 8), W1: (3, 8), h: (N, 3)    the code
    r = sigmoid(W2 h + b2)        W2: (8, 3), r: (N, 8)               the reconstruction
"""

from __future__ import annotations

import numpy as np

import tinyae.nn as nn
from tinyae.tensor import Tensor

__all__ = ["Encoder838", "binary_codes", "one_hot_patterns"]


def one_hot_patterns(n: int = 8) -> np.ndarray:
    """The n one-hot patterns as an (n, n) float32 identity matrix (pattern i is row i)."""
    return np.eye(n, dtype=np.float32)


def binary_codes(n: int = 8) -> np.ndarray:
    """The binary code of the slide: row i is i written with ceil(log2 n) bits, most significant first."""
    bits = max(1, int(np.ceil(np.log2(n))))
    return ((np.arange(n)[:, None] >> np.arange(bits - 1, -1, -1)[None, :]) & 1).astype(np.float32)


class Encoder838(nn.Module):
    """``n_inputs``-``n_hidden``-``n_inputs`` sigmoid autoencoder (default 8-3-8)."""

    def __init__(self, n_inputs: int = 8, n_hidden: int = 3) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(n_inputs, n_hidden), nn.Sigmoid())
        self.decoder = nn.Sequential(nn.Linear(n_hidden, n_inputs), nn.Sigmoid())

    def encode(self, x: Tensor) -> Tensor:
        """The hidden code h, (N, n_hidden) in (0, 1)."""
        return self.encoder(x)

    def decode(self, h: Tensor) -> Tensor:
        return self.decoder(h)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))
