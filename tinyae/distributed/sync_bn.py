"""SyncBatchNorm: batch statistics over the global batch instead of each rank's share.

Plain BatchNorm in data-parallel training normalises with each rank's own rows (PyTorch's
default too): with a small share per rank the statistics get noisy, and the run is no
longer the single-process one. SyncBatchNorm sums the statistics over the ranks. With
x_r the rows of rank r and M the global count of values per channel::

    forward:   S1 = sum_r sum(x_r),  S2 = sum_r sum(x_r^2)      one allreduce of (S1, S2, M)
               mu = S1 / M,  var = S2 / M - mu^2,  x_hat = (x - mu) / sqrt(var + eps)
    backward:  G1 = sum_r sum(gy_r), G2 = sum_r sum(gy_r * x_hat_r)   one allreduce of (G1, G2)
               dL/dx = w / sqrt(var + eps) * (gy - (G1 + x_hat * G2) / M)
               dL/dw = sum(gy * x_hat), dL/db = sum(gy)   (this rank's rows; DDP averages them)

The backward needs its allreduce because every x_hat depends on all ranks' rows through
mu and var: rank r's loss has a gradient with respect to rank s's inputs, and G1, G2
carry it across. Sums are taken in float64. The gradient is exact when the ranks hold
equal shares of the batch (every step, except an epoch's short last batch when it
splits unevenly). Evaluation uses the running statistics, as BatchNorm, with no traffic.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinyae import backend
from tinyae.autograd import Function
from tinyae.distributed.group import ProcessGroup, init_process_group
from tinyae.nn.layers import _BatchNorm
from tinyae.nn.module import Module
from tinyae.tensor import Tensor

__all__ = ["SyncBatchNorm", "convert_sync_batchnorm"]


class _SyncBatchNormFunction(Function):
    """(x[, w][, b]) -> y with statistics summed over the ranks of ``group``."""

    def __init__(self, group: ProcessGroup, eps: float, has_weight: bool, has_bias: bool) -> None:
        self.group, self.eps = group, eps
        self.has_weight, self.has_bias = has_weight, has_bias

    def _sum(self, *per_channel: Any) -> Any:
        """Stack (C,) vectors, sum them over the ranks (float64)."""
        stacked = backend.get_array_module(per_channel[0]).stack(per_channel).astype(np.float64)
        return (
            self.group.allreduce(stacked, "the SyncBatchNorm statistics") if self.group.size > 1 else stacked
        )

    def forward(self, x: Any, *params: Any) -> Any:
        self.save_for_backward(x, params[0] if self.has_weight else None)  # of b only the shape
        xp = backend.get_array_module(x)
        n, c = x.shape[:2]
        x3 = x.reshape(n, c, -1).astype(np.float64)
        count = xp.full(c, x3.shape[0] * x3.shape[2], dtype=np.float64)
        s1, s2, m = self._sum(x3.sum(axis=(0, 2)), (x3 * x3).sum(axis=(0, 2)), count)
        self.count = float(m[0])
        mean = s1 / self.count
        var = xp.maximum(s2 / self.count - mean * mean, 0.0)
        self.mean, self.var = mean, var
        self.inv_std = 1.0 / xp.sqrt(var + self.eps)
        y = (x3 - mean[:, None]) * self.inv_std[:, None]
        if self.has_weight:
            y = y * params[0].astype(np.float64)[:, None]
        if self.has_bias:
            y = y + params[-1].astype(np.float64)[:, None]
        return y.astype(x.dtype).reshape(x.shape)

    def backward(self, gy: Tensor) -> tuple[Tensor | None, ...]:
        raise NotImplementedError("SyncBatchNorm: double backward (create_graph=True) is not supported")

    def backward_arrays(self, gy: Any) -> tuple[Any, ...]:
        # The closed form of batch norm's gradient, with the two per-channel sums over all ranks.
        x, w = self.saved_tensors
        n, c = x.shape[:2]
        x3 = x.data.reshape(n, c, -1).astype(np.float64)
        g3 = gy.reshape(n, c, -1).astype(np.float64)
        x_hat = (x3 - self.mean[:, None]) * self.inv_std[:, None]
        local_gb, local_gw = g3.sum(axis=(0, 2)), (g3 * x_hat).sum(axis=(0, 2))
        g1, g2 = self._sum(local_gb, local_gw)
        scale = self.inv_std if w is None else self.inv_std * w.data.astype(np.float64)
        gx = scale[:, None] * (g3 - (g1[:, None] + x_hat * g2[:, None]) / self.count)
        grads: list[Any] = [gx.astype(x.dtype).reshape(x.shape)]
        dtype = x.dtype
        if self.has_weight:
            grads.append(local_gw.astype(dtype))
        if self.has_bias:
            grads.append(local_gb.astype(dtype))
        return tuple(g if need else None for g, need in zip(grads, self.needs_input_grad))


class SyncBatchNorm(_BatchNorm):
    """BatchNorm over (N, C, ...) inputs whose training statistics span all ranks of ``group``.

    Same arguments, parameters and buffers as BatchNorm1d/2d (a state dict moves between
    them freely). Built directly or with :func:`convert_sync_batchnorm`.
    """

    _dims = (2, 3, 4, 5)
    _dims_text = "an (N, C, ...)"

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        group: ProcessGroup | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, **kwargs)
        self.group = group

    def forward(self, input: Tensor) -> Tensor:
        if not self.training:
            return super().forward(input)  # running statistics: nothing to share
        self._check_input(input)
        group = self.group if self.group is not None else init_process_group()
        fn = _SyncBatchNormFunction(group, self.eps, self.weight is not None, self.bias is not None)
        y = fn(input, *(t for t in (self.weight, self.bias) if t is not None))
        if self.track_running_stats:
            self.num_batches_tracked.data += 1
            factor = (
                self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked.data)
            )
            unbiased = fn.var * (fn.count / max(fn.count - 1, 1))
            for buf, value in ((self.running_mean, fn.mean), (self.running_var, unbiased)):
                buf.data *= 1 - factor
                buf.data += (factor * value).astype(buf.dtype)
        return y


def convert_sync_batchnorm(module: Module, group: ProcessGroup | None = None) -> Module:
    """Replace every BatchNorm1d/2d in ``module`` by a SyncBatchNorm sharing its parameters and buffers.

    As ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``: returns the converted module
    (a new object only when ``module`` itself is a BatchNorm).
    """
    if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
        sync = SyncBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
            group=group,
            bias=module.bias is not None,
        )
        for name in ("weight", "bias"):
            if getattr(module, name) is not None:
                setattr(sync, name, getattr(module, name))  # the same Parameter: optimizers keep working
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            setattr(sync, name, getattr(module, name))
        sync.train(module.training)
        return sync
    for name, child in list(module._modules.items()):
        if child is not None:
            converted = convert_sync_batchnorm(child, group)
            if converted is not child:
                setattr(module, name, converted)
    return module
