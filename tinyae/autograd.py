"""Reverse-mode differentiation: ``Function`` (one op and its derivative) and the engine.

Every op is a :class:`Function` with a ``forward`` on arrays and a ``backward`` on Tensors.
Calling one records it as its outputs' ``creator`` (when some input requires grad), with the
inputs it came from; that is the whole graph.

``run_backward`` (behind ``Tensor.backward`` and :func:`grad`) visits the graph in reverse
topological order, found iteratively so that depth is limited by memory, not by Python's
recursion limit, and asks every ``Function`` for the gradients of its inputs given the
gradients of its outputs. Backward rules are written with Tensor ops: with
``create_graph=False`` they run under ``no_grad`` (no graph, no cost); with
``create_graph=True`` they are recorded like any forward computation, so the gradient is
itself differentiable: double backward for free.

:func:`detect_anomaly` makes every op check its results, and names the first one that
produces NaN or Inf, with the line of your code that called it.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from tinyae import backend
from tinyae.anomaly import backward_rule, check_backward, check_forward, creation_site, is_anomaly_enabled
from tinyae.tensor import (
    Tensor,
    _as_tensors,
    _check_same_device,
    _grad_mode,
    _SetGradEnabled,
    as_tensor,
    is_grad_enabled,
)


class Function:
    """One differentiable operation: ``forward`` on arrays, ``backward`` on Tensors.

    A subclass writes the op and its derivative side by side::

        class Exp(Function):
            def forward(self, x):
                y = np.exp(x)
                self.save_for_backward(y)         # what backward will read
                return y

            def backward(self, gy):
                (y,) = self.saved_tensors         # y as a Tensor
                return gy * y                     # d/dx e^x = e^x

    * ``forward(self, *arrays)`` computes on arrays and calls ``save_for_backward`` with the
      arrays its backward reads: any of its inputs, its outputs, or new arrays (a mask).
      Nothing else is kept, as in PyTorch: an input that is not saved is remembered only as
      an :class:`Edge` (its shape, dtype and creator), so its array can be freed.
    * ``backward(self, *grad_outputs)`` is the rule, written with Tensor ops so that it can
      itself be differentiated (double backward). It returns one gradient per input, None
      where ``self.needs_input_grad[i]`` is False. ``self.inputs[i]`` gives an input's shape
      and dtype; ``self.saved_tensors`` the saved values, as Tensors, in the order saved.
    * ``backward_arrays(self, *grad_outputs)``, optional: the same rule on arrays, for ops where
      fusing passes pays. The engine calls it instead of ``backward`` when the gradient's own
      graph is not recorded (``create_graph=False``: every training step).
    """

    inputs: tuple[Tensor | Edge, ...]
    needs_input_grad: tuple[bool, ...]
    _recording = False

    def __call__(self, *inputs: Any) -> Any:
        xs = _as_tensors(inputs, type(self).__name__)
        _check_same_device(type(self).__name__, xs)
        record = _grad_mode.enabled and any(x.requires_grad for x in xs)
        self.needs_input_grad = tuple(x.requires_grad for x in xs) if record else (False,) * len(xs)
        self._recording = record
        if is_anomaly_enabled():
            with np.errstate(all="ignore"):  # a NaN or Inf is reported by check_forward instead
                ys = self.forward(*[x.data for x in xs])
        else:
            ys = self.forward(*[x.data for x in xs])
        multi = isinstance(ys, tuple)
        outputs = tuple(Tensor(y) for y in (ys if multi else (ys,)))
        if is_anomaly_enabled():
            self._site = creation_site()
            check_forward(self, xs, outputs)
        if record:
            kept = self._resolve_saved(xs, outputs)
            self.inputs = tuple(x if x.creator is None or i in kept else Edge(x) for i, x in enumerate(xs))
            self._outputs = tuple(weakref.ref(y) for y in outputs)
            self._out_meta = tuple((y.shape, y.dtype) for y in outputs)
            for i, y in enumerate(outputs):
                y.requires_grad = y.data.dtype.kind == "f"
                y.creator = self
                y._out_index = i
        return outputs if multi else outputs[0]

    def forward(self, *xs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, *gys: Tensor) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.backward")

    backward_arrays: Any = None  # optional array fast path (see the class docstring)

    def save_for_backward(self, *arrays: Any) -> None:
        """Keep these arrays (inputs, outputs or new ones; None allowed) for ``backward``.

        A no-op when no graph is recorded (inference, or no input requires grad).
        """
        if self._recording:
            self._to_save = arrays

    @property
    def saved_tensors(self) -> tuple[Tensor | None, ...]:
        """What ``forward`` saved, as Tensors: inputs and outputs keep their place in the graph."""
        out: list[Tensor | None] = []
        for kind, v in self._saved:
            if kind == "input":
                out.append(self.inputs[v])
            elif kind == "output":
                out.append(self._output(v))
            else:  # an array of its own ("array") or None
                out.append(None if v is None else Tensor(v))
        return tuple(out)

    def _resolve_saved(self, xs: Sequence[Tensor], outputs: Sequence[Tensor]) -> set[int]:
        """Sort what forward saved into inputs, outputs and other arrays; return the inputs kept."""
        kept: set[int] = set()
        saved = []
        self._saved_outputs: dict[int, Any] = {}
        for a in self.__dict__.pop("_to_save", ()):
            i = next((i for i, x in enumerate(xs) if x.data is a), None) if a is not None else None
            j = next((j for j, y in enumerate(outputs) if y.data is a), None) if i is None else None
            if i is not None:
                kept.add(i)
                saved.append(("input", i))
            elif j is not None:
                # The array, not the Tensor: the Tensor points back here (a cycle).
                self._saved_outputs[j] = a
                saved.append(("output", j))
            else:
                saved.append(("array", a))
        self._saved = tuple(saved)
        return kept

    def _output(self, i: int) -> Tensor:
        """The i-th output Tensor, for a differentiable backward rule.

        Outputs are referenced weakly (a strong reference would be a cycle). If the user
        dropped the output, an equivalent Tensor is rebuilt from the saved array with the
        same creator and index: the graph identifies it by exactly those.
        """
        y = self._outputs[i]()
        if y is None:
            y = Tensor(self._saved_outputs[i])
            y.requires_grad, y.creator, y._out_index = True, self, i
        return y

    def release(self) -> None:
        """Drop inputs and saved buffers once backward has used them."""
        self.__dict__.clear()
        self._released = True


class Edge:
    """What a Function remembers of an input whose values its backward never reads.

    It keeps the graph connection (``creator``, output index) and the metadata the
    backward rule may use (shape, dtype, device), but not the array, so that an
    intermediate result can be freed as soon as nothing else needs it.
    """

    __slots__ = ("creator", "_out_index", "requires_grad", "shape", "dtype", "device")

    def __init__(self, x: Tensor) -> None:
        self.creator, self._out_index, self.requires_grad = x.creator, x._out_index, x.requires_grad
        self.shape, self.dtype, self.device = x.shape, x.dtype, x.device

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def data(self) -> Any:
        name = type(self.creator).__name__ if self.creator is not None else "?"
        raise RuntimeError(
            f"an op's backward read the values of an input produced by {name}, but its forward did "
            "not save it; pass that input to save_for_backward"
        )


class HookHandle:
    """What ``register_post_accumulate_grad_hook`` returns: ``remove()`` unregisters."""

    _next_id = 0
    active = 0  # hooks registered on any tensor; 0 lets backward skip the bookkeeping

    def __init__(self, hooks: dict, hook: Any) -> None:
        HookHandle._next_id += 1
        self.id, self._hooks = HookHandle._next_id, hooks
        hooks[self.id] = hook
        HookHandle.active += 1

    def remove(self) -> None:
        if self._hooks.pop(self.id, None) is not None:
            HookHandle.active -= 1


# ------------------------------------------------------------------ backward
def _topological_order(roots: Iterable[Function]) -> list[Function]:
    """Functions reachable from ``roots``, each after every Function that consumes it.

    Iterative depth-first search: an explicit stack instead of recursion, so a chain
    of 100,000 ops is fine.
    """
    order: list[Function] = []
    visited: set[int] = set()
    stack = [(root, False) for root in roots]
    while stack:
        f, finished = stack.pop()
        if finished:
            order.append(f)  # post-order: every producer of f's inputs is already in `order`
            continue
        if id(f) in visited:
            continue
        visited.add(id(f))
        stack.append((f, True))
        for x in getattr(f, "inputs", ()):
            if x.creator is not None and id(x.creator) not in visited:
                stack.append((x.creator, False))
    order.reverse()  # consumers first
    return order


def run_backward(
    outputs: Sequence[Tensor],
    grad_outputs: Sequence[Any],
    retain_graph: bool | None = None,
    create_graph: bool = False,
    inputs: Sequence[Tensor] | None = None,
) -> list[Tensor | None] | None:
    """The engine behind ``Tensor.backward`` and ``tinyae.grad``.

    With ``inputs=None`` gradients are accumulated into leaves' ``.grad``; otherwise
    the gradients with respect to ``inputs`` are returned and no ``.grad`` changes.
    """
    if retain_graph is None:
        retain_graph = create_graph
    # Pending gradient of every non-leaf output: key (id(creator), output index).
    grads: dict[tuple[int, int], Tensor] = {}
    leaf_grads: dict[int, Tensor] = {}
    wanted = {id(t): t for t in inputs} if inputs is not None else None
    roots = []
    with _SetGradEnabled(create_graph):
        for y, gy in zip(outputs, grad_outputs):
            gy = as_tensor(gy, like=y, op="backward")
            if gy.shape != y.shape:
                raise ValueError(f"backward: grad has shape {gy.shape} but the output has shape {y.shape}")
            if y.creator is None:
                if y.requires_grad:
                    _deliver_leaf(y, gy, wanted, leaf_grads)
                continue
            _accumulate(grads, (id(y.creator), y._out_index), gy)
            roots.append(y.creator)

    order = _topological_order(roots)
    hooked = _hooked_leaves(order, outputs) if HookHandle.active and wanted is None else {}
    with _SetGradEnabled(create_graph):
        for f in order:
            if getattr(f, "_released", False):
                raise RuntimeError(
                    f"backward: trying to backward through the graph a second time ({type(f).__name__}); "
                    "its saved buffers were freed. Pass retain_graph=True to the first backward."
                )
            gys = []
            for i in range(len(f._out_meta)):
                gy = grads.pop((id(f), i), None)
                if gy is not None:
                    y = f._outputs[i]()
                    if y is not None and y._retains_grad and wanted is None:
                        y.grad = gy if y.grad is None else y.grad + gy
                    if wanted is not None and y is not None and id(y) in wanted:
                        leaf_grads[id(y)] = gy
                gys.append(gy)
            if any(g is not None for g in gys):
                _backward_one(f, gys, grads, wanted, leaf_grads)
            if hooked:
                _count_down_hooks(f, hooked)
            if not retain_graph:
                f.release()
        for x, pending in list(hooked.values()):  # leaves that were roots themselves
            if pending == 0 and x.grad is not None:
                _fire_hooks(x)

    if wanted is None:
        return None
    return [leaf_grads.get(id(t)) for t in inputs]


def _hooked_leaves(order: list[Function], outputs: Sequence[Tensor]) -> dict[int, list]:
    """For each leaf with hooks: [leaf, how many Function inputs will still deliver to it]."""
    hooked: dict[int, list] = {}
    for y in outputs:
        if y.creator is None and y.__dict__.get("_grad_hooks"):
            hooked.setdefault(id(y), [y, 0])
    for f in order:
        for x, need in zip(getattr(f, "inputs", ()), getattr(f, "needs_input_grad", ())):
            if need and x.creator is None and x.__dict__.get("_grad_hooks"):
                hooked.setdefault(id(x), [x, 0])[1] += 1
    return hooked


def _count_down_hooks(f: Function, hooked: dict[int, list]) -> None:
    """After ``f``'s backward: fire the hooks of leaves that no later Function feeds."""
    for x, need in zip(f.inputs, f.needs_input_grad):
        entry = hooked.get(id(x)) if need else None
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                del hooked[id(x)]
                if x.grad is not None:
                    _fire_hooks(x)


