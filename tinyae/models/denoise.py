"""The denoising autoencoder: learn to map a corrupted image x~ = c(x) back to the clean x.

Training minimises loss(g(f(x~)), x) with a fresh corruption c drawn at every
step (Vincent et al., 2008). The network is a convolutional autoencoder
(:class:`~tinyae.models.conv_ae.ConvAutoencoder`) without a narrow code: the
point is not compression but learning what digits look like well enough to
remove the noise. Default network::

    Conv2d(1, 32, 3, s2, p1) ReLU -> (N, 32, 14, 14)
    Conv2d(32, 64, 3, s2, p1) ReLU -> (N, 64, 7, 7)
    ConvTranspose2d(64, 32, 3, s2, p1, op1) ReLU -> (N, 32, 14, 14)
    ConvTranspose2d(32, 1, 3, s2, p1, op1) Sigmoid -> (N, 1, 28, 28)

Corruptions (:mod:`tinyae.data.noise`), each with one level in [0, 1]:

    gaussian      x + N(0, sigma^2), clipped to [0, 1]         level = sigma
    salt-pepper   each pixel -> 0 or 1 with probability p      level = p
    masking       each pixel -> 0 with probability f           level = f
"""

from __future__ import annotations

from collections.abc import Sequence

from tinyae.data.noise import GaussianNoise, MaskingNoise, Noise, SaltAndPepper
from tinyae.models.conv_ae import ConvAutoencoder

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


class DenoisingAutoencoder(ConvAutoencoder):
    """A :class:`ConvAutoencoder` with no code layer: the decoder sees all ``channels[-1]`` maps."""

    def __init__(
        self, channels: Sequence[int] = (32, 64), image_shape: tuple[int, int, int] = (1, 28, 28)
    ) -> None:
        super().__init__(channels=channels, code_channels=None, image_shape=image_shape)
