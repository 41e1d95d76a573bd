"""Classification losses: ``nll_loss`` and ``cross_entropy``, for class indices or probabilities.

Notation as in :mod:`tinyae.nn.losses`: input (N, C, d1, ..., dk) or (C,), C classes, with
``weight`` w (C,) per class. With class indices t::

    nll_loss:       l = -w[t] * input[t]                      input: log-probabilities
    cross_entropy:  l = -w[t] * log_softmax(input)[t]         input: unnormalised logits

``reduction="mean"`` divides by the sum of the weights used, and targets equal to
``ignore_index`` count for nothing, as in PyTorch.
"""

from __future__ import annotations

from typing import Any

from tinyae import backend
from tinyae.nn._loss_args import check_input, check_reduction, float_target, reduce
from tinyae.ops.activation import log_softmax
from tinyae.ops.arithmetic import where
from tinyae.ops.shape import squeeze, unsqueeze
from tinyae.tensor import Tensor

__all__ = ["cross_entropy", "nll_loss"]


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
    return reduce(loss, reduction)


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
    check_reduction(op, reduction)
    input = check_input(op, input)
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
    check_reduction(op, reduction)
    input = check_input(op, input)
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
        return reduce(smooth, reduction)
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
    target = float_target(op, input, target)
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