def _fire_hooks(x: Tensor) -> None:
    for hook in list(x._grad_hooks.values()):
        hook(x)


def _backward_one(f: Function, gys: list, grads: dict, wanted: dict | None, leaf_grads: dict) -> None:
    """Call ``f.backward`` and route each input gradient to a leaf or to its creator."""
    if any(g is None for g in gys):  # outputs that got no gradient count as zero
        xp = backend.get_array_module(next(g for g in gys if g is not None).data)
        gys = [g if g is not None else Tensor(xp.zeros(s, dtype=d)) for g, (s, d) in zip(gys, f._out_meta)]
    if is_anomaly_enabled():
        with backward_rule():
            gxs = _apply_rule(f, gys)
        check_backward(f, gys, gxs)
    else:
        gxs = _apply_rule(f, gys)
    for x, gx, need in zip(f.inputs, gxs, f.needs_input_grad):
        if not need or gx is None:
            continue
        if gx.shape != x.shape:
            raise RuntimeError(
                f"{type(f).__name__}.backward returned a gradient of shape {gx.shape} "
                f"for an input of shape {x.shape}"
            )
        if gx.dtype != x.dtype:  # e.g. a float32 input used with float64 data: its gradient is float32
            gx = gx.to(dtype=x.dtype)
        if x.creator is None:
            _deliver_leaf(x, gx, wanted, leaf_grads, fresh=_made_for_one(f, gx, gxs, gys))
        else:
            _accumulate(grads, (id(x.creator), x._out_index), gx)


