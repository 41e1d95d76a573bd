"""Transfer learning from an autoencoder: pretrain an encoder without labels, reuse it with few labels.

Notation: N images per batch, P = C * H * W pixels, hidden widths n_1 .. n_m, a code of
size D (``code_size``), K classes.

The encoder f is a dense ReLU network with a *linear* code layer; the decoder g mirrors it::

    f: x (N, C, H, W) -> Flatten (N, P) -> Linear P-n_1 -> ReLU -> ... -> Linear n_m-D        = z (N, D)
    g: z (N, D) -> Linear D-n_m -> ReLU -> ... -> Linear n_1-P                                  = logits of r

:class:`TransferAutoencoder` is f and g, trained on all training images without labels
(r = sigmoid(g(f(x))) reconstructs x). :class:`TransferClassifier` is the same encoder
architecture plus a linear softmax layer, logits = head(f(x)) (N, K); it starts either
from the pretrained f (:meth:`TransferClassifier.load_encoder`) or from its random
initialisation (the "scratch" baseline). A small code (D = 10 by default) forces the
autoencoder to summarise each image in a few numbers, and digits of one class end up
close together in that space: that is what lets a classifier learn from 100 labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import tinyae.nn as nn
import tinyae.nn.functional as F
from tinyae.models.autoencoder import mlp_layers
from tinyae.tensor import Tensor

__all__ = ["TransferAutoencoder", "TransferClassifier", "dense_encoder"]


def _check(owner: str, hidden: Sequence[int], code_size: int) -> list[int]:
    hidden = [int(h) for h in hidden]
    if code_size < 1 or any(h < 1 for h in hidden):
        raise ValueError(f"{owner}: sizes must be >= 1, got hidden={hidden}, code_size={code_size}")
    return hidden


def _pixels(image_shape: Sequence[int]) -> int:
    p = 1
    for s in image_shape:
        p *= int(s)
    return p


def dense_encoder(image_shape: Sequence[int], hidden: Sequence[int], code_size: int) -> nn.Sequential:
    """f: Flatten, then Linear+ReLU layers of widths ``hidden``, then a linear code layer of ``code_size``."""
    return nn.Sequential(nn.Flatten(), *mlp_layers([_pixels(image_shape), *hidden, code_size]))


class TransferAutoencoder(nn.Module):
    """Encoder f (image -> D-dim code) and mirrored decoder g (code -> pixel logits)."""

    def __init__(
        self,
        hidden: Sequence[int] = (512, 256),
        code_size: int = 10,
        image_shape: Sequence[int] = (1, 28, 28),
    ) -> None:
        super().__init__()
        self.hidden = _check("TransferAutoencoder", hidden, code_size)
        self.code_size = int(code_size)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.encoder = dense_encoder(self.image_shape, self.hidden, self.code_size)
        sizes = [self.code_size, *self.hidden[::-1], _pixels(self.image_shape)]
        self.decoder = nn.Sequential(*mlp_layers(sizes), nn.Unflatten(1, self.image_shape))

    def encode(self, x: Tensor) -> Tensor:
        """z = f(x): (N, C, H, W) -> (N, D)."""
        return self.encoder(x)

    def decode_logits(self, z: Tensor) -> Tensor:
        """g(z) before the sigmoid: (N, D) -> (N, C, H, W); use with BCE-with-logits."""
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        """The reconstruction r = sigmoid(g(f(x))), in (0, 1)."""
        return F.sigmoid(self.decode_logits(self.encode(x)))


class TransferClassifier(nn.Module):
    """The encoder of :class:`TransferAutoencoder` plus a linear softmax layer (returns logits)."""

    def __init__(
        self,
        hidden: Sequence[int] = (512, 256),
        code_size: int = 10,
        n_classes: int = 10,
        image_shape: Sequence[int] = (1, 28, 28),
    ) -> None:
        super().__init__()
        self.hidden = _check("TransferClassifier", hidden, code_size)
        if n_classes < 2:
            raise ValueError(f"TransferClassifier: n_classes must be >= 2, got {n_classes}")
        self.code_size = int(code_size)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.encoder = dense_encoder(self.image_shape, self.hidden, self.code_size)
        self.head = nn.Linear(self.code_size, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Class scores (N, K) = head(f(x))."""
        return self.head(self.encoder(x))

    def load_encoder(self, autoencoder: TransferAutoencoder) -> None:
        """Copy the pretrained encoder f of ``autoencoder`` into this classifier (the head is left alone)."""
        if (autoencoder.hidden, autoencoder.code_size, autoencoder.image_shape) != (
            self.hidden,
            self.code_size,
            self.image_shape,
        ):
            raise ValueError(
                f"TransferClassifier.load_encoder: the autoencoder's encoder is {autoencoder.image_shape} -> "
                f"{autoencoder.hidden} -> {autoencoder.code_size}, this classifier's "
                f"{self.image_shape} -> {self.hidden} -> {self.code_size}"
            )
        self.encoder.load_state_dict(autoencoder.encoder.state_dict())
