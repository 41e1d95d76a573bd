"""Small in-memory datasets: :class:`TensorDataset` (alias ``ArrayDataset``) and :class:`Subset`.

A *dataset* in tinyae is anything with ``__len__`` and ``__getitem__(i)``
returning a tuple of arrays, as in PyTorch. Datasets that can also hand out a
whole batch at once implement ``get_batch(indices) -> tuple of arrays``; the
:class:`~tinyae.data.loader.DataLoader` then slices arrays with one fancy index
instead of looping over items in Python, which is what makes loading fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["ArrayDataset", "Subset", "TensorDataset", "batch_arrays"]


def _unwrap(x: Any) -> Any:
    """An ndarray from an ndarray, a Tensor (anything with an array ``.data``) or a list."""
    data = getattr(x, "data", None)
    if data is not None and hasattr(data, "shape") and hasattr(data, "dtype"):
        return data
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return x
    return np.asarray(x)


class TensorDataset:
    """Arrays (or Tensors) that share their first dimension; item ``i`` is ``(a[i], b[i], ...)``.

    >>> ds = TensorDataset(np.eye(8, dtype=np.float32))   # the 8-3-8 encoder's data
    >>> len(ds), ds[3][0].argmax()
    (8, 3)
    """

    def __init__(self, *arrays: Any) -> None:
        if not arrays:
            raise ValueError("TensorDataset: needs at least one array")
        self.arrays = tuple(_unwrap(a) for a in arrays)
        n = len(self.arrays[0])
        for k, a in enumerate(self.arrays):
            if a.ndim == 0 or len(a) != n:
                shapes = ", ".join(str(tuple(b.shape)) for b in self.arrays)
                raise ValueError(
                    f"TensorDataset: all arrays need the same first dimension; got shapes {shapes} "
                    f"(array {k} differs)"
                )

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        return tuple(a[index] for a in self.arrays)

    def get_batch(self, indices: np.ndarray) -> tuple[Any, ...]:
        return tuple(a[indices] for a in self.arrays)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{tuple(a.shape)} {a.dtype}" for a in self.arrays)
        return f"{type(self).__name__}({shapes})"


#: Same thing under a name that does not suggest autograd.
ArrayDataset = TensorDataset


class Subset:
    """The items of ``dataset`` at ``indices``, in that order (e.g. a validation split)."""

    def __init__(self, dataset: Any, indices: Sequence[int] | np.ndarray) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(dataset)
        if self.indices.size and (self.indices.min() < -n or self.indices.max() >= n):
            raise IndexError(f"Subset: indices must lie in [-{n}, {n}) for a dataset of length {n}")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[int(self.indices[index])]

    def get_batch(self, indices: np.ndarray) -> tuple[Any, ...]:
        # Compose the index maps, then let the parent slice its arrays once.
        return batch_arrays(self.dataset, self.indices[indices])

    def __getattr__(self, name: str) -> Any:
        # Expose .classes etc. of the parent (but never recurse on our own attributes).
        if name in ("dataset", "indices"):
            raise AttributeError(name)
        if name in ("data", "targets"):
            raise AttributeError(f"Subset has no {name!r}; index the parent dataset or use get_batch")
        return getattr(self.dataset, name)

    def __repr__(self) -> str:
        return f"Subset({self.dataset!r}, n={len(self)})"


def _has_array(obj: Any, name: str) -> bool:
    a = getattr(obj, name, None)
    return a is not None and hasattr(a, "shape") and hasattr(a, "dtype")


def batch_arrays(dataset: Any, indices: np.ndarray) -> tuple[Any, ...]:
    """The items at ``indices`` stacked into arrays: ``(images, labels)`` or ``(x, y, ...)``.

    Uses the fastest route the dataset offers: its ``get_batch``, else fancy
    indexing of its ``.data``/``.targets`` arrays, else one ``__getitem__`` per
    item followed by ``np.stack`` (slow, but works for any dataset).
    """
    indices = np.asarray(indices, dtype=np.int64)
    if hasattr(dataset, "get_batch"):
        return tuple(dataset.get_batch(indices))
    if _has_array(dataset, "data") and _has_array(dataset, "targets"):
        return dataset.data[indices], dataset.targets[indices]
    items = [dataset[int(i)] for i in indices]
    if not isinstance(items[0], tuple | list):
        items = [(item,) for item in items]
    return tuple(_stack([item[k] for item in items]) for k in range(len(items[0])))


def _stack(values: list[Any]) -> Any:
    from tinyae.backend import get_array_module

    values = [_unwrap(v) for v in values]
    xp = get_array_module(*values)
    return xp.stack(values)
