"""Adam and AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019), with PyTorch's update rules.

For one parameter p with gradient g at step k = 1, 2, ... (betas b1, b2, learning rate lr):

    g <- -g                                   if maximize
    g <- g + wd * p                           Adam: L2 penalty folded into the gradient
    p <- p * (1 - lr * wd)                    AdamW instead: decoupled weight decay
    m <- b1 * m + (1 - b1) * g                first moment (running mean of g)
    v <- b2 * v + (1 - b2) * g^2              second moment (running mean of g^2)
    v_max <- max(v_max, v); use v_max as v    if amsgrad
    p <- p - lr / (1 - b1^k) * m / (sqrt(v) / sqrt(1 - b2^k) + eps)

m and v start at 0, so early on they are biased towards 0; dividing by 1 - b1^k and
1 - b2^k corrects that. Note eps is added after the bias correction of sqrt(v), as PyTorch does
(not to sqrt(v_hat) as in the paper's printed algorithm: the two differ by the factor
sqrt(1 - b2^k) on eps).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from tinyae import backend, kernels
from tinyae.optim.optimizer import Optimizer
from tinyae.tensor import Tensor

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
    maximize=False, decoupled_weight_decay=False)``.

    State per parameter: ``"step"`` (int), ``"exp_avg"`` (m), ``"exp_avg_sq"`` (v) and, with
    amsgrad, ``"max_exp_avg_sq"`` -- PyTorch's names.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, decoupled_weight_decay=decoupled_weight_decay)  # fmt: skip
        super().__init__(params, defaults)

    def _validate(self, group: dict[str, Any]) -> None:
        super()._validate(group)
        name = type(self).__name__
        self._check_nonneg(name, group, "eps", "weight_decay")
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{name}: betas must be a pair (beta1, beta2), got {betas!r}")
        group["betas"] = tuple(betas)
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{name}: invalid betas[{i}]={beta!r} (must lie in [0, 1))")

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        xp = backend.get_array_module(p.data)
        state = {"step": 0, "exp_avg": xp.zeros_like(p.data), "exp_avg_sq": xp.zeros_like(p.data)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = xp.zeros_like(p.data)
        return state

    def _update(self, p: Any, g: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        state["step"] += 1
        k = state["step"]
        if group["decoupled_weight_decay"]:
            if wd != 0:
                p *= 1 - lr * wd  # AdamW: shrink p directly, outside the adaptive scaling
            wd = 0
        v_max = state["max_exp_avg_sq"] if group["amsgrad"] else None
        # One fused pass in C++; on a GPU, or without the extension, the twin's array operations
        # with their temporaries in this optimizer's reusable scratch.
        kernels.adam_step(p, g, state["exp_avg"], state["exp_avg_sq"], v_max, beta1=b1, beta2=b2,
                          step_size=lr / (1 - b1**k), bias2_sqrt=math.sqrt(1 - b2**k), eps=eps,
                          weight_decay=wd, maximize=group["maximize"],
                          work=lambda: (self._scratch(p, 0), self._scratch(p, 1)))  # fmt: skip


class AdamW(Adam):
    """``AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
    maximize=False)``: Adam with decoupled weight decay p <- p (1 - lr wd) (note the default 1e-2).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)  # fmt: skip
