"""``detect_anomaly``: name the first op that makes a NaN or an Inf, and the line that called it.

A NaN in a loss usually shows up many ops after its cause, and in the backward pass often
far from the forward op whose derivative overflowed. With anomaly detection on (as
``torch.autograd.detect_anomaly``), every op checks its outputs after its forward, and every
backward checks the gradients it returns; the first value that is not finite raises a
RuntimeError naming the op, the shapes of its inputs and the line of your code that called it::

    with tinyae.detect_anomaly():
        loss = model(x).log().mean()    # RuntimeError: Log produced NaN ... at "model.py", line 12
        loss.backward()

Each check is a pass over a result, and each op records where it was called (a walk up the
stack), so this is for finding a bug, not for every run.
"""

from __future__ import annotations

import contextlib
import os
import threading
import traceback
from collections.abc import Sequence
from typing import Any

import numpy as np

from tinyae import backend

__all__ = ["detect_anomaly", "set_detect_anomaly", "is_anomaly_enabled"]


class _AnomalyMode(threading.local):
    enabled = False
    in_rule = 0  # inside a backward rule, whose result check_backward checks as a whole


_mode = _AnomalyMode()


def is_anomaly_enabled() -> bool:
    """Whether ops check their results for NaN and Inf (in this thread)."""
    return _mode.enabled


@contextlib.contextmanager
def backward_rule() -> Any:
    """While a backward rule runs, its own ops are not checked one by one: the rule's result is,
    so that an overflowing derivative is blamed on the op whose rule it is."""
    _mode.in_rule += 1
    try:
        with np.errstate(all="ignore"):  # a NaN or Inf here is reported by check_backward instead
            yield
    finally:
        _mode.in_rule -= 1


def set_detect_anomaly(mode: bool) -> None:
    """Switch anomaly detection on or off for this thread (``detect_anomaly`` as a switch)."""
    if not isinstance(mode, bool):
        raise TypeError(f"set_detect_anomaly: argument 'mode' must be a bool, got {type(mode).__name__}")
    _mode.enabled = mode


class detect_anomaly(contextlib.ContextDecorator):  # noqa: N801 - PyTorch's name
    """Context manager (and decorator) under which every op checks its results for NaN and Inf.

    ``check_nan=False`` records where ops were called without checking (as PyTorch's flag);
    the first non-finite value otherwise raises a RuntimeError that names the op, its inputs'
    shapes and the line of your code that called it.
    """

    def __init__(self, check_nan: bool = True) -> None:
        self.check_nan = check_nan
        self._prev: list[bool] = []

    def _recreate_cm(self) -> detect_anomaly:
        return type(self)(self.check_nan)  # a fresh one per decorated call, so calls can nest

    def __enter__(self) -> None:
        self._prev.append(_mode.enabled)
        _mode.enabled = bool(self.check_nan)

    def __exit__(self, *exc: object) -> None:
        _mode.enabled = self._prev.pop()


# The engine and the ops: frames from here are machinery, not the place an op was called from.
_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_MACHINERY = tuple(
    os.path.join(_PACKAGE, p) for p in ("tensor.py", "autograd.py", "anomaly.py", "parallel.py", "backend.py")
) + tuple(os.path.join(_PACKAGE, d) + os.sep for d in ("ops", "nn", "kernels"))


def creation_site() -> str:
    """The innermost frames of the caller's code (outside the engine, ops and layers), as text."""
    frames = [f for f in traceback.extract_stack()[:-2] if not f.filename.startswith(_MACHINERY)]
    if not frames:
        return "  (no frame outside tinyae's ops)"
    return "".join(traceback.format_list(frames[-3:])).rstrip()


def _bad(a: Any) -> str | None:
    """'NaN' or 'Inf' when the float array ``a`` holds one (NaN first), else None."""
    if a.dtype.kind != "f":
        return None
    xp = backend.get_array_module(a)
    if bool(xp.isfinite(a).all()):
        return None
    return "NaN" if bool(xp.isnan(a).any()) else "Inf"


def _shapes(ts: Sequence[Any]) -> str:
    return ", ".join(str(tuple(t.shape)) if t is not None else "None" for t in ts)


def _where(f: Any) -> str:
    site = getattr(f, "_site", None)
    if site is None:
        return "where it was called is not known (it ran before anomaly detection was switched on)"
    return "it was called at:\n" + site


def check_forward(f: Any, xs: Sequence[Any], outputs: Sequence[Any]) -> None:
    """After ``f``'s forward: raise if an output holds NaN or Inf, naming the first cause."""
    if _mode.in_rule:
        return
    op = type(f).__name__
    for i, y in enumerate(outputs):
        bad = _bad(y.data)
        if bad is None:
            continue
        for j, x in enumerate(xs):
            bad_in = _bad(x.data)
            if bad_in is not None:
                raise RuntimeError(
                    f"detect_anomaly: {op} received {bad_in} in input {j} (shape {tuple(x.shape)}), which no "
                    f"checked op produced: it is data or a parameter, or was computed before anomaly "
                    f"detection was switched on; {_where(f)}"
                )
        raise RuntimeError(
            f"detect_anomaly: {op} produced {bad} in output {i} (shape {tuple(y.shape)}) from finite "
            f"inputs of shapes ({_shapes(xs)}); {_where(f)}"
        )


def check_backward(f: Any, grad_outputs: Sequence[Any], grad_inputs: Sequence[Any]) -> None:
    """After ``f``'s backward: raise if a gradient it returned holds NaN or Inf."""
    op = type(f).__name__
    for i, g in enumerate(grad_inputs):
        bad = None if g is None else _bad(g.data)
        if bad is None:
            continue
        upstream = next((b for b in (_bad(gy.data) for gy in grad_outputs) if b), None)
        cause = (
            f"from finite gradients of its outputs (shapes {_shapes(grad_outputs)})"
            if upstream is None
            else f"because the gradient of its output already held {upstream} (was backward given one?)"
        )
        raise RuntimeError(
            f"detect_anomaly: the backward of {op} returned {bad} for input {i} (shape {tuple(g.shape)}) "
            f"{cause}; {_where(f)}"
        )
