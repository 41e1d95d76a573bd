"""How a training run stops early: a signal (Ctrl-C, SIGTERM), or a loss that is no longer a number.

Signals. The first SIGINT (Ctrl-C) or SIGTERM (what ``kill``, a batch scheduler or
``docker stop`` sends) sets a flag; the loop finishes the current batch, saves a
checkpoint and returns ``status="interrupted"``. A second signal stops at once by
raising :class:`Interrupted` (a ``KeyboardInterrupt``), keeping the last checkpoint.
Outside the loop, :func:`terminate_as_interrupt` makes SIGTERM raise the same
exception, so that atomic writes in progress clean up after themselves.

Non-finite losses. A NaN or Inf loss means the weights are, or are about to be,
garbage. By default the loop stops with :class:`TrainingDiverged` naming the step,
without saving, so the last good checkpoint stays. The same happens when a step
fails on NaN/Inf values (a BCE loss refuses a NaN "probability" with a ValueError
before any NaN loss is seen): see :func:`is_nonfinite_failure`. With
``skip_nonfinite`` the loop instead guards every optimizer
(:func:`skip_nonfinite_steps`): a step whose gradients hold NaN or Inf is not
taken, as PyTorch's ``GradScaler`` does, and the batch's loss is left out of the
epoch's mean; only weights that hold NaN/Inf anyway (an overflowing update) still stop the run.
"""

from __future__ import annotations

import contextlib
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from tinyae import backend

__all__ = ["Interrupted", "StopRequest", "TrainingDiverged", "catch_stop_signals", "skip_nonfinite_steps",
           "is_nonfinite_failure", "terminate_as_interrupt", "weights_finite"]  # fmt: skip

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Training stopped at once by a signal (``signum``), without saving this batch."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class TrainingDiverged(RuntimeError):
    """The loss (or the weights) became NaN or Inf; nothing was saved after the last good checkpoint.

    ``cause`` is set when the step itself failed on non-finite values (e.g. a loss that
    checks its input is a probability) rather than returning a NaN loss.
    """

    def __init__(
        self,
        loss: float,
        step: int,
        epoch: int,
        batch: int,
        saved_epoch: int,
        saved_batch: int,
        cause: BaseException | None = None,
    ) -> None:
        self.loss, self.step, self.epoch, self.batch = loss, step, epoch, batch
        self.saved_epoch, self.saved_batch, self.cause = saved_epoch, saved_batch, cause
        if saved_batch:
            saved = f"the state after batch {saved_batch} of epoch {saved_epoch + 1}"
        else:
            saved = f"the state after epoch {saved_epoch}" if saved_epoch else "the initial state"
        where = f"step {step} (epoch {epoch + 1}, batch {batch})"
        what = (
            f"training {where} failed on NaN/Inf values: {cause}"
            if cause is not None
            else f"the training loss became {loss} at {where}"
        )
        super().__init__(f"{what}; stopped without saving, so the checkpoint keeps {saved}")


def signal_name(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


class StopRequest:
    """Set by the first SIGINT/SIGTERM; the loop polls ``requested`` between batches."""

    def __init__(self, on_first: Callable[[], None] | None = None) -> None:
        self.signum: int | None = None
        self.on_first = on_first

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def handler(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # the second signal: stop now
            raise Interrupted(signum)
        self.signum = signum
        if self.on_first is not None:
            self.on_first()
        print(
            f"\n{signal_name(signum)}: stopping after this batch and saving a checkpoint "
            f"(send it again to quit at once)",
            file=sys.stderr,
            flush=True,
        )


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def catch_stop_signals(request: StopRequest) -> Iterator[None]:
    """Route SIGINT and SIGTERM to ``request`` while training (only possible in the main thread)."""
    if not _in_main_thread():
        yield
        return
    previous = {s: signal.signal(s, request.handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises :class:`Interrupted` instead of killing the process outright (main thread only)."""
    if not _in_main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


_NONFINITE = re.compile(r"\b(nan|inf|infinity|non-?finite)\b", re.IGNORECASE)


def is_nonfinite_failure(exc: BaseException, modules: dict[str, Any]) -> bool:
    """Whether a ValueError/ArithmeticError from a training step is the model diverging.

    Yes when the weights hold NaN/Inf, or when the error says it met NaN/Inf (weights
    of 1e30 are finite, but their products overflow to Inf and then NaN).
    """
    return isinstance(exc, ValueError | ArithmeticError) and (
        not weights_finite(modules) or bool(_NONFINITE.search(str(exc)))
    )


def _finite(array: Any) -> bool:
    return bool(backend.get_array_module(array).isfinite(array).all())


def weights_finite(modules: dict[str, Any]) -> bool:
    """Whether every parameter of ``modules`` (name -> Module) holds only finite numbers."""
    return all(_finite(p.data) for m in modules.values() for p in m.parameters())


def _grads_finite(optimizer: Any) -> bool:
    for group in optimizer.param_groups:
        for p in group["params"]:
            g = getattr(p, "grad", None)
            if g is not None and not _finite(g.data):
                return False
    return True


@contextlib.contextmanager
def skip_nonfinite_steps(optimizers: dict[str, Any], skipped: list[str]) -> Iterator[None]:
    """While active, ``opt.step()`` does nothing when a gradient holds NaN/Inf (its name goes to ``skipped``).

    Objects without ``param_groups`` (LR schedulers) are left alone.
    """
    guarded = [(name, opt) for name, opt in optimizers.items() if hasattr(opt, "param_groups")]

    def guard(name: str, opt: Any) -> Callable[..., Any]:
        step = opt.step

        def guarded_step(*args: Any, **kwargs: Any) -> Any:
            if not _grads_finite(opt):
                skipped.append(name)
                return None
            return step(*args, **kwargs)

        return guarded_step

    for name, opt in guarded:
        opt.step = guard(name, opt)  # an instance attribute shadows the class's step
    try:
        yield
    finally:
        for _, opt in guarded:
            with contextlib.suppress(AttributeError):
                del opt.step
