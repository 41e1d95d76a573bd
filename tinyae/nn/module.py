"""``Module`` and ``Parameter``: how a model keeps track of its weights.

A model is a tree of Modules. Each Module owns

* parameters: ``Parameter`` tensors the optimizer updates (``self.weight = Parameter(...)``);
* buffers: tensors that are state but not trained (BatchNorm's running statistics),
  registered with ``self.register_buffer(name, tensor)``;
* submodules: other Modules (``self.encoder = Sequential(...)``).

Registration happens in ``__setattr__``: assigning a Parameter or a Module to an attribute
records it in ``_parameters`` / ``_modules`` (insertion-ordered dicts). Everything else
walks that tree: ``parameters()``, ``state_dict()``, ``train()``, ``to(device)``, ``repr``.

Names follow PyTorch: a parameter is named by the path of attribute names from the root,
joined with dots (``"encoder.0.weight"``); ``Sequential`` names its children ``"0"``, ``"1"``...
so that a ``state_dict`` reads the same as PyTorch's for the same model. The containers
(``Sequential``, ``ModuleList``) are in :mod:`tinyae.nn.containers`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from tinyae import backend
from tinyae.tensor import Tensor

__all__ = ["IncompatibleKeys", "Module", "Parameter", "StateDictError", "count_parameters"]


class Parameter(Tensor):
    """A Tensor that is a trainable weight of a Module (``requires_grad=True`` by default).

    ``Parameter(t)`` shares ``t``'s array. Assigning a Parameter to a Module attribute
    registers it, so it appears in ``module.parameters()``.
    """

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        if data is None:
            data = np.empty((0,), dtype=backend.DEFAULT_DTYPE)
        if isinstance(data, Tensor):
            data = data.data  # share the array, as torch.nn.Parameter shares storage
        super().__init__(data)
        if requires_grad:
            self.requires_grad_(True)  # TypeError for integer data

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class StateDictError(RuntimeError, ValueError):
    """``load_state_dict`` found missing/unexpected keys or shape mismatches.

    A RuntimeError as in PyTorch, and a ValueError because the argument is bad.
    """


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict`` returns: keys the model expected but did not get, and the reverse."""

    missing_keys: list[str]
    unexpected_keys: list[str]

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return f"IncompatibleKeys(missing_keys={self.missing_keys}, unexpected_keys={self.unexpected_keys})"


def _check_name(kind: str, name: Any) -> None:
    if not isinstance(name, str):
        raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
    if name == "" or "." in name:
        raise KeyError(f"{kind} name can't be empty or contain '.', got {name!r}")


def _check_module(owner: str, name: str, module: Any) -> None:
    if not isinstance(module, Module):
        hint = ""
        if isinstance(module, type) and issubclass(module, Module):
            hint = f" (pass an instance: {module.__name__}(), not the class)"
        raise TypeError(f"{owner}: child '{name}' is not a Module: {module!r}{hint}")


def _addindent(text: str, spaces: int) -> str:
    """Indent every line of ``text`` but the first (how PyTorch nests child reprs)."""
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return lines[0] + "\n" + "\n".join(" " * spaces + line for line in lines[1:])


def _as_state_array(name: str, value: Any) -> Any:
    """The array behind one state_dict value (Tensor, ndarray, CuPy array or number)."""
    if isinstance(value, Tensor):
        return value.data
    if isinstance(value, np.ndarray) or backend.is_cupy_array(value):
        return value
    if isinstance(value, (int, float, np.generic)) and not isinstance(value, bool):
        return np.asarray(value)
    raise TypeError(
        f"load_state_dict: value for {name!r} must be an array or a Tensor, got {type(value).__name__}"
    )


