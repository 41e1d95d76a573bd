"""Loss functions: functional forms (``mse_loss``, ...) and their Module wrappers (``MSELoss``, ...).

Notation: N is the batch size, C the number of classes, d1, ..., dk optional extra
dimensions (e.g. pixels for per-pixel classification). ``x`` is the input (the
prediction), ``t`` the target, ``w`` a weight. Every loss first computes an
elementwise loss l and then reduces it, as PyTorch does:

    reduction="none"   l itself
    reduction="mean"   the mean of l (weighted nll / cross-entropy: sum(l) / sum of the weights used)
    reduction="sum"    the sum of l

All losses are differentiable twice: they are either composed of Tensor ops or are
``Function``s whose backward is written with Tensor ops (so gradient penalties and
``gradgradcheck`` work). ``reduction`` and the other options are keyword-only: in
PyTorch the third positional argument of most losses is the deprecated
``size_average``, so a positional call could not mean the same thing in both.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tinyae import backend
from tinyae.autograd import Function
from tinyae.nn._loss_args import broadcast_weight, check_input, check_reduction, float_target, reduce
from tinyae.nn.cross_entropy import cross_entropy, nll_loss
from tinyae.nn.module import Module
from tinyae.ops.activation import _sigmoid, sigmoid, softplus
from tinyae.ops.arithmetic import abs, clip, exp, where
from tinyae.ops.shape import broadcast_to
from tinyae.tensor import Tensor

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "L1Loss",
    "MSELoss",
    "NLLLoss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "kl_div_normal",
    "l1_loss",
    "mse_loss",
    "nll_loss",
]

#: PyTorch clamps log(x) and log(1 - x) in binary_cross_entropy at -100, so that a
#: prediction of exactly 0 or 1 costs 100 instead of infinity.
_LOG_CLAMP = -100.0

#: PyTorch's floor for x (1 - x) in the gradient of binary_cross_entropy: 1e-12 stored as a
#: C float there, so float32(1e-12) = 1.0000000039958e-12 for identical gradients.
_BCE_EPS = float(np.float32(1e-12))


# ------------------------------------------------------------- regression
def mse_loss(input: Tensor, target: Any, *, reduction: str = "mean") -> Tensor:
    """Mean squared error: l = (x - t)^2 elementwise."""
    check_reduction("mse_loss", reduction)
    input = check_input("mse_loss", input)
    target = float_target("mse_loss", input, target)
    diff = input - target
    return reduce(diff * diff, reduction)


def l1_loss(input: Tensor, target: Any, *, reduction: str = "mean") -> Tensor:
    """Mean absolute error: l = |x - t| elementwise (gradient sign(x - t), 0 at x = t)."""
    check_reduction("l1_loss", reduction)
    input = check_input("l1_loss", input)
    target = float_target("l1_loss", input, target)
    return reduce(abs(input - target), reduction)


# ------------------------------------------------------ binary cross-entropy
def _clamped_log_array(a: Any) -> Any:
    """max(log(a), -100) on a raw array; log(0) = -inf is expected here, not an error."""
    xp = backend.get_array_module(a)
    if xp is np:
        with np.errstate(divide="ignore"):
            return np.maximum(np.log(a), _LOG_CLAMP)
    return xp.maximum(xp.log(a), _LOG_CLAMP)


class _ClampedLog(Function):
    """y = max(log(x), -100); dy/dx = 1/x where log(x) > -100, else 0.

    The backward divides by ``where(kept, x, 1)`` rather than by x so that x = 0
    (clamped, gradient 0) gives 0, not 0/0 = nan, also in double backward.
    """

    def forward(self, x):
        self.save_for_backward(x)
        return _clamped_log_array(x)

    def backward(self, gy):
        (x,) = self.saved_tensors
        kept = x.data > math.exp(_LOG_CLAMP)
        one = Tensor(backend.get_array_module(x.data).ones((), dtype=x.dtype))
        return gy * Tensor(kept.astype(x.dtype)) / where(kept, x, one)


class _BinaryCrossEntropy(Function):
    """l = -(t log(x) + (1 - t) log(1 - x)), both logs clamped at -100 (PyTorch's rule).

    dl/dx = (x - t) / max(x (1 - x), 1e-12)          (PyTorch's formula, exact away from 0 and 1)
    dl/dt = log(1 - x) - log(x)                       (the same clamped logs as the forward)
    """

    def forward(self, x, t):
        self.save_for_backward(x, t)
        return -(t * _clamped_log_array(x) + (1 - t) * _clamped_log_array(1 - x))

    def backward(self, gy):
        x, t = self.saved_tensors
        gx = gt = None
        if self.needs_input_grad[0]:
            gx = gy * (x - t) / clip(x * (1 - x), min=_BCE_EPS)
        if self.needs_input_grad[1]:
            gt = gy * (_ClampedLog()(1 - x) - _ClampedLog()(x))
        return gx, gt


def binary_cross_entropy(
    input: Tensor, target: Any, weight: Any = None, *, reduction: str = "mean"
) -> Tensor:
    """Binary cross-entropy of probabilities ``input`` in [0, 1] against ``target`` in [0, 1].

    l = -w (t log(x) + (1 - t) log(1 - x)), with each log clamped at -100 as PyTorch
    does (so x = 0 or 1 gives a finite loss). ``weight`` broadcasts to the input's
    shape. For logits, ``binary_cross_entropy_with_logits`` is exact and more stable.
    """
    op = "binary_cross_entropy"
    check_reduction(op, reduction)
    input = check_input(op, input)
    target = float_target(op, input, target)
    x = input.data
    # The range check reads a verdict back from the device: on a GPU that would be a copy (and a
    # wait) per call, so it runs on the CPU only. On a GPU an input outside [0, 1] shows up as a
    # nan loss instead (the log of a negative number); PyTorch stops it with a device-side assert.
    if not backend.is_cupy_array(x) and not bool(((x >= 0) & (x <= 1)).all()):
        bad = x[~((x >= 0) & (x <= 1))].ravel()[0].item()
        raise ValueError(f"{op}: all elements of input must lie in [0, 1] (probabilities), found {bad}")
    loss = _BinaryCrossEntropy()(input, target)
    if weight is not None:
        loss = loss * broadcast_weight(op, input, weight, "weight")
    return reduce(loss, reduction)


class _BinaryCrossEntropyWithLogits(Function):
    """BCE of sigmoid(x) against t, computed from the logit x without forming sigmoid(x).

    With sp(-x) = log(1 + e^-x) = -log(sigmoid(x)) = max(-x, 0) + log1p(e^-|x|) (never overflows):

        l = max(x, 0) - x t + log1p(e^-|x|)                       (no pos_weight)
        l = (1 - t) x + (1 + (p - 1) t) sp(-x)                    (pos_weight p weighs the t = 1 term)

    dl/dx = sigmoid(x) - t,   or  (1 - t) - (1 + (p - 1) t) sigmoid(-x)
    dl/dt = -x,               or  -x + (p - 1) sp(-x)
    dl/dp = t sp(-x)
    """

    def forward(self, x, t, p=None):
        self.save_for_backward(x, t, p)
        xp = backend.get_array_module(x)
        tail = xp.log1p(xp.exp(-xp.abs(x)))  # in [0, log 2]: exp never overflows
        if p is None:
            return xp.maximum(x, 0) - x * t + tail
        return (1 - t) * x + (1 + (p - 1) * t) * (xp.maximum(-x, 0) + tail)

    def backward(self, gy):
        x, t, p = self.saved_tensors
        has_p = p is not None
        need = self.needs_input_grad
        # threshold=inf: the exact log(1 + e^z), not PyTorch's linear shortcut above 20.
        sp_neg = softplus(-x, threshold=math.inf) if has_p and (need[1] or need[2]) else None
        gx = gt = gp = None
        if need[0]:
            gx = gy * (sigmoid(x) - t) if not has_p else gy * ((1 - t) - (1 + (p - 1) * t) * sigmoid(-x))
        if need[1]:
            gt = -gy * x if not has_p else gy * ((p - 1) * sp_neg - x)
        if has_p and need[2]:
            gp = gy * t * sp_neg
        return (gx, gt, gp) if has_p else (gx, gt)

    def backward_arrays(self, gy):
        """The common case on arrays, gx = gy (sigmoid(x) - t) in one buffer: no pos_weight, and
        only the logits need a gradient. (Three ops and their buffers otherwise.)"""
        x, t, p = self.saved_tensors
        if p is not None or self.needs_input_grad[1] or gy.shape != x.shape:
            return tuple(None if g is None else g.data for g in self.backward(Tensor(gy)))
        gx = _sigmoid(x.data)
        gx -= t.data
        gx *= gy
        return gx, None


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Any,
    weight: Any = None,
    *,
    reduction: str = "mean",
    pos_weight: Any = None,
) -> Tensor:
    """Binary cross-entropy of sigmoid(``input``) against ``target``, computed stably from logits.

    l = -w (p t log(sigmoid(x)) + (1 - t) log(1 - sigmoid(x))), where ``weight`` w
    broadcasts to the input's shape and ``pos_weight`` p (e.g. one per class, shape
    (C,)) weighs the positive term. Exact and finite for any finite logit (|x| = 1e4
    included), and its gradient sigmoid(x) - t never saturates to nan.
    """
    op = "binary_cross_entropy_with_logits"
    check_reduction(op, reduction)
    input = check_input(op, input)
    target = float_target(op, input, target)
    if pos_weight is None:
        loss = _BinaryCrossEntropyWithLogits()(input, target)
    else:
        pos_weight = broadcast_weight(op, input, pos_weight, "pos_weight")
        loss = _BinaryCrossEntropyWithLogits()(input, target, broadcast_to(pos_weight, input.shape))
    if weight is not None:
        loss = loss * broadcast_weight(op, input, weight, "weight")
    return reduce(loss, reduction)


# --------------------------------------------------------------------- VAE
def kl_div_normal(mu: Tensor, logvar: Tensor, *, reduction: str = "sum") -> Tensor:
    """KL divergence of the diagonal Gaussian N(mu, sigma^2) from the standard normal N(0, I).

    With logvar = log(sigma^2), per latent dimension (the VAE's closed form, Kingma & Welling
    2014, appendix B):

        KL(N(mu, sigma^2) || N(0, 1)) = -0.5 * (1 + logvar - mu^2 - exp(logvar))

    ``reduction``: "sum" (the default: the VAE loss sums it over latents and batch),
    "batchmean" (the sum divided by the batch size N = mu.shape[0]), "mean" (over every
    element) or "none" (elementwise, mu's shape).
    """
    op = "kl_div_normal"
    check_reduction(op, reduction, ("none", "mean", "sum", "batchmean"))
    mu = check_input(op, mu, "mu")
    logvar = float_target(op, mu, check_input(op, logvar, "logvar"), "logvar", input_name="mu")
    kl = -0.5 * (1 + logvar - mu * mu - exp(logvar))
    if reduction == "batchmean":
        return kl.sum() / (mu.shape[0] if mu.ndim > 0 else 1)
    return reduce(kl, reduction)


# ------------------------------------------------------------ Module forms
def _as_buffer(value: Any) -> Tensor | None:
    """A weight given as an array or list becomes a Tensor buffer (saved in ``state_dict``)."""
    if value is None or isinstance(value, Tensor):
        return value
    return Tensor(value)


class _Loss(Module):
    """Shared base of the loss Modules: holds ``reduction`` and checks it at construction."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        check_reduction(type(self).__name__, reduction)
        self.reduction = reduction


class _WeightedLoss(_Loss):
    """A loss with an optional ``weight``, registered as a buffer as in PyTorch (so ``.to()`` moves it)."""

    def __init__(self, weight: Any = None, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.register_buffer("weight", _as_buffer(weight))


class MSELoss(_Loss):
    """``mse_loss`` as a Module: ``MSELoss()(input, target)``."""

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """``l1_loss`` as a Module."""

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return l1_loss(input, target, reduction=self.reduction)


class BCELoss(_WeightedLoss):
    """``binary_cross_entropy`` (of probabilities) as a Module."""

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return binary_cross_entropy(input, target, self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """``binary_cross_entropy_with_logits`` as a Module; ``weight`` and ``pos_weight`` are buffers."""

    def __init__(self, weight: Any = None, reduction: str = "mean", pos_weight: Any = None) -> None:
        super().__init__(reduction)
        self.register_buffer("weight", _as_buffer(weight))
        self.register_buffer("pos_weight", _as_buffer(pos_weight))

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return binary_cross_entropy_with_logits(
            input, target, self.weight, reduction=self.reduction, pos_weight=self.pos_weight
        )


class NLLLoss(_WeightedLoss):
    """``nll_loss`` (of log-probabilities) as a Module."""

    def __init__(self, weight: Any = None, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__(weight, reduction)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return nll_loss(input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction)


class CrossEntropyLoss(_WeightedLoss):
    """``cross_entropy`` (of logits) as a Module."""

    def __init__(
        self,
        weight: Any = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(weight, reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must lie in [0, 1], got {label_smoothing}")
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return cross_entropy(
            input,
            target,
            self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )
