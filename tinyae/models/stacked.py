"""Stacked (denoising) autoencoder: greedy layer-wise pretraining, then a deep classifier.

Notation: N images per batch, P = C * H * W pixels, L hidden layers of widths
n_1 ... n_L (n_0 = P), K classes, act the hidden activation (ReLU or sigmoid).

Greedy pretraining (Bengio et al. 2007; Vincent et al. 2010) trains L one-hidden-layer
autoencoders, each on the codes of the one before::

    layer k (k = 0 .. L-1), input h_k (N, n_k) with h_0 = x flattened:
        h~_k     = corrupt(h_k)                       masking noise: zero a fraction of the inputs
        h_{k+1}  = act(h~_k W_k^T + b_k)              encoder k: Linear n_k -> n_{k+1}
        r_k      = out_k(h_{k+1} V_k^T + c_k)         decoder k: Linear n_{k+1} -> n_k
        loss     = BCE(r_k, h_k)  (pixels, or sigmoid codes in (0, 1))   or   MSE(r_k, h_k)  (ReLU codes)

Only encoder k trains in phase k; the encoders below it are frozen and just compute
its input. Stacking the L encoders gives a deep network x -> h_L; a softmax layer
on top turns it into a classifier, fine-tuned as a whole with cross-entropy::

    logits = head(dropout(act(W_L ... dropout(act(W_1 x)))))        (N, K)

:class:`StackedAutoencoder` holds the encoders and decoders (the unsupervised model);
:class:`StackedClassifier` is the deep classifier, which :meth:`StackedClassifier.load_encoders`
initialises from a pretrained stack, or which trains from its random initialisation
(the "scratch" baseline: the same network, without pretraining).
"""

from __future__ import annotations

from collections.abc import Sequence

import tinyae.nn as nn
import tinyae.nn.functional as F
from tinyae.tensor import Tensor

__all__ = ["ACTIVATIONS", "StackedAutoencoder", "StackedClassifier"]

ACTIVATIONS = ("relu", "sigmoid")


def _check_sizes(owner: str, hidden: Sequence[int], activation: str) -> list[int]:
    hidden = [int(h) for h in hidden]
    if not hidden or any(h < 1 for h in hidden):
        raise ValueError(f"{owner}: hidden needs at least one size, all >= 1; got {hidden}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"{owner}: activation must be one of {ACTIVATIONS}, got {activation!r}")
    return hidden


def _act(activation: str, z: Tensor) -> Tensor:
    return F.relu(z) if activation == "relu" else F.sigmoid(z)


def _pixels(image_shape: Sequence[int]) -> int:
    p = 1
    for s in image_shape:
        p *= int(s)
    return p


class StackedAutoencoder(nn.Module):
    """The L autoencoders of greedy pretraining: ``encoders[k]`` n_k -> n_{k+1}, ``decoders[k]`` back.

    ``layer_logits(k, h~)`` is autoencoder k's reconstruction before its output
    function; ``output_is_probability(k)`` says whether that output is a sigmoid
    (compare with BCE: pixels, or codes of sigmoid units) or the identity (ReLU
    codes: compare with MSE).
    """

    def __init__(
        self,
        hidden: Sequence[int] = (1000, 1000, 1000),
        image_shape: Sequence[int] = (1, 28, 28),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.hidden = _check_sizes("StackedAutoencoder", hidden, activation)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.activation = activation
        sizes = [_pixels(self.image_shape), *self.hidden]  # n_0 .. n_L
        self.sizes = sizes
        self.encoders = nn.ModuleList([nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])])
        self.decoders = nn.ModuleList([nn.Linear(b, a) for a, b in zip(sizes[:-1], sizes[1:])])

    @property
    def depth(self) -> int:
        """L, the number of hidden layers."""
        return len(self.hidden)

    def encode_layer(self, k: int, h: Tensor) -> Tensor:
        """h_{k+1} = act(h_k W_k^T + b_k): (N, n_k) -> (N, n_{k+1})."""
        return _act(self.activation, self.encoders[k](h))

    def output_is_probability(self, k: int) -> bool:
        """True when autoencoder k reconstructs values in (0, 1): the pixels, or sigmoid codes."""
        return k == 0 or self.activation == "sigmoid"

    def layer_logits(self, k: int, h: Tensor) -> Tensor:
        """Autoencoder k before its output function: h_{k+1} V_k^T + c_k, (N, n_k) -> (N, n_k)."""
        return self.decoders[k](self.encode_layer(k, h))

    def decode_layer(self, k: int, code: Tensor) -> Tensor:
        """Decoder k with its output function: (N, n_{k+1}) -> (N, n_k) in the range of h_k."""
        z = self.decoders[k](code)
        if self.output_is_probability(k):
            return F.sigmoid(z)
        return _act(self.activation, z)  # codes of ReLU units are >= 0

    def encode(self, x: Tensor, depth: int | None = None) -> Tensor:
        """The code after ``depth`` encoders (default all L): x (N, C, H, W) or (N, P) -> (N, n_depth)."""
        h = x.reshape(x.shape[0], -1)  # (N, P)
        for k in range(self.depth if depth is None else depth):
            h = self.encode_layer(k, h)
        return h

    def reconstruct(self, x: Tensor) -> Tensor:
        """Up through all encoders, down through all decoders: (N, C, H, W) -> (N, C, H, W) in (0, 1)."""
        h = self.encode(x)
        for k in reversed(range(self.depth)):
            h = self.decode_layer(k, h)
        return h.reshape(x.shape[0], *self.image_shape)


class StackedClassifier(nn.Module):
    """The deep classifier: the stacked encoders' architecture plus a softmax layer (returns logits).

    ``dropout`` is applied to every hidden layer's output in training mode.
    """

    def __init__(
        self,
        hidden: Sequence[int] = (1000, 1000, 1000),
        n_classes: int = 10,
        image_shape: Sequence[int] = (1, 28, 28),
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.hidden = _check_sizes("StackedClassifier", hidden, activation)
        if n_classes < 2:
            raise ValueError(f"StackedClassifier: n_classes must be >= 2, got {n_classes}")
        self.image_shape = tuple(int(s) for s in image_shape)
        self.activation = activation
        sizes = [_pixels(self.image_shape), *self.hidden]
        self.encoders = nn.ModuleList([nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])])
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(sizes[-1], n_classes)

    def features(self, x: Tensor) -> Tensor:
        """The top hidden layer h_L (dropout applied only in training mode): (N, ...) -> (N, n_L)."""
        h = x.reshape(x.shape[0], -1)  # (N, P)
        for enc in self.encoders:
            h = self.dropout(_act(self.activation, enc(h)))
        return h

    def forward(self, x: Tensor) -> Tensor:
        """Class scores (logits) (N, K); softmax and the loss are left to cross_entropy."""
        return self.head(self.features(x))

    def load_encoders(self, stack: StackedAutoencoder) -> None:
        """Copy the pretrained encoders of ``stack`` into this network (the head keeps its own init)."""
        if stack.hidden != self.hidden or stack.image_shape != self.image_shape:
            raise ValueError(
                f"StackedClassifier.load_encoders: stack has sizes {stack.image_shape} -> {stack.hidden}, "
                f"this classifier {self.image_shape} -> {self.hidden}"
            )
        for mine, pretrained in zip(self.encoders, stack.encoders):
            mine.load_state_dict(pretrained.state_dict())
