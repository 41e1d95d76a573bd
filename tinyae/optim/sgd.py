"""Stochastic gradient descent, with momentum, dampening, Nesterov momentum and weight decay.

PyTorch's update rule (``torch.optim.SGD``), for one parameter p with gradient g, momentum
mu, dampening tau, weight decay wd and learning rate lr:

    g <- -g                               if maximize
    g <- g + wd * p                       (L2 penalty folded into the gradient)
    b <- g                                at the first step (no dampening then)
    b <- mu * b + (1 - tau) * g           afterwards
    d <- g + mu * b   (nesterov)   or   d <- b      (when mu != 0; else d = g)
    p <- p - lr * d

Note the momentum buffer b starts at g, not at 0, and lr multiplies the whole step
(PyTorch's convention, which differs from Sutskever et al.'s p <- p - v, v <- mu v + lr g
when lr changes during training).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tinyae import backend
from tinyae.optim.optimizer import Optimizer
from tinyae.tensor import Tensor

__all__ = ["SGD"]


class SGD(Optimizer):
    """``SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *, maximize=False)``.

    State per parameter (only when momentum != 0): ``"momentum_buffer"``.
    """

    _scalar_state = ()

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)  # fmt: skip
        super().__init__(params, defaults)

    def _validate(self, group: dict[str, Any]) -> None:
        super()._validate(group)
        self._check_nonneg("SGD", group, "momentum", "weight_decay")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                f"SGD: nesterov=True requires momentum > 0 and dampening = 0, got "
                f"momentum={group['momentum']} and dampening={group['dampening']}"
            )

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        return {}

    def _update(self, p: Any, g: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        xp = backend.get_array_module(p)
        lr, mu, tau = group["lr"], group["momentum"], group["dampening"]
        d = self._effective_grad(
            p, g, group["weight_decay"], group["maximize"]
        )  # g, or -g + wd * p in scratch slot 0
        step = self._scratch(p, 1)
        if mu != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = d.copy()  # b <- g at the first step
            else:
                buf *= mu  # b <- mu b + (1 - tau) g
                if tau == 0:
                    buf += d
                else:
                    xp.multiply(d, 1 - tau, out=step)
                    buf += step
            if group["nesterov"]:
                xp.multiply(buf, mu, out=step)  # d <- g + mu b
                xp.add(d, step, out=step)
                d = step
            else:
                d = buf
        xp.multiply(d, lr, out=step)  # p <- p - lr d
        p -= step
