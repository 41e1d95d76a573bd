"""Averaging gradients over the ranks: the plain reference, then DistributedDataParallel.

The reference, :func:`allreduce_gradients`, runs after ``loss.backward()``: it packs every
gradient into one flat array, sums it over the ranks (one blocking allreduce) and
unpacks the average. Correct, and the network idles while backward runs, then backward's
cores idle while the network works.

:class:`DistributedDataParallel` removes that idle time as PyTorch's DDP does. The
parameters are cut into *buckets* of about ``bucket_cap_mb``, in reverse order (backward
finishes the last layers first). A hook on every parameter
(``Tensor.register_post_accumulate_grad_hook``) copies its gradient into its bucket as
soon as backward has finished it; a full bucket starts a non-blocking allreduce
(``MPI_Iallreduce``) at once, while backward goes on with the layers below. When the
last gradient is in, the hook waits for all buckets and writes the averages back into
``p.grad``, so ``loss.backward()`` returns with averaged gradients, as in PyTorch.

A backward that reaches only some of the parameters (one phase of a stacked
autoencoder, a GAN's generator step through a frozen discriminator) leaves some buckets
unfilled. :meth:`DistributedDataParallel.synchronize` sends those too and waits; the
training loop calls it before every optimizer step. All ranks run the same graph, so
they fill and send the same buckets in the same order, as MPI requires.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from tinyae import backend
from tinyae.distributed.group import ProcessGroup, init_process_group
from tinyae.nn.module import Module
from tinyae.tensor import Tensor

__all__ = ["DistributedDataParallel", "allreduce_gradients", "broadcast_module", "synchronize"]

_LIVE: list[weakref.ref] = []  # every DDP in creation order (the same on every rank), for synchronize()


def _group(group: ProcessGroup | None) -> ProcessGroup:
    return group if group is not None else init_process_group()


def broadcast_module(module: Module, group: ProcessGroup | None = None, root: int = 0) -> None:
    """Give every rank rank ``root``'s parameters and buffers (in place)."""
    group = _group(group)
    for name, t in [*module.named_parameters(), *module.named_buffers()]:
        if t is not None:
            group.broadcast_(t.data, root, what=f"the broadcast of {name}")


def _unique_params(params: Iterable[Tensor]) -> list[Tensor]:
    seen: set[int] = set()
    out = []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def allreduce_gradients(
    params: Iterable[Tensor], group: ProcessGroup | None = None, weight: float | None = None
) -> None:
    """The reference: after backward, ``p.grad <- sum over ranks of weight * p.grad`` in one allreduce.

    ``weight`` is this rank's share of the global batch (default ``1 / world size``: the
    plain average). Parameters without a gradient are skipped (the same ones on every
    rank, since every rank runs the same graph). One flat array per dtype and device.
    """
    group = _group(group)
    weight = 1.0 / group.size if weight is None else float(weight)
    by_kind: dict[tuple[str, str], list[Tensor]] = {}
    for p in _unique_params(params):
        if p.grad is not None:
            by_kind.setdefault((backend.device_of(p.grad.data), p.grad.data.dtype.str), []).append(p)
    for (_, _), ps in sorted(by_kind.items()):  # the same order on every rank
        xp = backend.get_array_module(ps[0].grad.data)
        flat = xp.concatenate([p.grad.data.ravel() for p in ps]) * weight
        total = group.allreduce(flat, what="the gradient allreduce")
        offset = 0
        for p in ps:
            p.grad = Tensor(total[offset : offset + p.size].reshape(p.shape))
            offset += p.size


class _Bucket:
    """Parameters (same dtype and device) whose gradients travel in one allreduce."""

    def __init__(self, params: list[Tensor]) -> None:
        self.params = params
        self.offsets, n = [], 0
        for p in params:
            self.offsets.append(n)
            n += p.size
        self.send = backend.get_array_module(params[0].data).zeros(n, dtype=params[0].dtype)
        self.recv: Any = None
        self.filled = 0  # gradients copied in this round
        self.request: Any = None  # the allreduce in flight


