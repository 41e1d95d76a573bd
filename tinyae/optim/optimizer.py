"""``Optimizer``: the base class of SGD, Adam, AdamW and RMSprop.

An optimizer holds

* ``param_groups``: a list of dicts, each with ``"params"`` (a list of Tensors) and that
  group's hyper-parameters (``"lr"``, ``"momentum"``, ...). Options not given for a group
  take the optimizer's ``defaults``, so ``SGD([{"params": enc}, {"params": dec, "lr": 0.1}],
  lr=0.01)`` trains the decoder ten times faster than the encoder.
* ``state``: per-parameter buffers (a momentum buffer, Adam's running averages, the step
  count), created lazily at a parameter's first update.

Notation used by the subclasses, for one parameter p at step k = 1, 2, ...: g is its gradient
``p.grad``, lr the learning rate, wd the weight decay.

Two rules of the update loop (``step``):

* Parameters are updated IN PLACE (``p.data`` keeps its identity, so a model holding ``p``
  sees the change) with array ops writing into existing buffers: the loop allocates no
  parameter-sized arrays after the first step. Temporaries live in a small workspace sized
  for the largest parameter and reused by all of them.
* ``p.grad`` is only read, never written: the same gradient array may be shared by two leaves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from tinyae import backend
from tinyae.tensor import Tensor, enable_grad, no_grad

__all__ = ["Optimizer"]


class _Workspace:
    """Scratch arrays reused across parameters and steps (one per slot, device and dtype).

    ``get(like, slot)`` returns an uninitialised array of ``like``'s shape and dtype; two
    different slots never alias each other, the same slot always does.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[str, str, int], Any] = {}

    def get(self, like: Any, slot: int) -> Any:
        key = (backend.device_of(like), like.dtype.str, slot)
        buf = self._buffers.get(key)
        if buf is None or buf.size < like.size:
            xp = backend.get_array_module(like)
            buf = xp.empty(like.size, dtype=like.dtype)
            self._buffers[key] = buf
        return buf[: like.size].reshape(like.shape)


