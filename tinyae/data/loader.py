"""DataLoader: mini-batches of Tensors, shuffled reproducibly, on the device you ask for.

Semantics follow PyTorch's ``DataLoader``:

- ``len(loader)`` is the number of batches: ``ceil(N / batch_size)``, or
  ``floor(N / batch_size)`` with ``drop_last=True``;
- each ``for batch in loader`` is one epoch and yields tuples ``(x, y)`` (one
  Tensor per field of the dataset's items);
- with ``shuffle=True`` every epoch has a new order.

Reproducibility: epoch ``k``'s order depends only on ``(seed, k)``, not on
how many epochs ran before in this process. ``loader.epoch`` counts the epochs
started; a resumed training run calls ``loader.set_epoch(k)`` and sees exactly
the batches an uninterrupted run would have seen in epoch ``k``.

Without ``seed=``, a shuffling loader takes its seed from tinyae's global
generator when it is created, so ``tinyae.manual_seed(0)`` makes the order
reproducible, as ``torch.manual_seed`` does for PyTorch's loader. That draw
advances the global generator (by one number), like any other random draw.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

import tinyae
from tinyae.backend import parse_device, to_device
from tinyae.data.dataset import batch_arrays
from tinyae.tensor import Tensor

__all__ = ["DataLoader"]


class DataLoader:
    """Iterate over ``dataset`` in batches of ``batch_size``, as tuples of Tensors.

    ``seed=None`` with ``shuffle=True`` draws the seed from ``tinyae.generator()``
    (so it follows ``tinyae.manual_seed``); it is kept in ``loader.seed``, so any
    run can be replayed. A loader that does not shuffle draws nothing (``seed`` 0).
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int | None = None,
        device: Any = "cpu",
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive integer, got {batch_size!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        if seed is None:
            seed = int(tinyae.generator().integers(2**63)) if self.shuffle else 0
        self.seed = int(seed)
        self.device = parse_device(device)  # fail now, not at the first batch
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.dataset)
        if self.drop_last:
            return n // self.batch_size
        return (n + self.batch_size - 1) // self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (0-based), e.g. when resuming training."""
        if epoch < 0:
            raise ValueError(f"DataLoader.set_epoch: epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def order(self, epoch: int) -> np.ndarray:
        """The item indices of epoch ``epoch``, in the order they are served."""
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        # A generator seeded by (seed, epoch): no hidden state carried between epochs.
        rng = np.random.default_rng([self.seed, epoch])
        return rng.permutation(n)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        # Not a generator function: the epoch counter moves when iteration
        # starts, so `it = iter(loader)` twice gives two different epochs.
        epoch = self.epoch
        self.epoch += 1
        return self._batches(self.order(epoch))

    def _batches(self, order: np.ndarray) -> Iterator[tuple[Any, ...]]:
        for b in range(len(self)):
            indices = order[b * self.batch_size : (b + 1) * self.batch_size]
            arrays = batch_arrays(self.dataset, indices)
            yield tuple(Tensor(to_device(a, self.device)) for a in arrays)

    def __repr__(self) -> str:
        return (
            f"DataLoader(n={len(self.dataset)}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
            f"drop_last={self.drop_last}, seed={self.seed}, device={self.device!r})"
        )