class DistributedDataParallel(Module):
    """Wrap ``module`` so that gradients are averaged over the ranks during ``backward``.

    As ``torch.nn.parallel.DistributedDataParallel``: construction broadcasts rank 0's
    parameters and buffers; ``ddp(x)`` calls ``module(x)``; after ``loss.backward()`` every
    ``p.grad`` holds the average over the ranks. The module may also be used directly
    (the hooks are on its parameters): wrapping is not needed to train it.

    ``bucket_cap_mb``: bucket size in MiB (PyTorch's default is 25 for its much larger
    models; tinyae's MNIST models are 0.1-2 MB, so the default 1 MiB still cuts them in a
    few buckets). ``overlap=False`` keeps the plain reference instead: nothing happens
    during backward and :meth:`synchronize` (the training loop calls it before each
    optimizer step) averages everything in one allreduce.

    ``batch_share`` is this rank's fraction of the global batch, ``1 / world size`` by
    default; the training loop sets it for every step (an epoch's short last batch may
    split unevenly), which keeps the average exactly the gradient of the global batch's
    mean loss.
    """

    def __init__(
        self,
        module: Module,
        bucket_cap_mb: float = 1.0,
        group: ProcessGroup | None = None,
        overlap: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: module must be a Module, got {type(module).__name__}")
        if not bucket_cap_mb > 0:
            raise ValueError(
                f"DistributedDataParallel: bucket_cap_mb must be positive, got {bucket_cap_mb!r}"
            )
        self.module = module
        group = _group(group)
        self.group = group
        broadcast_module(module, group)
        params = _unique_params(module.parameters())
        self._params = params
        self.batch_share = 1.0 / group.size
        self.overlap = bool(overlap)
        self._buckets = self._make_buckets(params, bucket_cap_mb * 2**20)
        self._where = {id(p): (b, i) for b in self._buckets for i, p in enumerate(b.params)}
        self._ready = set()  # ids of the parameters whose gradient is in this round
        self._syncing = True
        handles = []
        if overlap and group.size > 1:
            handles = [p.register_post_accumulate_grad_hook(self._on_grad) for p in params]
        self._handles = handles
        _LIVE.append(weakref.ref(self))

    @staticmethod
    def _make_buckets(params: list[Tensor], cap_bytes: float) -> list[_Bucket]:
        """Reverse parameter order, a new bucket when full or when the dtype or device changes."""
        buckets, current, size = [], [], 0
        for p in reversed(params):
            kind = (backend.device_of(p.data), p.dtype)
            if current and (
                size + p.data.nbytes > cap_bytes
                or kind != (backend.device_of(current[0].data), current[0].dtype)
            ):
                buckets.append(_Bucket(current))
                current, size = [], 0
            current.append(p)
            size += p.data.nbytes
        if current:
            buckets.append(_Bucket(current))
        return buckets

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    @property
    def bucket_sizes(self) -> list[int]:
        """Bytes per bucket, in the order they are sent."""
        return [b.send.nbytes for b in self._buckets]

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Backward passes inside accumulate local gradients only (as PyTorch's ``no_sync``).

        The first backward after the block averages the accumulated gradients.
        """
        self._syncing = False
        try:
            yield
        finally:
            self._syncing = True

    # ----------------------------------------------------- during backward
    def _on_grad(self, p: Tensor) -> None:
        if not self._syncing:
            return
        if id(p) in self._ready:
            raise RuntimeError(
                "DistributedDataParallel: a parameter got a second gradient before the first was averaged "
                "(two backward passes reaching different parameters before optimizer.step()); call "
                "ddp.synchronize() between them, or use ddp.no_sync() for all but the last"
            )
        self._ready.add(id(p))
        bucket, i = self._where[id(p)]
        start = bucket.offsets[i]
        xp = backend.get_array_module(bucket.send)
        xp.multiply(p.grad.data.ravel(), self.batch_share, out=bucket.send[start : start + p.size])
        bucket.filled += 1
        if bucket.filled == len(bucket.params):
            self._launch(bucket)
        self.group.poke([b.request for b in self._buckets if b.request is not None])
        if len(self._ready) == len(self._params):
            self.synchronize()  # the last gradient: wait here, so backward returns averaged gradients

    def _launch(self, bucket: _Bucket) -> None:
        bucket.recv = backend.get_array_module(bucket.send).empty_like(bucket.send)  # fresh: grads view it
        bucket.request = self.group.iallreduce(bucket.send, bucket.recv)

    # ------------------------------------------------------- after backward
    def synchronize(self) -> None:
        """Send the buckets not sent yet, wait for all, write the averages into ``p.grad``.

        Only parameters that got a gradient since the last call are written. With
        ``overlap=False`` this is the whole reference: :func:`allreduce_gradients`.
        """
        if not self.overlap or self.group.size == 1:
            if self.group.size > 1:
                allreduce_gradients(self._params, self.group, self.batch_share)
            return
        if not self._ready:
            return
        for bucket in self._buckets:  # bucket order: the same on every rank
            if bucket.request is None and bucket.filled:
                self._launch(bucket)
        sent = [b for b in self._buckets if b.request is not None]
        self.group.wait([b.request for b in sent], "the gradient allreduce")
        for bucket in sent:
            for p, start in zip(bucket.params, bucket.offsets):
                if id(p) in self._ready:
                    p.grad = Tensor(bucket.recv[start : start + p.size].reshape(p.shape))
            bucket.request, bucket.recv, bucket.filled = None, None, 0
        self._ready.clear()

    def remove_hooks(self) -> None:
        """Unregister the gradient hooks (the module trains alone again)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        _LIVE[:] = [r for r in _LIVE if r() is not None and r() is not self]


def synchronize() -> None:
    """:meth:`DistributedDataParallel.synchronize` on every live wrapper (before an optimizer step)."""
    for ref in list(_LIVE):
        ddp = ref()
        if ddp is not None:
            ddp.synchronize()
