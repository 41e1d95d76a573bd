"""Learning-rate schedules: ``StepLR``, ``ExponentialLR``, ``CosineAnnealingLR`` (PyTorch's).

A scheduler keeps one counter, ``last_epoch``: how many times ``step()`` has been called (0
right after construction). Each ``step()`` increments it and writes the new learning rate into
every parameter group of the optimizer. Call it after ``optimizer.step()``, usually once per
epoch. With lr0 the group's learning rate when the scheduler was made (kept in the group as
``"initial_lr"`` and in ``base_lrs``) and t = ``last_epoch``:

    StepLR              lr_t = lr0 * gamma^floor(t / step_size)
    ExponentialLR       lr_t = lr0 * gamma^t
    CosineAnnealingLR   lr_t = eta_min + (lr0 - eta_min) * (1 + cos(pi t / T_max)) / 2

Like PyTorch, ``step()`` applies each schedule in its *recursive* form, as a change of the
group's current lr (multiply by gamma; or move along the cosine), so that two schedulers can
be chained and a manual change of ``group["lr"]`` is kept. Without such outside changes the
result is the closed form above (``_get_closed_form_lr``) up to rounding.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tinyae.optim.optimizer import Optimizer

__all__ = ["CosineAnnealingLR", "ExponentialLR", "LRScheduler", "StepLR", "cosine_lr"]


def cosine_lr(lr: float, t: int, total: int) -> float:
    """The closed form of the cosine schedule: epoch ``t`` (0-based) of ``total``, from ``lr`` towards 0.

    A pure function of the epoch, which the recipes use so that a resumed run needs no
    scheduler state: lr_t = lr (1 + cos(pi t / total)) / 2.
    """
    return lr * 0.5 * (1.0 + math.cos(math.pi * t / max(total, 1)))


class LRScheduler:
    """Base class: ``step()``, ``get_last_lr()``, ``state_dict()`` / ``load_state_dict()``.

    Subclasses define ``get_lr()``: the learning rates for the new ``last_epoch``, computed
    from the groups' current ones.
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        name = type(self).__name__
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{name}: expected a tinyae Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(
                        f"{name}: param_groups[{i}] has no 'initial_lr', needed to resume with "
                        f"last_epoch={last_epoch}; load the optimizer's state_dict first"
                    )
        self.base_lrs: list[float] = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        # The constructor's own step sets epoch 0 (or last_epoch + 1) and keeps the current lrs.
        self._is_initial = True
        self.step()
        self._is_initial = False

    def get_lr(self) -> list[float]:
        raise NotImplementedError(f"{type(self).__name__}.get_lr")

    def step(self) -> None:
        """Advance one epoch and set every group's ``"lr"``."""
        self._step_count += 1
        self.last_epoch += 1
        values = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        """The learning rates the last ``step()`` set, one per parameter group."""
        return list(self._last_lr)

    def _current_lrs(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimizer: counters, base_lrs and the schedule's options."""
        return {
            k: list(v) if isinstance(v, list) else v for k, v in self.__dict__.items() if k != "optimizer"
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned (e.g. from a checkpoint) and continue from there."""
        if not isinstance(state_dict, dict) or "last_epoch" not in state_dict:
            raise ValueError(f"{type(self).__name__}.load_state_dict: not a scheduler state dict")
        self.__dict__.update(
            {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in state_dict.items()}
        )


def _check_positive_int(op: str, name: str, value: Any) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{op}: {name} must be a positive integer, got {value!r}")


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs:
    lr_t = lr0 * gamma^floor(t / step_size)."""

    def __init__(
        self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        _check_positive_int("StepLR", "step_size", step_size)
        self.step_size = int(step_size)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]

    def _get_closed_form_lr(self) -> list[float]:
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class ExponentialLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every epoch: lr_t = lr0 * gamma^t."""

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self._is_initial:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]

    def _get_closed_form_lr(self) -> list[float]:
        return [base * self.gamma**self.last_epoch for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Half a cosine from lr0 down to ``eta_min`` over ``T_max`` epochs (SGDR without restarts):
    lr_t = eta_min + (lr0 - eta_min) (1 + cos(pi t / T_max)) / 2. Past T_max it rises again
    (the cosine continues), as in PyTorch.

    The recursive form: lr_t - eta_min = (lr_{t-1} - eta_min) * c(t) / c(t - 1) with
    c(t) = 1 + cos(pi t / T_max); where c(t - 1) = 0 (the bottom, t - 1 = T_max mod 2 T_max)
    the step is taken additively instead.
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        _check_positive_int("CosineAnnealingLR", "T_max", T_max)
        self.T_max = int(T_max)
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        t, T, lo = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return self._current_lrs()
        if (t - 1 - T) % (2 * T) == 0:  # leaving the bottom: c(t - 1) = 0, step up additively
            return [lr + (base - lo) * (1 - math.cos(math.pi / T)) / 2
                    for lr, base in zip(self._current_lrs(), self.base_lrs)]  # fmt: skip
        ratio = (1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
        return [lo + (lr - lo) * ratio for lr in self._current_lrs()]

    def _get_closed_form_lr(self) -> list[float]:
        return [
            self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
            for base in self.base_lrs
        ]
