"""Gradient checking: compare backward with central finite differences.

For a function ``y = f(x)`` and a fixed random upstream gradient ``v``, the scalar
``L(x) = sum(v * f(x))`` has gradient ``dL/dx = v^T J`` — exactly what backward
computes. Central differences estimate it element by element::

    dL/dx_i  ~=  (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)       error O(eps^2)

Run it in float64: in float32 the rounding error of L (~1e-7 |L|) divided by
2 eps swamps the answer. ``mode="random"`` checks one random direction ``d`` per
input instead, ``dL/dx . d``, which costs two evaluations instead of 2 x.size.

``gradgradcheck`` applies the same test to the gradient itself (as a function of
the inputs and of ``v``), which checks every second derivative that double
backward (``create_graph=True``) provides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tinyae import backend
from tinyae.autograd import grad
from tinyae.tensor import Tensor, enable_grad, no_grad


class GradcheckError(AssertionError):
    """Raised when analytic and numeric gradients disagree."""


def _as_tuple(y: Any) -> tuple[Tensor, ...]:
    return tuple(y) if isinstance(y, (tuple, list)) else (y,)


def _checked_inputs(op: str, inputs: Sequence[Any]) -> tuple[list[Any], list[int]]:
    inputs = list(inputs) if isinstance(inputs, (tuple, list)) else [inputs]
    diff = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not diff:
        raise ValueError(f"{op}: no input has requires_grad=True, nothing to check")
    for i in diff:
        if inputs[i].dtype != np.float64:
            raise TypeError(
                f"{op}: input {i} is {inputs[i].dtype}; finite differences need float64 inputs "
                "(make them with dtype=float64)"
            )
        data = inputs[i].data
        if not getattr(data.flags, "writeable", True):  # CuPy arrays are always writable
            raise ValueError(f"{op}: input {i} is a read-only array (a broadcast view?); pass a copy")
        for j, other in enumerate(inputs):
            # Perturbing input i would silently move input j too, and the numeric gradient would be wrong.
            if j != i and isinstance(other, Tensor) and _share_memory(data, other.data):
                raise ValueError(f"{op}: inputs {i} and {j} share memory; pass separate copies")
    return inputs, diff


def _share_memory(a: Any, b: Any) -> bool:
    if backend.is_cupy_array(a) or backend.is_cupy_array(b):
        if backend.device_of(a) != backend.device_of(b):
            return False
        # Overlap of the byte ranges [ptr, ptr + nbytes): conservative, like np.may_share_memory.
        return a.data.ptr < b.data.ptr + b.nbytes and b.data.ptr < a.data.ptr + a.nbytes
    return bool(np.shares_memory(a, b))


def _loss(fn: Callable, inputs: list[Any], vs: Sequence[Any]) -> float:
    """L = sum_k sum(v_k * y_k) evaluated without building a graph."""
    with no_grad():
        ys = _as_tuple(fn(*inputs))
    return float(sum(float((v * y.data).sum()) for v, y in zip(vs, ys)))


def gradcheck(
    fn: Callable,
    inputs: Sequence[Any],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    mode: str = "full",
    seed: int = 0,
    raise_exception: bool = True,
) -> bool:
    """Check ``fn``'s backward against central differences for every input with requires_grad.

    ``mode="full"`` perturbs every element; ``mode="random"`` one random direction per
    input (for large inputs). Passes when ``|analytic - numeric| <= atol + rtol * |numeric|``
    everywhere; otherwise raises ``GradcheckError`` naming the worst element.
    """
    if mode not in ("full", "random"):
        raise ValueError(f"gradcheck: mode must be 'full' or 'random', got {mode!r}")
    inputs, diff = _checked_inputs("gradcheck", inputs)
    rng = np.random.default_rng(seed)
    ys = _as_tuple(fn(*inputs))
    vs = [rng.standard_normal(y.shape) for y in ys]
    xp = backend.get_array_module(inputs[diff[0]].data)
    vs = [xp.asarray(v, dtype=y.dtype) for v, y in zip(vs, ys)]

    live = [(y, v) for y, v in zip(ys, vs) if y.requires_grad]
    if live:
        analytic = grad([y for y, _ in live], [inputs[i] for i in diff],
                        [Tensor(v) for _, v in live], allow_unused=True)  # fmt: skip
    else:
        analytic = [None] * len(diff)

    ok = True
    for i, g in zip(diff, analytic):
        x = inputs[i]
        a = backend.to_device(g.data, "cpu") if g is not None else np.zeros(x.shape)
        if mode == "full":
            numeric = np.zeros(x.shape)
            for k in np.ndindex(*x.shape):  # indexing x.data in place works for any strides
                old = x.data[k].item()
                x.data[k] = old + eps
                plus = _loss(fn, inputs, vs)
                x.data[k] = old - eps
                minus = _loss(fn, inputs, vs)
                x.data[k] = old
                numeric[k] = (plus - minus) / (2 * eps)
            ok &= _compare("gradcheck", i, a, numeric, atol, rtol, raise_exception)
        else:
            d = xp.asarray(rng.standard_normal(x.shape))
            old = x.data.copy()
            x.data = old + eps * d
            plus = _loss(fn, inputs, vs)
            x.data = old - eps * d
            minus = _loss(fn, inputs, vs)
            x.data = old
            numeric = np.array((plus - minus) / (2 * eps))
            directional = np.array(float((a * backend.to_device(d, "cpu")).sum()))
            ok &= _compare(
                "gradcheck (random direction)", i, directional, numeric, atol, rtol, raise_exception
            )
    return ok


def _compare(op: str, i: int, analytic: np.ndarray, numeric: np.ndarray, atol: float, rtol: float,
             raise_exception: bool) -> bool:  # fmt: skip
    err = np.abs(analytic - numeric)
    excess = err - (atol + rtol * np.abs(numeric))
    if excess.size == 0 or excess.max() <= 0:
        return True
    k = np.unravel_index(int(np.argmax(excess)), excess.shape)
    rel = err[k] / max(abs(numeric[k]), 1e-300)
    msg = (
        f"{op}: gradient of input {i} is wrong at index {tuple(int(j) for j in k)}: "
        f"analytic {analytic[k]:.10g}, numeric {numeric[k]:.10g}, "
        f"abs error {err[k]:.3g} (atol {atol:g}), rel error {rel:.3g} (rtol {rtol:g}); "
        f"{int((excess > 0).sum())} of {excess.size} elements fail"
    )
    if raise_exception:
        raise GradcheckError(msg)
    return False


def gradgradcheck(
    fn: Callable,
    inputs: Sequence[Any],
    grad_outputs: Sequence[Any] | None = None,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    mode: str = "full",
    seed: int = 0,
    raise_exception: bool = True,
) -> bool:
    """Check second derivatives: gradcheck of ``(x, v) -> v^T J(x)`` computed with ``create_graph=True``."""
    inputs, diff = _checked_inputs("gradgradcheck", inputs)
    n = len(inputs)
    ys = _as_tuple(fn(*inputs))
    if grad_outputs is None:
        rng = np.random.default_rng(seed + 1)
        xp = backend.get_array_module(inputs[diff[0]].data)
        grad_outputs = [Tensor(xp.asarray(rng.standard_normal(y.shape)), requires_grad=True) for y in ys]
    grad_outputs = list(_as_tuple(grad_outputs))

    def first_grads(*args: Any) -> tuple[Tensor, ...]:
        xs, vs = list(args[:n]), args[n:]
        with enable_grad():  # also when gradcheck evaluates us under no_grad
            outs = _as_tuple(fn(*xs))
            live = [(y, v) for y, v in zip(outs, vs) if y.requires_grad]
            gs = grad([y for y, _ in live], [xs[i] for i in diff], [v for _, v in live],
                      create_graph=True, allow_unused=True)  # fmt: skip
        xp = backend.get_array_module(xs[diff[0]].data)
        return tuple(g if g is not None else Tensor(xp.zeros(xs[i].shape)) for i, g in zip(diff, gs))

    return gradcheck(first_grads, [*inputs, *grad_outputs], eps, atol, rtol, mode, seed, raise_exception)
