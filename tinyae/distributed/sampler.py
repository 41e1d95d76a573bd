"""Splitting the data over the ranks: every global batch, row by row.

A single process with batch size B serves the epoch's order ``o`` (a permutation that
depends only on ``(seed, epoch)``) in slices ``o[kB : (k+1)B]``. With N ranks, every rank
runs the same loader and keeps rows ``r, r + N, r + 2N, ...`` of each batch
(:class:`ShardedLoader`; reading the whole batch costs a copy of it, nothing next to a step). The N
shares of step k are disjoint and together are exactly the single process's batch k;
they differ in size by at most one row, and the gradient average weights each rank by
its share, so step k computes the same update as the single process. Resuming at
(epoch, batch) replays the same slices, so ``--resume`` stays exact, with any N.

:class:`DistributedSampler` is the same split in PyTorch's form (rank r gets
``o[r::N]``, padded or cut to equal lengths); with ``batch_size = B / N`` and no padding
its step k is rank r's share of the slice above.

Randomness drawn during a step (dropout masks, a denoiser's noise, a VAE's epsilon, a
GAN's z) gets the same treatment by :func:`sharded_draws`: each rank draws the numbers of
the *whole* global batch from the shared generator and keeps its own rows. The
generators of all ranks therefore stay in step with each other and with a single
process, which is what makes N ranks replay the one-process run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from tinyae import backend, creation
from tinyae.tensor import Tensor

__all__ = ["DistributedSampler", "ShardedLoader", "rows_of", "sharded_draws", "short_tail"]


def _world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    from tinyae.distributed.group import get_rank, get_world_size

    size = get_world_size() if num_replicas is None else int(num_replicas)
    rank = get_rank() if rank is None else int(rank)
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"rank must be in [0, num_replicas), got rank={rank}, num_replicas={size}")
    return size, rank


def rows_of(rank: int, size: int, n: int) -> np.ndarray:
    """Rank ``rank``'s rows of a global batch of ``n``: ``rank, rank + size, ...``."""
    return np.arange(rank, n, size)


