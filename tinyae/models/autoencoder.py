"""A dense autoencoder: encoder f, decoder g, reconstruction r = g(f(x)).

Images are flattened to vectors of P = C * H * W pixels. With ``hidden=(256,)`` and
``code_size=32``::

    f: x (N, 1, 28, 28) -> Flatten (N, 784) -> Linear 784-256 -> ReLU -> Linear 256-32   = z (N, 32)
    g: z (N, 32) -> Linear 32-256 -> ReLU -> Linear 256-784 -> Sigmoid -> Unflatten       = r (N, 1, 28, 28)

The code layer is linear (no activation), so with no hidden layers and an MSE
loss the autoencoder can at best find the PCA subspace; the ReLU layers let it
do better than any linear code of the same size. The output sigmoid keeps
pixels in (0, 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import tinyae.nn as nn
from tinyae.tensor import Tensor

__all__ = ["Autoencoder", "mlp_layers"]


def mlp_layers(sizes: Sequence[int]) -> list[nn.Module]:
    """Linear layers between consecutive ``sizes`` with a ReLU after each but the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return layers


class Autoencoder(nn.Module):
    """Dense autoencoder for ``image_shape`` images with hidden widths ``hidden`` and a ``code_size`` code."""

    def __init__(
        self,
        code_size: int = 32,
        hidden: Sequence[int] = (256,),
        image_shape: tuple[int, int, int] = (1, 28, 28),
    ) -> None:
        super().__init__()
        if code_size < 1 or any(h < 1 for h in hidden):
            raise ValueError(
                f"Autoencoder: sizes must be positive, got code_size={code_size}, hidden={tuple(hidden)}"
            )
        self.image_shape = tuple(image_shape)
        self.code_size = code_size
        pixels = 1
        for s in self.image_shape:
            pixels *= s
        sizes = [pixels, *hidden, code_size]
        self.encoder = nn.Sequential(nn.Flatten(), *mlp_layers(sizes))
        self.decoder = nn.Sequential(
            *mlp_layers(sizes[::-1]), nn.Sigmoid(), nn.Unflatten(1, self.image_shape)
        )

    def encode(self, x: Tensor) -> Tensor:
        """z = f(x): (N, C, H, W) -> (N, code_size)."""
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        """r = g(z): (N, code_size) -> (N, C, H, W) in (0, 1)."""
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))
