"""``Tensor``: an array that remembers how it was computed.

A ``Tensor`` wraps an ndarray (NumPy, or CuPy on a GPU) in ``.data``. When an op is
applied to tensors that require gradients, the op's ``Function`` object
(:mod:`tinyae.autograd`) is recorded as the output's ``creator``; following creators
backwards gives the graph, and ``Tensor.backward`` walks it.

Whether ops record a graph at all is the grad mode (``no_grad``, ``enable_grad``), one flag
per thread as in PyTorch.

The operators (``+``, ``@``, ``.sum()``, ...) are attached to ``Tensor`` by
``tinyae.ops``: this module knows nothing about particular ops.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tinyae import backend

if TYPE_CHECKING:
    from tinyae.autograd import Function, HookHandle


class _GradMode(threading.local):
    """Whether ops record a graph; one flag per thread, as in PyTorch."""

    enabled = True


_grad_mode = _GradMode()


def is_grad_enabled() -> bool:
    return _grad_mode.enabled


class _SetGradEnabled(contextlib.ContextDecorator):
    """Context manager (and decorator) that switches graph recording."""

    def __init__(self, mode: bool) -> None:
        self.mode = mode
        self.prev: list[bool] = []

    def _recreate_cm(self) -> _SetGradEnabled:
        # A decorator reuses one instance for every call; a fresh one per call keeps
        # recursive or concurrent calls from overwriting each other's saved mode.
        return type(self)(self.mode)

    def __enter__(self) -> None:
        self.prev.append(_grad_mode.enabled)
        _grad_mode.enabled = self.mode

    def __exit__(self, *exc: object) -> None:
        _grad_mode.enabled = self.prev.pop()


def no_grad(func: Any = None) -> Any:
    """``with tinyae.no_grad():`` — ops record no graph (inference, optimizer steps).

    Also a decorator, written ``@no_grad()`` or ``@no_grad``.
    """
    return _SetGradEnabled(False) if func is None else _SetGradEnabled(False)(func)


def enable_grad(func: Any = None) -> Any:
    """Record graphs again (e.g. inside a ``no_grad`` block); also a decorator."""
    return _SetGradEnabled(True) if func is None else _SetGradEnabled(True)(func)


class Tensor:
    """An n-dimensional array that can remember how it was computed.

    ``data``           the ndarray (numpy.ndarray or cupy.ndarray)
    ``grad``           accumulated gradient (a Tensor) after ``backward``; leaves only
    ``requires_grad``  whether gradients flow to / through this tensor
    ``creator``        the Function that produced it (None for leaves)
    """

    __array_priority__ = 1000  # so ndarray + Tensor defers to Tensor.__radd__

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None, device: Any = None) -> None:
        if isinstance(data, Tensor):
            data = data.data
        elif isinstance(data, np.generic):
            data = np.asarray(data)  # a NumPy scalar (e.g. from a full reduction) keeps its dtype
        self.data = backend.as_array(data, dtype=dtype, device=device)
        if self.data.dtype.kind not in "biuf":
            raise TypeError(
                f"tensor: cannot make a tensor from {type(data).__name__} data of dtype {self.data.dtype}; "
                "expected numbers (bool, int or float)"
            )
        self.grad: Tensor | None = None
        self.creator: Function | None = None
        self._out_index = 0  # which output of ``creator`` this tensor is
        self._retains_grad = False
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # ----------------------------------------------------------- properties
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def device(self) -> str:
        return backend.device_of(self.data)

    @property
    def is_leaf(self) -> bool:
        return self.creator is None

    @property
    def T(self) -> Tensor:
        return self.permute(*reversed(range(self.ndim))) if self.ndim > 1 else self

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __repr__(self) -> str:
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        extra = ""
        if self.dtype != backend.DEFAULT_DTYPE:
            extra += f", dtype={self.dtype}"
        if self.device != "cpu":
            extra += f", device='{self.device}'"
        if self.creator is not None:
            extra += f", grad_fn=<{type(self.creator).__name__}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    def _scalar(self, kind: str) -> Any:
        if self.size != 1:
            raise RuntimeError(
                f"{kind}() of a tensor with {self.size} elements (shape {self.shape}) is ambiguous"
            )
        return self.data.item()

    def __bool__(self) -> bool:
        return bool(self._scalar("bool"))

    def __float__(self) -> float:
        return float(self._scalar("float"))

    def __int__(self) -> int:
        return int(self._scalar("int"))

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """``np.asarray(t)``: the data as a NumPy array (no graph; like ``t.numpy()``)."""
        a = self.numpy()
        return a if dtype is None else a.astype(dtype, copy=False)

    # ------------------------------------------------------------ conversion
    def item(self) -> Any:
        if self.size != 1:
            raise ValueError(f"item(): only one-element tensors can be converted, got shape {self.shape}")
        return self.data.item()

    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (copied from the GPU when needed)."""
        return backend.to_device(self.data, "cpu")

    def tolist(self) -> Any:
        return self.numpy().tolist()

    def detach(self) -> Tensor:
        """Same data, no history, no gradient."""
        return Tensor(self.data)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(
                f"requires_grad_: only floating point tensors can require gradients, got {self.dtype}"
            )
        if not requires_grad and self.creator is not None:
            raise RuntimeError("requires_grad_(False) is only allowed on leaf tensors; use .detach()")
        self.requires_grad = requires_grad
        return self

    def register_post_accumulate_grad_hook(self, hook: Any) -> HookHandle:
        """Call ``hook(self)`` once per ``backward``, after this leaf's ``.grad`` is final.

        As in PyTorch. Data-parallel training uses it to start averaging a parameter's
        gradient while backward is still running for the layers below it. Returns a
        handle whose ``remove()`` unregisters the hook.
        """
        if self.creator is not None:
            raise RuntimeError("register_post_accumulate_grad_hook: only leaf tensors have a final .grad")
        if not callable(hook):
            raise TypeError(
                f"register_post_accumulate_grad_hook: hook must be callable, got {type(hook).__name__}"
            )
        from tinyae.autograd import HookHandle  # the engine runs the hooks

        hooks = self.__dict__.setdefault("_grad_hooks", {})
        return HookHandle(hooks, hook)

    def retain_grad(self) -> Tensor:
        """Keep ``.grad`` for this non-leaf tensor after ``backward`` (as PyTorch)."""
        self._retains_grad = True
        return self

    def to(self, device: Any = None, dtype: Any = None) -> Tensor:
        """A copy on ``device`` and/or with ``dtype``; ``self`` when nothing changes.

        Differentiable: gradients flow back to the original device and dtype.
        """
        from tinyae.ops.shape import to  # local: ops import this module

        return to(self, device=device, dtype=dtype)

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self) -> Tensor:
        return self.to("cuda")

    def float(self) -> Tensor:
        return self.to(dtype=np.float32)

    def double(self) -> Tensor:
        return self.to(dtype=np.float64)

    # ------------------------------------------------------------- autograd
    def backward(
        self, grad: Any = None, retain_graph: bool | None = None, create_graph: bool = False
    ) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        ``grad`` is the upstream gradient; it may be omitted only for a one-element tensor.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward: this tensor does not require grad and has no grad_fn "
                "(did you create it under no_grad, or forget requires_grad=True?)"
            )
        if grad is None:
            if self.size != 1:
                raise RuntimeError(
                    f"backward: grad can be implicitly created only for scalar outputs; "
                    f"got shape {self.shape}, pass grad= of the same shape"
                )
            grad = Tensor(backend.get_array_module(self.data).ones_like(self.data))
        from tinyae.autograd import run_backward  # the engine, which imports this module

        run_backward([self], [grad], retain_graph=retain_graph, create_graph=create_graph)


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None, device: Any = None) -> Tensor:
    """Make a Tensor from Python data or an array (float data becomes float32 by default)."""
    if isinstance(data, Tensor):
        data = data.data
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, device=device)


