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
from tinyae.nn.module import Module
from tinyae.ops.activation import log_softmax, sigmoid, softplus
from tinyae.ops.arithmetic import abs, clip, exp, where
from tinyae.ops.shape import broadcast_to, squeeze, unsqueeze
from tinyae.tensor import Tensor, as_tensor

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

_REDUCTIONS = ("none", "mean", "sum")

#: PyTorch clamps log(x) and log(1 - x) in binary_cross_entropy at -100, so that a
#: prediction of exactly 0 or 1 costs 100 instead of infinity.
_LOG_CLAMP = -100.0

#: PyTorch's floor for x (1 - x) in the gradient of binary_cross_entropy: 1e-12 stored as a
#: C float there, so float32(1e-12) = 1.0000000039958e-12 for identical gradients.
_BCE_EPS = float(np.float32(1e-12))


# ------------------------------------------------------------------ validation
def _check_reduction(op: str, reduction: str, allowed: tuple[str, ...] = _REDUCTIONS) -> None:
    if reduction not in allowed:
        names = ", ".join(repr(r) for r in allowed)
        raise ValueError(f"{op}: reduction must be one of {names}, got {reduction!r}")


def _check_input(op: str, input: Any, name: str = "input") -> Tensor:
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(input).__name__}")
    if input.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be floating point, got {input.dtype}")
    return input


def _float_target(
    op: str, input: Tensor, target: Any, name: str = "target", input_name: str = "input"
) -> Tensor:
    """``target`` as a Tensor of ``input``'s shape and dtype, or a clear error.

    Arrays and Python numbers are converted to ``input``'s dtype; a Tensor of another
    floating dtype is refused (mixing float32 and float64 silently would hand float64
    gradients to float32 parameters).
    """
    if isinstance(target, Tensor):
        if target.dtype != input.dtype:
            raise TypeError(
                f"{op}: {input_name} is {input.dtype} but {name} is {target.dtype}; convert one of them "
                f"(e.g. {name}.to(dtype=input.dtype))"
            )
    else:
        xp = backend.get_array_module(input.data)
        target = as_tensor(xp.asarray(target, dtype=input.dtype), like=input)
    if target.shape != input.shape:
        raise ValueError(
            f"{op}: {input_name} shape {input.shape} and {name} shape {target.shape} differ; "
            f"they must be equal (no implicit broadcasting)"
        )
    return target


def _broadcast_weight(op: str, input: Tensor, weight: Any, name: str) -> Tensor:
    """A weight that broadcasts to ``input``'s shape (without enlarging it), as a Tensor."""
    if not isinstance(weight, Tensor):
        weight = Tensor(backend.get_array_module(input.data).asarray(weight, dtype=input.dtype))
    try:
        shape = np.broadcast_shapes(weight.shape, input.shape)
    except ValueError:
        shape = None
    if shape != input.shape:
        raise ValueError(
            f"{op}: {name} of shape {weight.shape} does not broadcast to input shape {input.shape}"
        )
    if weight.dtype != input.dtype:
        raise TypeError(f"{op}: input is {input.dtype} but {name} is {weight.dtype}")
    return weight


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


# ------------------------------------------------------------- regression
def mse_loss(input: Tensor, target: Any, *, reduction: str = "mean") -> Tensor:
    """Mean squared error: l = (x - t)^2 elementwise."""
    _check_reduction("mse_loss", reduction)
    input = _check_input("mse_loss", input)
    target = _float_target("mse_loss", input, target)
    diff = input - target
    return _reduce(diff * diff, reduction)