def _apply_rule(f: Function, gys: list[Tensor]) -> tuple:
    """f's gradients for its inputs: its array fast path when no graph of them is recorded."""
    if f.backward_arrays is not None and not is_grad_enabled():
        gxs = f.backward_arrays(*[g.data for g in gys])
        return tuple(None if g is None else Tensor(g) for g in (gxs if isinstance(gxs, tuple) else (gxs,)))
    gxs = f.backward(*gys)
    return gxs if isinstance(gxs, tuple) else (gxs,)


def _accumulate(store: dict, key: Any, g: Tensor) -> None:
    store[key] = g if key not in store else store[key] + g


def _made_for_one(f: Function, gx: Tensor, gxs: Sequence[Tensor | None], gys: Sequence[Tensor]) -> bool:
    """Whether ``gx`` is a new array that ``f``, one of tinyae's own rules (a user's rule may return
    arrays it keeps), made for one input alone: not one of its incoming gradients ``gys``, not
    also returned for another input, not a view."""
    a = gx.data
    if not type(f).__module__.startswith("tinyae.") or a.base is not None:
        return False
    if not getattr(a.flags, "writeable", True) or any(g.data is a for g in gys):
        return False
    return sum(g is not None and g.data is a for g in gxs) == 1


def _deliver_leaf(x: Tensor, g: Tensor, wanted: dict | None, leaf_grads: dict, fresh: bool = False) -> None:
    """Leaf gradient: into ``x.grad`` for ``backward``, into the results for ``grad``.

    ``fresh``: ``g`` is a new array that one of tinyae's backward rules made for this input alone
    (not one of the rule's incoming gradients, not returned for another input, not a view), so
    ``x.grad`` may take it as it is, as PyTorch's does; otherwise ``x.grad`` gets a copy (a
    training step saves copying every parameter's gradient: 2.6 MB on the VAE of W4)."""
    if wanted is None:
        if x.grad is not None:
            # A fresh sum rather than an in-place add: the same gradient Tensor may be
            # handed to several leaves (e.g. both inputs of ``a + b``).
            x.grad = x.grad + g
        elif is_grad_enabled():  # create_graph=True: keep the differentiable gradient as it is
            x.grad = g
        else:
            # An own, writable array: ``g`` may be a read-only broadcast view (from sum) or shared
            # with another leaf, and optimizers update ``.grad.data`` in place.
            x.grad = g if fresh else Tensor(g.data.copy())
    elif id(x) in wanted:
        _accumulate(leaf_grads, id(x), g)


