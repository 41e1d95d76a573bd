"""A small CNN digit classifier: the judge of generated samples (Inception Score, FID).

Notation: N batch, C channels, H x W image. A 3x3 conv with padding 1 keeps the size
(OH = H + 2 - 3 + 1 = H); a 2x2 max pool with stride 2 halves it (OH = floor(H / 2)).

With the defaults ``channels=(32, 64)``, ``hidden=128``, ``n_classes=10``::

    x (N, 1, 28, 28) in [0, 1]
    (x - 0.1307) / 0.3081                      -> (N, 1, 28, 28)    standardised (fixed, not learned)
    Conv2d(1, 32, 3, p1)   ReLU  MaxPool2d(2)  -> (N, 32, 14, 14)   strokes and edges
    Conv2d(32, 64, 3, p1)  ReLU  MaxPool2d(2)  -> (N, 64, 7, 7)     stroke combinations, loops, corners
    Flatten                                    -> (N, 3136)
    Linear(3136, 128)      ReLU                -> (N, 128)          features(x): what FID compares
    Dropout(0.5)                                                    (training only)
    Linear(128, 10)                            -> (N, 10)           logits; softmax gives p(y|x)

Why this network: it is the classic "Keras MNIST CNN" shape, big enough for 99.1%
test accuracy on MNIST after three epochs and small enough (about 420k parameters, 4.2M
multiply-adds per image, most of them in the second conv) to train in a couple of minutes
on two CPU cores. The pools give it some tolerance to small shifts, which generated digits
have. The inputs are standardised with MNIST's pixel mean and standard deviation (a
fixed map, the same for every dataset), since a network learns faster from inputs with
mean 0 and variance 1. The 128-d ReLU layer before the dropout and the last linear layer
is the *feature* layer: the Frechet distance compares the Gaussian statistics of these features for
generated and real images (the role Inception-v3's 2048-d pool layer has for natural images).
"""

from __future__ import annotations

from collections.abc import Sequence

import tinyae.nn as nn
from tinyae.tensor import Tensor

__all__ = ["DigitClassifier"]

PIXEL_MEAN, PIXEL_STD = 0.1307, 0.3081  # MNIST's training images


class DigitClassifier(nn.Module):
    """Two conv+pool blocks, a 128-unit feature layer, dropout and a linear classifier."""

    def __init__(
        self,
        n_classes: int = 10,
        channels: Sequence[int] = (32, 64),
        hidden: int = 128,
        dropout: float = 0.5,
        image_shape: tuple[int, int, int] = (1, 28, 28),
    ) -> None:
        super().__init__()
        if n_classes < 2 or len(channels) != 2 or any(c < 1 for c in channels) or hidden < 1:
            raise ValueError(
                f"DigitClassifier: need n_classes >= 2, two positive channel counts and hidden >= 1, "
                f"got n_classes={n_classes}, channels={tuple(channels)}, hidden={hidden}"
            )
        c_in, height, width = image_shape
        c1, c2 = channels
        self.n_classes = int(n_classes)
        self.image_shape = tuple(image_shape)
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c1, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(c2 * (height // 4) * (width // 4), hidden),
            nn.ReLU(),
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, n_classes)

    def features(self, x: Tensor) -> Tensor:
        """(N, 1, 28, 28) -> the penultimate ReLU features (N, hidden)."""
        return self.body((x - PIXEL_MEAN) / PIXEL_STD)

    def forward(self, x: Tensor) -> Tensor:
        """(N, 1, 28, 28) -> logits (N, n_classes)."""
        return self.head(self.dropout(self.features(x)))
