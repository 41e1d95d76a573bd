"""A convolutional autoencoder: strided convolutions down, transposed convolutions up.

Notation: N batch, C channels, H x W image, k kernel size, s stride, p padding,
op output_padding. A conv with k=3, s=2, p=1 halves the size (rounding up):
OH = floor((H + 2p - k) / s) + 1; a transposed conv inverts it:
OH = (H - 1) s - 2p + k + op, with op choosing between the two sizes that the
strided conv maps to the same output (7 -> 14 needs op=1, 4 -> 7 needs op=0).

With the defaults ``channels=(16, 32)``, ``code_channels=8``::

    encoder  x (N, 1, 28, 28)
             Conv2d(1, 16, 3, s2, p1)   ReLU -> (N, 16, 14, 14)
             Conv2d(16, 32, 3, s2, p1)  ReLU -> (N, 32, 7, 7)
             Conv2d(32, 8, 3, s2, p1)        -> (N, 8, 4, 4)     the code: 128 numbers, 784/128 = 6x smaller
    decoder  ConvTranspose2d(8, 32, 3, s2, p1, op0)  ReLU -> (N, 32, 7, 7)
             ConvTranspose2d(32, 16, 3, s2, p1, op1) ReLU -> (N, 16, 14, 14)
             ConvTranspose2d(16, 1, 3, s2, p1, op1)  Sigmoid -> (N, 1, 28, 28)

No pooling and no upsampling layers: the network learns its own down- and
up-sampling. The same code size as the Keras blog's conv autoencoder (8 x 4 x 4).
"""

from __future__ import annotations

from collections.abc import Sequence

import tinyae.nn as nn
from tinyae.tensor import Tensor

__all__ = ["ConvAutoencoder", "downsampled_sizes", "upsampling"]


def downsampled_sizes(size: int, steps: int) -> list[int]:
    """Spatial sizes after each stride-2, k=3, p=1 conv: 28 -> [28, 14, 7, 4]."""
    sizes = [size]
    for _ in range(steps):
        sizes.append((sizes[-1] + 2 * 1 - 3) // 2 + 1)
    return sizes


def upsampling(c_in: int, c_out: int, size_in: int, size_out: int) -> nn.ConvTranspose2d:
    """The k=3, s=2, p=1 transposed conv that undoes one downsampling step: size_in -> size_out.

    output_padding picks which of the two sizes that map to ``size_in`` comes out.
    """
    op = size_out - ((size_in - 1) * 2 - 2 + 3)
    return nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=op)


class ConvAutoencoder(nn.Module):
    """Strided-conv encoder down to ``code_channels`` maps, transposed-conv decoder back up."""

    def __init__(
        self,
        channels: Sequence[int] = (16, 32),
        code_channels: int | None = 8,
        image_shape: tuple[int, int, int] = (1, 28, 28),
    ) -> None:
        """``code_channels=None`` ends the encoder at the last of ``channels`` (no extra code layer)."""
        super().__init__()
        if not channels or any(c < 1 for c in channels) or (code_channels is not None and code_channels < 1):
            raise ValueError(
                f"ConvAutoencoder: channel counts must be positive, got channels={channels}, "
                f"code_channels={code_channels}"
            )
        self.image_shape = tuple(image_shape)
        c_in, height, _ = self.image_shape
        widths = [c_in, *channels] + ([code_channels] if code_channels is not None else [])
        sizes = downsampled_sizes(height, len(widths) - 1)  # spatial size after each conv
        enc: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            enc.append(nn.Conv2d(a, b, 3, stride=2, padding=1))
            if i < len(widths) - 2 or code_channels is None:
                enc.append(nn.ReLU())
        dec: list[nn.Module] = []
        for i in range(len(widths) - 1, 0, -1):
            dec.append(upsampling(widths[i], widths[i - 1], sizes[i], sizes[i - 1]))  # undo conv i
            dec.append(nn.ReLU() if i > 1 else nn.Sigmoid())
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)
        self.code_shape = (widths[-1], sizes[-1], sizes[-1])

    def encode(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> the code (N, *code_shape)."""
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))