def grad(
    outputs: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor],
    grad_outputs: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool = False,
) -> tuple[Tensor | None, ...]:
    """Gradients of ``outputs`` with respect to ``inputs`` (``torch.autograd.grad``).

    Returns one Tensor per input; ``.grad`` attributes are left untouched. With
    ``create_graph=True`` the results are differentiable (e.g. gradient penalties).
    """
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    single = isinstance(inputs, Tensor)
    inputs = [inputs] if single else list(inputs)
    for t in inputs:
        if not isinstance(t, Tensor):
            raise TypeError(f"grad: inputs must be Tensors, got {type(t).__name__}")
        if not t.requires_grad:
            raise RuntimeError("grad: one of the inputs does not require grad")
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, Tensor) or not isinstance(grad_outputs, (list, tuple)):
        grad_outputs = [grad_outputs]
    gys = []
    for y, gy in zip(outputs, grad_outputs):
        if not y.requires_grad:
            raise RuntimeError("grad: one of the outputs does not require grad and has no grad_fn")
        if gy is None:
            if y.size != 1:
                raise RuntimeError(
                    f"grad: grad_outputs can be omitted only for scalar outputs, got shape {y.shape}"
                )
            gy = Tensor(backend.get_array_module(y.data).ones_like(y.data))
        gys.append(gy)
    result = run_backward(outputs, gys, retain_graph=retain_graph, create_graph=create_graph, inputs=inputs)
    if not allow_unused and any(g is None for g in result):
        raise RuntimeError(
            "grad: one of the differentiated tensors appears not to have been used in the graph; "
            "pass allow_unused=True if this is intended"
        )
    return tuple(result)
