"""The denoising autoencoder: learn to map a corrupted image x~ = c(x) back to the clean x.

Training minimises loss(g(f(x~)), x) with a fresh corruption c drawn at every
step (Vincent et al., 2008). The network is convolutional and has no narrow
code: the point is not compression but learning what digits look like well
enough to remove the noise. Strided convolutions go down to 7x7, two stride-1
convolutions there widen what each unit sees to most of the digit (a stroke is
told from noise by what lies around it), and every step back up is a transposed
convolution followed by a stride-1 convolution that cleans the upsampled maps.
Default network (``channels=(32, 64)``, ``bottom=2``)::

    f   Conv2d(1, 32, 3, s2, p1) ReLU            -> (N, 32, 14, 14)
        Conv2d(32, 64, 3, s2, p1) ReLU           -> (N, 64, 7, 7)
        Conv2d(64, 64, 3, s1, p1) ReLU  x 2      -> (N, 64, 7, 7)     the "code"
    g   ConvTranspose2d(64, 32, 3, s2, p1, op1) ReLU
        Conv2d(32, 32, 3, s1, p1) ReLU           -> (N, 32, 14, 14)
        ConvTranspose2d(32, 1, 3, s2, p1, op1) Sigmoid -> (N, 1, 28, 28)

The stride-1 layers cost about twice the work of the plain strided autoencoder;
what they are worth is measured in docs/lecture/denoising.md.

Corruptions (:mod:`tinyae.data.noise`), each with one level in [0, 1]:

    gaussian      x + N(0, sigma^2), clipped to [0, 1]         level = sigma
    salt-pepper   each pixel -> 0 or 1 with probability p      level = p
    masking       each pixel -> 0 with probability f           level = f
"""

from __future__ import annotations

from collections.abc import Sequence

import tinyae.nn as nn
from tinyae.data.noise import GaussianNoise, MaskingNoise, Noise, SaltAndPepper
from tinyae.models.conv_ae import downsampled_sizes, upsampling
from tinyae.tensor import Tensor

__all__ = ["NOISE_KINDS", "DenoisingAutoencoder", "make_noise"]

#: noise kind -> (class, default level)
NOISE_KINDS: dict[str, tuple[type[Noise], float]] = {
    "gaussian": (GaussianNoise, 0.5),
    "salt-pepper": (SaltAndPepper, 0.2),
    "masking": (MaskingNoise, 0.5),
}


def make_noise(kind: str, level: float | None = None) -> Noise:
    """The corruption ``kind`` at ``level`` (None: the kind's default); ValueError when out of range."""
    if kind not in NOISE_KINDS:
        raise ValueError(f"make_noise: unknown noise kind {kind!r}; choose one of: {', '.join(NOISE_KINDS)}")
    cls, default = NOISE_KINDS[kind]
    level = default if level is None else float(level)
    if not 0.0 <= level <= 1.0:  # also rejects NaN
        raise ValueError(f"make_noise: {kind} noise level must be in [0, 1], got {level}")
    return cls(level)


class DenoisingAutoencoder(nn.Module):
    """Strided convs down to ``channels``, ``bottom`` stride-1 convs, and back up (see the module doc)."""

    def __init__(
        self,
        channels: Sequence[int] = (32, 64),
        image_shape: tuple[int, int, int] = (1, 28, 28),
        bottom: int = 2,
    ) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if not channels or any(c < 1 for c in channels) or bottom < 0:
            raise ValueError(
                f"DenoisingAutoencoder: channel counts must be positive and bottom >= 0, got "
                f"channels={channels}, bottom={bottom}"
            )
        self.image_shape = tuple(image_shape)
        widths = [self.image_shape[0], *channels]
        sizes = downsampled_sizes(self.image_shape[1], len(channels))  # 28 -> [28, 14, 7]
        enc: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            enc += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.ReLU()]
        for _ in range(bottom):
            enc += [nn.Conv2d(widths[-1], widths[-1], 3, padding=1), nn.ReLU()]
        dec: list[nn.Module] = []
        for i in range(len(widths) - 1, 0, -1):
            dec.append(upsampling(widths[i], widths[i - 1], sizes[i], sizes[i - 1]))  # undo conv i
            if i > 1:
                dec += [nn.ReLU(), nn.Conv2d(widths[i - 1], widths[i - 1], 3, padding=1), nn.ReLU()]
            else:
                dec.append(nn.Sigmoid())
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)
        self.code_shape = (widths[-1], sizes[-1], sizes[-1])

    def encode(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> the maps at the bottom (N, *code_shape)."""
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))