def as_tensor(x: Any, like: Tensor | None = None, op: str = "as_tensor") -> Tensor:
    """Wrap a non-Tensor operand; Python scalars take the dtype and device of ``like``.

    Accepts Tensors, Python/NumPy numbers, arrays and (nested) lists; anything else is
    a TypeError naming ``op``.
    """
    if isinstance(x, Tensor):
        return x
    if not isinstance(x, (int, float, np.number, np.bool_, np.ndarray, list, tuple)) and not (
        backend.is_cupy_array(x)
    ):
        raise TypeError(f"{op}: expected a Tensor, a number or an array, got {type(x).__name__}")
    if like is not None and isinstance(x, (int, float, np.number, np.bool_)):
        xp = backend.get_array_module(like.data)
        if like.dtype.kind == "f" or isinstance(x, (bool, np.bool_)):
            dtype = like.dtype  # x * 0.5 stays float32 for a float32 x, as in PyTorch
        elif isinstance(x, (int, np.integer)):
            dtype = like.dtype if like.dtype.kind in "iu" else np.dtype(np.int64)
        else:  # a float with an int/bool tensor: the result is float (NumPy's promotion)
            dtype = np.result_type(x)
        # xp.full, not xp.asarray: on a GPU the number goes in as a kernel argument, whereas
        # asarray would copy it from the host (a transfer for every ``1 - y`` or ``x / n``).
        return Tensor(xp.full((), x, dtype=dtype))
    if like is not None and backend.is_cupy_array(like.data) and isinstance(x, np.ndarray):
        raise RuntimeError(
            f"{op}: expected all tensors on the same device, found {like.device} and cpu (a NumPy array)"
        )
    return Tensor(x)


def _as_tensors(inputs: Sequence[Any], op: str = "as_tensor") -> tuple[Tensor, ...]:
    if all(isinstance(x, Tensor) for x in inputs):
        return tuple(inputs)  # the common case, every op's call: nothing to wrap
    like = next((x for x in inputs if isinstance(x, Tensor)), None)
    return tuple(as_tensor(x, like, op) for x in inputs)


def _check_same_device(op: str, xs: Sequence[Tensor]) -> None:
    if len(xs) < 2 or all(type(x.data) is np.ndarray for x in xs):
        return  # all on the CPU (the common case: no device lookup per op)
    first = xs[0].device
    for x in xs[1:]:
        if x.device != first:
            raise RuntimeError(f"{op}: expected all tensors on the same device, found {first} and {x.device}")