def l1_loss(input: Tensor, target: Any, *, reduction: str = "mean") -> Tensor:
    """Mean absolute error: l = |x - t| elementwise (gradient sign(x - t), 0 at x = t)."""
    _check_reduction("l1_loss", reduction)
    input = _check_input("l1_loss", input)
    target = _float_target("l1_loss", input, target)
    return _reduce(abs(input - target), reduction)


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
    _check_reduction(op, reduction)
    input = _check_input(op, input)
    target = _float_target(op, input, target)
    x = input.data
    # The range check reads a verdict back from the device: on a GPU that would be a copy (and a
    # wait) per call, so it runs on the CPU only. On a GPU an input outside [0, 1] shows up as a
    # nan loss instead (the log of a negative number); PyTorch stops it with a device-side assert.
    if not backend.is_cupy_array(x) and not bool(((x >= 0) & (x <= 1)).all()):
        bad = x[~((x >= 0) & (x <= 1))].ravel()[0].item()
        raise ValueError(f"{op}: all elements of input must lie in [0, 1] (probabilities), found {bad}")
    loss = _BinaryCrossEntropy()(input, target)
    if weight is not None:
        loss = loss * _broadcast_weight(op, input, weight, "weight")
    return _reduce(loss, reduction)


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
    _check_reduction(op, reduction)
    input = _check_input(op, input)
    target = _float_target(op, input, target)
    if pos_weight is None:
        loss = _BinaryCrossEntropyWithLogits()(input, target)
    else:
        pos_weight = _broadcast_weight(op, input, pos_weight, "pos_weight")
        loss = _BinaryCrossEntropyWithLogits()(input, target, broadcast_to(pos_weight, input.shape))
    if weight is not None:
        loss = loss * _broadcast_weight(op, input, weight, "weight")
    return _reduce(loss, reduction)


# ------------------------------------------------- negative log-likelihood
def _class_indices(op: str, input: Tensor, target: Any, ignore_index: int) -> tuple[Any, Any, Any]:
    """Validate integer class targets; return (target array, mask of the entries not ignored,
    mask of the entries out of range).

    ``input`` is (N, C, d1, ..., dk) and ``target`` (N, d1, ..., dk) with values in
    [0, C) or equal to ``ignore_index``. A target out of range is a ValueError on the CPU; on a
    GPU that check would read a verdict back from the device at every call, so there the
    out-of-range entries are returned instead and their loss is nan (as BCE does for inputs
    outside [0, 1]; PyTorch stops such a run with a device-side assert).
    """
    xp = backend.get_array_module(input.data)
    # A Tensor target must be on the input's device; plain data (lists, NumPy arrays) is moved there.
    t = target.data if isinstance(target, Tensor) else xp.asarray(target)
    if backend.device_of(t) != input.device:
        raise RuntimeError(f"{op}: input is on {input.device} but target is on {backend.device_of(t)}")
    if t.dtype.kind not in "iu":
        raise TypeError(
            f"{op}: target must hold integer class indices (int64), got {t.dtype}; "
            "for class probabilities use cross_entropy with a float target of the input's shape"
        )
    expected = (input.shape[0],) + input.shape[2:]
    if t.shape != expected:
        raise ValueError(
            f"{op}: input of shape {input.shape} (N, C, d1...) needs a target of shape {expected}, "
            f"got {t.shape}"
        )
    n_classes = input.shape[1]
    valid = t != ignore_index
    out_of_range = valid & ((t < 0) | (t >= n_classes))
    if not backend.is_cupy_array(t) and bool(out_of_range.any()):
        bad = int(t[out_of_range].ravel()[0])
        raise ValueError(
            f"{op}: target {bad} is out of bounds for {n_classes} classes "
            f"(valid: 0..{n_classes - 1}, or ignore_index={ignore_index})"
        )
    return t, valid, out_of_range


def _check_class_weight(op: str, input: Tensor, weight: Any, n_classes: int) -> Any:
    """The class weights as a raw (C,) array of the input's dtype (a constant, as in PyTorch)."""
    w = weight.data if isinstance(weight, Tensor) else backend.get_array_module(input.data).asarray(weight)
    if w.shape != (n_classes,):
        raise ValueError(f"{op}: weight must have shape ({n_classes},), one per class, got {w.shape}")
    if backend.device_of(w) != input.device:
        raise RuntimeError(f"{op}: input is on {input.device} but weight is on {backend.device_of(w)}")
    return w.astype(input.dtype, copy=False)


