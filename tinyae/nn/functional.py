"""``tinyae.nn.functional`` (import as ``F``): every functional op in one place, as ``torch.nn.functional``.

This module only gathers names; each op lives (with its formulas) where it is implemented:

=====================================  =====================================
conv2d, conv_transpose2d; linear          :mod:`tinyae.nn.conv`; :mod:`tinyae.nn.linear`
batch_norm                             :mod:`tinyae.nn.norm`
max_pool2d, avg_pool2d, interpolate    :mod:`tinyae.nn.pooling`
dropout                                :mod:`tinyae.nn.dropout`
losses (mse_loss, ..., kl_div_normal)  :mod:`tinyae.nn.losses`
activations, pad                       :mod:`tinyae.ops`
=====================================  =====================================
"""

from tinyae.nn.conv import conv2d, conv_transpose2d
from tinyae.nn.dropout import dropout
from tinyae.nn.linear import linear
from tinyae.nn.losses import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    kl_div_normal,
    l1_loss,
    mse_loss,
    nll_loss,
)
from tinyae.nn.norm import batch_norm
from tinyae.nn.pooling import avg_pool2d, interpolate, max_pool2d, upsample
from tinyae.ops import leaky_relu, log_softmax, pad, relu, sigmoid, softmax, softplus, tanh

__all__ = [
    "avg_pool2d", "batch_norm", "binary_cross_entropy", "binary_cross_entropy_with_logits", "conv2d",
    "conv_transpose2d", "cross_entropy", "dropout", "interpolate", "kl_div_normal", "l1_loss", "leaky_relu",
    "linear", "log_softmax", "max_pool2d", "mse_loss", "nll_loss", "pad", "relu", "sigmoid", "softmax",
    "softplus", "tanh", "upsample",
]  # fmt: skip