class Module:
    """Base class of every layer and model: subclass it and define ``forward``.

    Call ``super().__init__()`` first in your ``__init__``, then assign Parameters and
    submodules as attributes; ``model(x)`` calls ``model.forward(x)``.
    """

    training: bool

    def __init__(self) -> None:
        # object.__setattr__: our own __setattr__ needs these dicts to exist already.
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", {})

    # ------------------------------------------------------- registration
    def __setattr__(self, name: str, value: Any) -> None:
        d = self.__dict__
        params, buffers, modules = d.get("_parameters"), d.get("_buffers"), d.get("_modules")
        if isinstance(value, (Parameter, Module)) and params is None:
            raise AttributeError(
                f"cannot assign {type(value).__name__} '{name}' before Module.__init__() call "
                f"(call super().__init__() first in {type(self).__name__}.__init__)"
            )
        if isinstance(value, Parameter):
            if name in params:
                params[name] = value  # re-assignment keeps the registration order
            else:
                self._forget(name)
                self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                    "(tinyae.nn.Parameter or None expected)"
                )
            params[name] = None
        elif isinstance(value, Module):
            if name not in modules:
                self._forget(name)
            modules[name] = value
        elif modules is not None and name in modules:
            if value is not None:
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as child module '{name}' "
                    "(Module or None expected)"
                )
            modules[name] = None
        elif buffers is not None and name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as buffer '{name}' (Tensor or None expected)"
                )
            buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        # Only called when ordinary lookup fails: look in the registries.
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self) -> list[str]:
        return sorted(
            set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules)
        )

    def _forget(self, name: str) -> None:
        """Remove ``name`` from every registry and the instance dict (before re-registering it)."""
        self.__dict__.pop(name, None)
        for store in (self._parameters, self._buffers, self._modules):
            store.pop(name, None)
        self._non_persistent_buffers.discard(name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a parameter (or a ``None`` placeholder, e.g. ``bias=False``) under ``name``."""
        if "_parameters" not in self.__dict__:
            raise AttributeError("cannot assign parameter before Module.__init__() call")
        _check_name("parameter", name)
        if name in self.__dict__ or name in self._buffers or name in self._modules:
            raise KeyError(f"attribute '{name}' already exists")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"cannot assign '{type(param).__name__}' object to parameter '{name}' "
                "(tinyae.nn.Parameter or None required)"
            )
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Add state that is not trained (running statistics): saved in ``state_dict``
        (unless ``persistent=False``) and moved by ``to()``, but not in ``parameters()``."""
        if "_buffers" not in self.__dict__:
            raise AttributeError("cannot assign buffer before Module.__init__() call")
        _check_name("buffer", name)
        if name in self.__dict__ or name in self._parameters or name in self._modules:
            raise KeyError(f"attribute '{name}' already exists")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(
                f"cannot assign '{type(tensor).__name__}' object to buffer '{name}' (Tensor or None required)"
            )
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Register a child module under ``name`` (what attribute assignment does)."""
        if "_modules" not in self.__dict__:
            raise AttributeError("cannot assign module before Module.__init__() call")
        if module is not None:
            _check_module(type(self).__name__, name, module)
        _check_name("module", name)
        if name in self.__dict__ or name in self._parameters or name in self._buffers:
            raise KeyError(f"attribute '{name}' already exists")
        self._modules[name] = module

    register_module = add_module

    def get_submodule(self, target: str) -> Module:
        """The submodule at a dotted path, e.g. ``model.get_submodule("encoder.0")``."""
        module: Module = self
        if target == "":
            return module
        for part in target.split("."):
            child = module._modules.get(part)
            if child is None:
                raise AttributeError(
                    f"{type(module).__name__} has no submodule '{part}' (looking up {target!r})"
                )
            module = child
        return module

    # --------------------------------------------------------- traversal
    def named_modules(
        self, memo: set[int] | None = None, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Module]]:
        """This module and every descendant, depth first, parents before children."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(memo, f"{prefix}.{name}" if prefix else name, remove_duplicate)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen: set[int] = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self) -> Iterator[Module]:
        for _, child in self.named_children():
            yield child

    def _named_members(
        self, store: str, prefix: str, recurse: bool, remove_duplicate: bool
    ) -> Iterator[tuple[str, Tensor]]:
        """Entries of the ``store`` registry of this module (and descendants), shared ones once."""
        modules = (
            self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
            if recurse
            else [(prefix, self)]
        )
        seen: set[int] = set()
        for module_prefix, module in modules:
            for name, t in getattr(module, store).items():
                if t is None or (remove_duplicate and id(t) in seen):
                    continue
                seen.add(id(t))
                yield (f"{module_prefix}.{name}" if module_prefix else name), t

    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        """``("encoder.0.weight", Parameter)`` pairs in registration order (a shared one once)."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)  # type: ignore[misc]

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Tensor]]:
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of scalar weights (each shared parameter counted once)."""
        return sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only)

    # ------------------------------------------------------------ modes
    def train(self, mode: bool = True) -> Module:
        """Training mode (Dropout drops, BatchNorm uses batch statistics) for this module and below."""
        if not isinstance(mode, bool):
            raise TypeError(f"train: mode must be a bool, got {type(mode).__name__}")
        self.training = mode
        for child in self.children():
            child.train(mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode: ``train(False)``."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Freeze (False) or unfreeze (True) every parameter, e.g. a pretrained encoder."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget accumulated gradients: ``.grad = None`` (default) or zeros."""
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                xp = backend.get_array_module(p.grad.data)
                p.grad = Tensor(xp.zeros_like(p.grad.data))

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Call ``fn`` on every submodule (children first) and then on self, e.g. custom init."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # -------------------------------------------------- device and dtype
    def to(self, device: Any = None, dtype: Any = None) -> Module:
        """Move (``"cpu"``, ``"cuda"``) and/or cast (``tinyae.float64``) parameters and buffers, in place.

        The Parameter objects stay the same (an optimizer made before still holds them);
        only their ``.data`` (and ``.grad``) arrays are replaced. Only floating point
        tensors change dtype (``num_batches_tracked`` stays int64). Returns self.
        Accepts ``to(device)``, ``to(dtype)``, ``to(device, dtype)`` and ``to(tensor)``.
        """
        if isinstance(device, Tensor):
            device, dtype = device.device, device.dtype
        elif device is not None and not isinstance(device, str):  # to(dtype): strings are devices
            if dtype is not None:
                raise TypeError(f"to: device must be a string such as 'cpu' or 'cuda', got {device!r}")
            device, dtype = None, device
        target = None if device is None else backend.parse_device(device)
        if dtype is not None:
            dtype = np.dtype(dtype)
            if dtype.kind != "f":
                raise TypeError(f"to: Module.to only accepts floating point dtypes, got {dtype}")

        def convert(a: Any) -> Any:
            if target is not None:
                a = backend.to_device(a, target)
            if dtype is not None and a.dtype.kind == "f":
                a = a.astype(dtype, copy=False)
            return a

        seen: set[int] = set()
        for module in self.modules():
            for t in [*module._parameters.values(), *module._buffers.values()]:
                if t is None or id(t) in seen:
                    continue
                seen.add(id(t))
                t.data = convert(t.data)
                if t.grad is not None:
                    t.grad = Tensor(convert(t.grad.data))
        return self

    def cpu(self) -> Module:
        return self.to("cpu")

    def cuda(self, device: int | None = None) -> Module:
        return self.to("cuda" if device is None else f"cuda:{device}")

    def float(self) -> Module:
        return self.to(dtype=np.float32)

    def double(self) -> Module:
        return self.to(dtype=np.float64)

    # --------------------------------------------------------- state
    def _state_tensors(self, prefix: str = "") -> OrderedDict[str, Tensor]:
        """Name -> Tensor for everything a state_dict holds, in PyTorch's order.

        Per module: its own parameters, then its persistent buffers, then each child's
        entries (recursively). Unlike ``named_parameters`` a shared tensor appears under
        every name it has, as in PyTorch.
        """
        out: OrderedDict[str, Tensor] = OrderedDict()
        for name, p in self._parameters.items():
            if p is not None:
                out[prefix + name] = p
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers:
                out[prefix + name] = b
        for name, child in self._modules.items():
            if child is not None:
                out.update(child._state_tensors(prefix + name + "."))
        return out

    def state_dict(self, prefix: str = "", keep_vars: bool = False) -> OrderedDict[str, Any]:
        """Ordered ``{"0.weight": array, ...}`` of parameters and persistent buffers.

        Values are copies of the arrays (on the tensors' device), so that a snapshot
        is not changed by later training and can go straight to ``tinyae.save``.
        ``keep_vars=True`` gives the Parameter/Tensor objects themselves instead.
        """
        tensors = self._state_tensors(prefix)
        if keep_vars:
            return tensors
        return OrderedDict((name, t.data.copy()) for name, t in tensors.items())

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy values from ``state_dict`` into this module's parameters and buffers.

        Every problem is collected first and reported in ONE ``StateDictError``:
        missing keys and unexpected keys (only when ``strict``) and shape mismatches
        (always). When an error is raised nothing has been changed. Values are cast to
        each tensor's dtype and copied to its device. Returns ``IncompatibleKeys``.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"load_state_dict: expected a dict-like state_dict, got {type(state_dict).__name__}"
            )
        expected = self._state_tensors()
        missing = [k for k in expected if k not in state_dict]
        unexpected = [k for k in state_dict if k not in expected]
        errors: list[str] = []
        if strict and missing:
            errors.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ".")
        if strict and unexpected:
            errors.append("Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + ".")
        updates: list[tuple[Tensor, Any]] = []
        for name, t in expected.items():
            if name not in state_dict:
                continue
            value = _as_state_array(name, state_dict[name])
            if tuple(value.shape) != tuple(t.shape):
                errors.append(
                    f"size mismatch for {name}: copying a param with shape {tuple(value.shape)} from "
                    f"checkpoint, the shape in current model is {tuple(t.shape)}."
                )
            else:
                updates.append((t, value))
        if errors:
            raise StateDictError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n\t" + "\n\t".join(errors)
            )
        for t, value in updates:
            # In place: anything holding the array (or the Parameter) sees the new values.
            t.data[...] = backend.to_device(value, t.device)
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------ call and repr
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            f'Module [{type(self).__name__}] is missing the required "forward" function'
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def extra_repr(self) -> str:
        """The text inside ``Name(...)``, e.g. ``in_features=3, out_features=4, bias=True`` for Linear."""
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        # PyTorch's layout: one line for a leaf, else one "(name): child" line per child, indented.
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): {_addindent(repr(child), 2)}" for name, child in self._modules.items()]
        lines = extra_lines + child_lines
        text = self._get_name() + "("
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                text += extra_lines[0]
            else:
                text += "\n  " + "\n  ".join(lines) + "\n"
        return text + ")"


def count_parameters(module: Module, trainable_only: bool = False) -> int:
    """Number of scalar weights in ``module`` (``trainable_only``: those with requires_grad)."""
    return module.num_parameters(trainable_only)