def _batched(op: str, input: Tensor, target: Any) -> tuple[Tensor, Any, bool]:
    """Unbatched (C,) input with a 0-d target becomes a batch of one: (1, C) and (1,)."""
    if input.ndim == 0:
        raise ValueError(f"{op}: input must have a class dimension, got a 0-d tensor")
    if input.ndim > 1:
        return input, target, False
    xp = backend.get_array_module(input.data)
    t = target.data if isinstance(target, Tensor) else xp.asarray(target)
    return unsqueeze(input, 0), t.reshape((1,) + t.shape), True


def _pick_class(input: Tensor, t_safe: Any) -> Tensor:
    """input[n, t[n, d...], d...] for every n and d: shape (N, d1, ..., dk)."""
    xp = backend.get_array_module(input.data)
    # Index arrays that broadcast to the target's shape: arange(N) along axis 0, etc.
    grids = [
        xp.arange(size).reshape(tuple(size if i == axis else 1 for i in range(t_safe.ndim)))
        for axis, size in enumerate(t_safe.shape)
    ]
    return input[(grids[0], t_safe, *grids[1:])]


def _nll(op: str, input: Tensor, target: Any, weight: Any, ignore_index: int, reduction: str) -> Tensor:
    """nll_loss of batched input (N, C, d1, ..., dk); shared with cross_entropy."""
    t, valid, out_of_range = _class_indices(op, input, target, ignore_index)
    xp = backend.get_array_module(input.data)
    kept = valid & ~out_of_range
    t_safe = xp.where(kept, t, 0)  # the other entries read class 0 and are replaced below
    picked = _pick_class(input, t_safe)  # (N, d1, ..., dk)
    w_t = valid.astype(input.dtype)
    if weight is not None:
        w_t = w_t * _check_class_weight(op, input, weight, input.shape[1])[t_safe]
    loss = -picked * Tensor(w_t)
    # Ignored entries count 0 (even for -inf inputs); out-of-range ones (only possible on a GPU) nan.
    # Always applied, rather than after asking whether any entry is ignored: that question would
    # be answered on the host, a copy from the GPU per call.
    fill = xp.where(out_of_range, xp.nan, 0.0).astype(input.dtype)
    loss = where(kept, loss, Tensor(fill))
    if reduction == "mean":
        # Weighted mean: sum_n w[t_n] l_n / sum_n w[t_n] (nan when every target is ignored, as PyTorch).
        return loss.sum() / Tensor(w_t.sum())
    return _reduce(loss, reduction)


