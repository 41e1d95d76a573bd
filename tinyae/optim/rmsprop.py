"""RMSprop (Hinton's lecture 6e), with PyTorch's update rule.

For one parameter p with gradient g (smoothing constant alpha, learning rate lr):

    g <- -g                                   if maximize
    g <- g + wd * p                           (L2 penalty folded into the gradient)
    v <- alpha * v + (1 - alpha) * g^2        running mean of g^2 (starts at 0)
    a <- alpha * a + (1 - alpha) * g          running mean of g, only if centered
    s <- sqrt(v - a^2) + eps   (centered)   or   s <- sqrt(v) + eps
    b <- mu * b + g / s;   p <- p - lr * b    with momentum mu > 0 (b starts at 0)
    p <- p - lr * g / s                       without momentum

Unlike Adam there is no bias correction, and eps is added outside the square root.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tinyae import backend
from tinyae.optim.optimizer import Optimizer
from tinyae.tensor import Tensor

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """``RMSprop(params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False, *,
    maximize=False)``.

    State per parameter: ``"step"``, ``"square_avg"`` (v), and ``"momentum_buffer"`` (b, when
    momentum > 0) and ``"grad_avg"`` (a, when centered) -- PyTorch's names.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        centered=centered, maximize=maximize)  # fmt: skip
        super().__init__(params, defaults)

    def _validate(self, group: dict[str, Any]) -> None:
        super()._validate(group)
        self._check_nonneg("RMSprop", group, "alpha", "eps", "weight_decay", "momentum")

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        xp = backend.get_array_module(p.data)
        state = {"step": 0, "square_avg": xp.zeros_like(p.data)}
        if group["momentum"] > 0:
            state["momentum_buffer"] = xp.zeros_like(p.data)
        if group["centered"]:
            state["grad_avg"] = xp.zeros_like(p.data)
        return state

    def _update(self, p: Any, g: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        xp = backend.get_array_module(p)
        lr, alpha, eps, mu = group["lr"], group["alpha"], group["eps"], group["momentum"]
        state["step"] += 1
        d = self._effective_grad(
            p, g, group["weight_decay"], group["maximize"]
        )  # g + wd p (scratch slot 0 when not g itself)
        v, s = state["square_avg"], self._scratch(p, 1)

        v *= alpha  # v <- alpha v + (1 - alpha) g^2
        xp.multiply(d, d, out=s)
        s *= 1 - alpha
        v += s
        if group["centered"]:
            a = state["grad_avg"]
            a *= alpha  # a <- alpha a + (1 - alpha) g
            xp.multiply(d, 1 - alpha, out=s)
            a += s
            xp.multiply(a, a, out=s)  # s <- sqrt(v - a^2) + eps
            xp.subtract(v, s, out=s)
            xp.sqrt(s, out=s)
        else:
            xp.sqrt(v, out=s)  # s <- sqrt(v) + eps
        s += eps

        xp.divide(d, s, out=s)  # g / s
        if mu > 0:
            b = state["momentum_buffer"]
            b *= mu  # b <- mu b + g / s
            b += s
            xp.multiply(b, lr, out=s)
        else:
            s *= lr
        p -= s
