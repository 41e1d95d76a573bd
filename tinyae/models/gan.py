"""Generative adversarial networks (Goodfellow et al. 2014): a generator G and a discriminator D.

G maps noise z ~ N(0, I) (N, L) to an image G(z) (N, C, H, W) with values in [-1, 1] (tanh;
the training images are rescaled to the same range). D maps an image to one *logit* per
image: D(x) = sigmoid(logit) is its estimate that x is real. The two are trained in
alternation on the minimax game

    min_G max_D  E_x[log D(x)] + E_z[log(1 - D(G(z)))]

(the losses, the alternation and the Wasserstein variant are in :mod:`tinyae.train.gan`).
Two pairs of networks, each a plain ``Sequential``:

``mlp_generator`` / ``mlp_discriminator`` (the original, fully connected GAN)::

    G: z (N, 100) -> Linear 256 -> LeakyReLU -> 512 -> LeakyReLU -> 1024 -> LeakyReLU -> 784 -> Tanh
                  -> Unflatten (N, 1, 28, 28)
    D: x (N, 1, 28, 28) -> Flatten -> Linear 512 -> LeakyReLU -> 256 -> LeakyReLU -> 1   (a logit)

``dcgan_generator`` / ``dcgan_discriminator`` (Radford et al. 2016; the benchmark's W5)::

    G: z (N, 100) -> Linear(100, 128*7*7) -> Unflatten (N, 128, 7, 7) -> BatchNorm2d ReLU
                  -> ConvT(128, 64, 4, s2, p1) (N, 64, 14, 14) -> BatchNorm2d ReLU
                  -> ConvT(64, 1, 4, s2, p1) (N, 1, 28, 28) -> Tanh
    D: x (N, 1, 28, 28) -> Conv(1, 64, 4, s2, p1) (N, 64, 14, 14) -> LeakyReLU(0.2)
                        -> Conv(64, 128, 4, s2, p1) (N, 128, 7, 7) -> BatchNorm2d -> LeakyReLU(0.2)
                        -> Flatten -> Linear(6272, 1)

A Wasserstein critic (WGAN-GP) is the same discriminator with ``batch_norm=False``: its
gradient penalty is taken per image, which batch statistics would mix across the batch.
A kernel of 4 with stride 2 and padding 1 halves (or, transposed, doubles) the size
exactly: OH = (H + 2 - 4) / 2 + 1 = H / 2, and (H - 1) * 2 - 2 + 4 = 2H.

The builders take ``nn`` (default :mod:`tinyae.nn`), so the benchmarks build the very same
networks in PyTorch (``dcgan_generator(nn=torch.nn)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import tinyae.nn as tnn

__all__ = ["dcgan_discriminator", "dcgan_generator", "dcgan_init_", "mlp_discriminator", "mlp_generator"]

IMAGE = (1, 28, 28)
SLOPE = 0.2  # LeakyReLU's negative slope in every discriminator (Radford et al.)


def mlp_generator(latent: int = 100, hidden: Sequence[int] = (256, 512, 1024),
                  image_shape: tuple[int, ...] = IMAGE, nn: ModuleType = tnn) -> Any:  # fmt: skip
    """z (N, latent) -> Linear/LeakyReLU through ``hidden`` -> Linear to P pixels -> Tanh -> (N, C, H, W)."""
    layers: list[Any] = []
    for a, b in zip([latent, *hidden[:-1]], hidden):
        layers += [nn.Linear(a, b), nn.LeakyReLU(SLOPE)]
    layers += [nn.Linear(hidden[-1], math.prod(image_shape)), nn.Tanh(), nn.Unflatten(1, tuple(image_shape))]
    return nn.Sequential(*layers)


def mlp_discriminator(hidden: Sequence[int] = (512, 256), image_shape: tuple[int, ...] = IMAGE,
                      nn: ModuleType = tnn) -> Any:  # fmt: skip
    """x (N, C, H, W) -> Flatten -> Linear/LeakyReLU through ``hidden`` -> Linear to one logit (N, 1)."""
    layers: list[Any] = [nn.Flatten()]
    for a, b in zip([math.prod(image_shape), *hidden[:-1]], hidden):
        layers += [nn.Linear(a, b), nn.LeakyReLU(SLOPE)]
    layers.append(nn.Linear(hidden[-1], 1))
    return nn.Sequential(*layers)


def dcgan_generator(latent: int = 100, channels: tuple[int, int] = (128, 64),
                    image_shape: tuple[int, ...] = IMAGE, nn: ModuleType = tnn) -> Any:  # fmt: skip
    """z (N, latent) -> (N, c1, H/4, W/4) -> two stride-2 transposed convolutions -> Tanh (N, C, H, W)."""
    c, h, w = image_shape
    c1, c2 = channels
    return nn.Sequential(
        nn.Linear(latent, c1 * (h // 4) * (w // 4)), nn.Unflatten(1, (c1, h // 4, w // 4)),
        nn.BatchNorm2d(c1), nn.ReLU(),
        nn.ConvTranspose2d(c1, c2, 4, stride=2, padding=1), nn.BatchNorm2d(c2), nn.ReLU(),
        nn.ConvTranspose2d(c2, c, 4, stride=2, padding=1), nn.Tanh(),
    )  # fmt: skip


def dcgan_discriminator(channels: tuple[int, int] = (64, 128), image_shape: tuple[int, ...] = IMAGE,
                        batch_norm: bool = True, nn: ModuleType = tnn) -> Any:  # fmt: skip
    """x (N, C, H, W) -> two stride-2 convolutions with LeakyReLU -> Linear to one logit (N, 1).

    ``batch_norm=False`` gives the WGAN-GP critic (an Identity where the BatchNorm2d was, so the
    parameter names stay those of the discriminator).
    """
    c, h, w = image_shape
    c1, c2 = channels
    return nn.Sequential(
        nn.Conv2d(c, c1, 4, stride=2, padding=1), nn.LeakyReLU(SLOPE),
        nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.BatchNorm2d(c2) if batch_norm else nn.Identity(),
        nn.LeakyReLU(SLOPE), nn.Flatten(), nn.Linear(c2 * (h // 4) * (w // 4), 1),
    )  # fmt: skip


def dcgan_init_(module: tnn.Module, std: float = 0.02) -> tnn.Module:
    """DCGAN's initialisation, in place: conv and linear weights ~ N(0, 0.02), biases 0.

    BatchNorm scales ~ N(1, 0.02), shifts 0. Radford et al. (2016) start every layer at this
    small, equal scale.
    """
    for m in module.modules():
        if isinstance(m, tnn.Conv2d | tnn.ConvTranspose2d | tnn.Linear):
            tnn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                tnn.init.zeros_(m.bias)
        elif isinstance(m, tnn.BatchNorm2d):
            tnn.init.normal_(m.weight, 1.0, std)
            tnn.init.zeros_(m.bias)
    return module