def nll_loss(
    input: Tensor,
    target: Any,
    weight: Any = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Negative log-likelihood of integer class ``target`` under log-probabilities ``input``.

    ``input`` (N, C, d1, ..., dk) or (C,); ``target`` (N, d1, ..., dk) or () of int64
    class indices. l = -w[t] input[t] per sample; targets equal to ``ignore_index``
    contribute 0 and do not count in the mean, which is sum(l) / sum(w[t]).
    """
    op = "nll_loss"
    _check_reduction(op, reduction)
    input = _check_input(op, input)
    input, target, unbatched = _batched(op, input, target)
    loss = _nll(op, input, target, weight, ignore_index, reduction)
    return squeeze(loss, 0) if unbatched and reduction == "none" else loss


# ------------------------------------------------------------ cross-entropy
def _class_weight_view(input: Tensor, weight: Any, class_dim: int = 1) -> Tensor:
    """(C,) class weights shaped (1, C, 1, ..., 1) to broadcast against (N, C, d1, ..., dk)."""
    n_classes = input.shape[class_dim]
    w = _check_class_weight("cross_entropy", input, weight, n_classes)
    return Tensor(w.reshape(tuple(n_classes if i == class_dim else 1 for i in range(input.ndim))))


def cross_entropy(
    input: Tensor,
    target: Any,
    weight: Any = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy of unnormalised logits ``input`` against class indices or probabilities.

    ``input`` (N, C, d1, ..., dk) or (C,). ``target`` is either int64 class indices
    (N, d1, ..., dk) -- then l = -w[t] log_softmax(x)[t], i.e. ``nll_loss(log_softmax(x))`` --
    or class probabilities of the input's shape -- then l = -sum_c w_c t_c log_softmax(x)_c
    and "mean" divides by the number of samples.

    ``label_smoothing`` eps mixes the target with the uniform distribution over the C
    classes: (1 - eps) * (the loss above) + eps / C * sum_c (-w_c log_softmax(x)_c),
    normalised the same way as PyTorch.
    """
    op = "cross_entropy"
    _check_reduction(op, reduction)
    input = _check_input(op, input)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must lie in [0, 1], got {label_smoothing}")
    if isinstance(target, Tensor) and target.dtype.kind == "f":
        return _cross_entropy_probs(input, target, weight, ignore_index, reduction, label_smoothing)
    input, target, unbatched = _batched(op, input, target)
    logp = log_softmax(input, dim=1)  # (N, C, d1, ..., dk)
    loss = _nll(op, logp, target, weight, ignore_index, reduction)
    if label_smoothing > 0:
        loss = (1 - label_smoothing) * loss + (label_smoothing / input.shape[1]) * _uniform_term(
            logp, target, weight, ignore_index, reduction
        )
    return squeeze(loss, 0) if unbatched and reduction == "none" else loss


def _uniform_term(logp: Tensor, target: Any, weight: Any, ignore_index: int, reduction: str) -> Tensor:
    """sum_c -w_c log p_c per sample (0 where ignored), normalised like the nll term."""
    xp = backend.get_array_module(logp.data)
    t = target.data if isinstance(target, Tensor) else xp.asarray(target)
    valid = t != ignore_index
    weighted = logp * _class_weight_view(logp, weight) if weight is not None else logp
    smooth = -weighted.sum(axis=1)  # (N, d1, ..., dk)
    smooth = where(valid, smooth, Tensor(xp.zeros((), dtype=logp.dtype)))
    if reduction != "mean":
        return _reduce(smooth, reduction)
    if weight is None:
        return smooth.sum() / Tensor(valid.sum().astype(logp.dtype))
    w = _check_class_weight("cross_entropy", logp, weight, logp.shape[1])
    return smooth.sum() / Tensor((w[xp.where(valid, t, 0)] * valid).sum())


def _cross_entropy_probs(
    input: Tensor, target: Tensor, weight: Any, ignore_index: int, reduction: str, label_smoothing: float
) -> Tensor:
    op = "cross_entropy"
    if target.shape != input.shape:
        raise ValueError(
            f"{op}: a float target holds class probabilities and must have the input's shape {input.shape}, "
            f"got {target.shape}; class indices must be an integer (int64) tensor"
        )
    target = _float_target(op, input, target)
    if ignore_index >= 0:
        raise ValueError(f"{op}: ignore_index={ignore_index} is not supported with class-probability targets")
    class_dim = 1 if input.ndim > 1 else 0
    n_classes = input.shape[class_dim]
    if label_smoothing > 0:
        target = target * (1 - label_smoothing) + label_smoothing / n_classes
    logp = log_softmax(input, dim=class_dim)
    prod = logp * target
    if weight is not None:
        prod = prod * _class_weight_view(input, weight, class_dim)
    if reduction == "none":
        return -prod.sum(axis=class_dim)
    total = -prod.sum()
    n_samples = input.size // n_classes if n_classes else 0
    return total / n_samples if reduction == "mean" and n_samples else total


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
    _check_reduction(op, reduction, ("none", "mean", "sum", "batchmean"))
    mu = _check_input(op, mu, "mu")
    logvar = _float_target(op, mu, _check_input(op, logvar, "logvar"), "logvar", input_name="mu")
    kl = -0.5 * (1 + logvar - mu * mu - exp(logvar))
    if reduction == "batchmean":
        return kl.sum() / (mu.shape[0] if mu.ndim > 0 else 1)
    return _reduce(kl, reduction)


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
        _check_reduction(type(self).__name__, reduction)
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