class Optimizer:
    """Base class: parameter groups, per-parameter state, ``zero_grad``, ``step``, state dicts.

    Subclasses define ``_validate(group)`` (raise ValueError naming a bad hyper-parameter),
    ``_init_state(p, group)`` (the fresh state of one parameter) and
    ``_update(p, g, state, group)`` (one in-place update of the array ``p`` from gradient ``g``).
    """

    #: state entries that are plain numbers (e.g. the step count), not per-element arrays
    _scalar_state: tuple[str, ...] = ("step",)

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        name = type(self).__name__
        if isinstance(params, Tensor) or isinstance(params, dict):
            raise TypeError(
                f"{name}: params must be an iterable of Tensors or of dicts (parameter groups), "
                f"got a {type(params).__name__}; wrap it in a list"
            )
        self.defaults = dict(defaults)
        self.state: dict[Tensor, dict[str, Any]] = {}
        self.param_groups: list[dict[str, Any]] = []
        self._workspace = _Workspace()
        groups = list(params)
        if not groups:
            raise ValueError(f"{name}: optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # ------------------------------------------------------------- groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters (e.g. a newly unfrozen layer) with its own options."""
        name = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(f"{name}.add_param_group: expected a dict, got {type(param_group).__name__}")
        params = param_group.get("params")
        if params is None:
            raise ValueError(f"{name}.add_param_group: the group has no 'params' entry")
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError(f"{name}: params must be an ordered collection (a list), not a set")
        else:
            params = list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: can only optimize Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"{name}: can't optimize a non-leaf Tensor (one computed from others)")
        group = {**self.defaults, **param_group, "params": params}
        self._validate(group)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        ids = [id(p) for p in params]
        if len(set(ids)) != len(ids) or seen & set(ids):
            raise ValueError(f"{name}: some parameters appear in more than one parameter group (or twice)")
        self.param_groups.append(group)

    def _validate(self, group: dict[str, Any]) -> None:
        """Check a group's hyper-parameters; subclasses extend it."""
        self._check_nonneg(type(self).__name__, group, "lr")

    @staticmethod
    def _check_nonneg(op: str, group: dict[str, Any], *names: str) -> None:
        for key in names:
            value = group.get(key)
            if not isinstance(value, (int, float, np.number)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{op}: invalid {key}={value!r} (must be a number >= 0)")

    # ------------------------------------------------------------- update
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: ``p.grad = None`` (default), or a fresh zero array.

        Never zeroes ``p.grad`` in place: the array may be shared with another tensor.
        """
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad = Tensor(backend.get_array_module(p.grad.data).zeros_like(p.grad.data))

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient (those with ``grad is None`` are skipped).

        ``closure``, when given, re-evaluates the model and returns the loss (it runs with
        gradients enabled); its result is returned.
        """
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    g = p.grad.data
                    if g.shape != p.shape:
                        raise ValueError(
                            f"{type(self).__name__}.step: gradient of shape {g.shape} for a parameter "
                            f"of shape {p.shape}"
                        )
                    state = self.state.get(p)
                    if state is None:
                        state = self.state[p] = self._init_state(p, group)
                    self._update(p.data, g, state, group)
        return loss

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__}._init_state")

    def _update(self, p: Any, g: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        raise NotImplementedError(f"{type(self).__name__}._update")

    def _scratch(self, like: Any, slot: int) -> Any:
        """A reusable temporary of ``like``'s shape and dtype (see ``_Workspace``)."""
        return self._workspace.get(like, slot)

    def _effective_grad(self, p: Any, g: Any, wd: float, maximize: bool) -> Any:
        """g (negated when ``maximize``) + wd * p, written into scratch slot 0 when it differs from g."""
        if wd == 0 and not maximize:
            return g  # read only: never written to
        xp = backend.get_array_module(p)
        d = self._scratch(p, 0)
        if wd == 0:
            xp.negative(g, out=d)
        else:
            xp.multiply(p, wd, out=d)
            (xp.subtract if maximize else xp.add)(d, g, out=d)
        return d

    # ------------------------------------------------------------ state dict
    def state_dict(self) -> dict[str, Any]:
        """A snapshot ``{"state": {index: {...}}, "param_groups": [...]}`` (PyTorch's layout).

        Parameters are numbered 0, 1, ... in group order; each group lists its parameters'
        numbers under ``"params"``. State arrays are copies, so later steps do not change the
        snapshot, and everything is arrays and plain values (``tinyae.save`` can store it).
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            numbers = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                numbers.append(index[id(p)])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": numbers})
        state = {}
        for p, entries in self.state.items():
            if id(p) in index:
                state[index[id(p)]] = {k: v.copy() if hasattr(v, "copy") else v for k, v in entries.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyper-parameters and state saved by ``state_dict`` (possibly via ``tinyae.load``).

        The groups must match this optimizer's in number and sizes; parameters are matched
        by position. Arrays are copied onto each parameter's device and dtype. Everything is
        checked before anything changes: a bad state dict raises ValueError and leaves the
        optimizer as it was.
        """
        name = type(self).__name__
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError(f"{name}.load_state_dict: expected a dict with 'state' and 'param_groups'")
        saved_groups = list(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"{name}.load_state_dict: the state dict has {len(saved_groups)} parameter groups, "
                f"this optimizer has {len(self.param_groups)}"
            )
        by_number: dict[Any, Tensor] = {}
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            numbers = list(saved.get("params", ()))
            if len(numbers) != len(group["params"]):
                raise ValueError(
                    f"{name}.load_state_dict: parameter group {i} has {len(numbers)} parameters in the "
                    f"state dict but {len(group['params'])} in this optimizer"
                )
            by_number.update(zip(numbers, group["params"]))

        new_groups = []
        for saved, group in zip(saved_groups, self.param_groups):
            merged = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k != "params"}
            merged["params"] = group["params"]
            self._validate(merged)
            new_groups.append(merged)

        new_state: dict[Tensor, dict[str, Any]] = {}
        for number, entries in dict(state_dict["state"]).items():
            if number not in by_number:
                raise ValueError(f"{name}.load_state_dict: state for parameter {number!r}, not in any group")
            p = by_number[number]
            new_state[p] = {k: self._load_value(p, number, k, v) for k, v in entries.items()}

        self.param_groups[:] = new_groups
        self.state = new_state

    def _load_value(self, p: Tensor, number: Any, key: str, value: Any) -> Any:
        """One state entry onto ``p``'s device and dtype, or a clear error."""
        if value is None:
            return None
        if key in self._scalar_state:
            return value.item() if hasattr(value, "item") else value
        array = value.data if isinstance(value, Tensor) else value
        if not hasattr(array, "shape") or tuple(array.shape) != p.shape:
            shape = getattr(array, "shape", type(value).__name__)
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: state {key!r} of parameter {number!r} has shape "
                f"{shape}, the parameter has shape {p.shape}"
            )
        array = backend.to_device(array, p.device)
        return array.astype(p.dtype, copy=True)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params")
        return "\n".join(lines) + "\n)"