class DistributedSampler:
    """This rank's indices of ``dataset`` for one epoch, as ``torch.utils.data.DistributedSampler``.

    The order is the one a shuffling :class:`~tinyae.data.DataLoader` with the same
    ``seed`` serves (``default_rng([seed, epoch]).permutation``), so the union over ranks
    is the single-process epoch. ``drop_last=False`` pads with the first indices so every
    rank gets ``ceil(n / N)``; ``drop_last=True`` drops the tail to ``floor(n / N)``.
    Call :meth:`set_epoch` before each epoch.
    """

    def __init__(
        self,
        dataset: Any,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        self.num_replicas, self.rank = _world(num_replicas, rank)
        self.dataset, self.shuffle, self.seed, self.drop_last = (
            dataset,
            bool(shuffle),
            int(seed),
            bool(drop_last),
        )
        self.epoch = 0
        n = len(dataset)
        self.num_samples = n // self.num_replicas if drop_last else -(-n // self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        if epoch < 0:
            raise ValueError(f"DistributedSampler.set_epoch: epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        order = (
            np.random.default_rng([self.seed, self.epoch]).permutation(n) if self.shuffle else np.arange(n)
        )
        if self.total_size > n:
            order = np.resize(order, self.total_size)  # repeats the order from its start
        order = order[: self.total_size]
        return iter(order[self.rank :: self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples


class ShardedLoader:
    """This rank's rows of every batch that ``loader`` yields (any iterable of tuples of Tensors).

    Items of a batch that are not Tensors (a task index...) pass through as they are. A
    batch with fewer rows than ranks is skipped on every rank (each rank needs at least one
    row); :attr:`skipped` counts the rows skipped so far. After each yield, :attr:`share` is
    ``(rows of this rank, rows of the global batch)``. ``len()`` and ``set_epoch`` are the
    loader's, so the training loop's batch counter means the same on every rank and in a
    single process.
    """

    def __init__(self, loader: Any, num_replicas: int | None = None, rank: int | None = None) -> None:
        self.loader = loader
        self.num_replicas, self.rank = _world(num_replicas, rank)
        batch_size = getattr(loader, "batch_size", None)
        if batch_size is not None and batch_size < self.num_replicas:
            raise ValueError(
                f"ShardedLoader: the global batch size {batch_size} is smaller than the "
                f"{self.num_replicas} ranks; every rank needs at least one row (--batch-size >= ranks)"
            )
        self.share, self.skipped = (0, 0), 0

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        for batch in self.loader:
            n = len(batch[0])
            if n < self.num_replicas:
                self.skipped += n
                continue
            rows = rows_of(self.rank, self.num_replicas, n)
            self.share = (len(rows), n)
            yield tuple(_take(item, rows) for item in batch)


def _take(item: Any, rows: np.ndarray) -> Any:
    if not isinstance(item, Tensor):
        return item
    xp = backend.get_array_module(item.data)
    return Tensor(item.data[xp.asarray(rows)])


def short_tail(loader: Any, num_replicas: int) -> int:
    """Rows in the last batch of a DataLoader's epoch when they are fewer than the ranks (else 0)."""
    dataset, batch_size = getattr(loader, "dataset", None), getattr(loader, "batch_size", None)
    if dataset is None or batch_size is None or getattr(loader, "drop_last", False):
        return 0
    tail = len(dataset) % batch_size
    return tail if 0 < tail < num_replicas else 0


# Generator methods that draw per-sample numbers, and where their ``size`` argument sits.
_SIZE_ARG = {
    "random": 0,
    "standard_normal": 0,
    "standard_exponential": 0,
    "exponential": 1,
    "poisson": 1,
    "normal": 2,
    "uniform": 2,
    "integers": 2,
    "binomial": 2,
}


class _ShardedGenerator(np.random.Generator):
    """The global generator (the same bit stream), except that a draw of this rank's rows is made
    for the global batch.

    A draw whose size starts with the rank's row count (and whose other arguments are
    scalars) is made with the global row count instead, and the rank's rows are returned.
    Every other draw is the plain generator's.
    """

    def __init__(self, generator: np.random.Generator, rows: np.ndarray, n_global: int) -> None:
        super().__init__(generator.bit_generator)
        self._rows, self._n_global = rows, n_global

    def _draw(self, name: str, args: tuple, kwargs: dict) -> Any:
        plain = getattr(np.random.Generator, name)
        at, args = _SIZE_ARG[name], list(args)
        size = kwargs.get("size", args[at] if len(args) > at else None)
        shape = (size,) if isinstance(size, int | np.integer) else tuple(size) if size is not None else ()
        others = [a for i, a in enumerate(args) if i != at] + [v for k, v in kwargs.items() if k != "size"]
        per_sample = shape and shape[0] == len(self._rows) and "out" not in kwargs
        if not per_sample or any(np.ndim(a) > 0 for a in others if not isinstance(a, type | np.dtype)):
            return plain(self, *args, **kwargs)
        full = (self._n_global, *shape[1:])
        if "size" in kwargs:
            kwargs["size"] = full
        else:
            args[at] = full
        return plain(self, *args, **kwargs)[self._rows]


def _per_sample(name: str) -> Any:
    def method(self: _ShardedGenerator, *args: Any, **kwargs: Any) -> Any:
        return self._draw(name, args, kwargs)

    method.__name__ = name
    return method


for _name in _SIZE_ARG:
    setattr(_ShardedGenerator, _name, _per_sample(_name))


@contextlib.contextmanager
def sharded_draws(rank: int, num_replicas: int, n_global: int) -> Iterator[None]:
    """While inside, per-sample draws from ``tinyae.generator()`` are made for the global batch of
    ``n_global`` rows and this rank keeps rows ``rank, rank + N, ...`` (see the module docstring)."""
    if num_replicas == 1:
        yield
        return
    plain = creation._generator
    creation._generator = _ShardedGenerator(plain, rows_of(rank, num_replicas, n_global), n_global)
    try:
        yield
    finally:
        creation._generator = plain
