"""The image data of a training run: ``--dataset auto|mnist|fashion-mnist|shapes``.

Every image dataset is held as four NumPy arrays, images float32
``(N, 1, 28, 28)`` in [0, 1] and int64 labels ``(N,)``, for the training and
the test split. ``--limit-train N`` / ``--limit-test N`` keep the first N
images of a split (fast runs and tests).

``auto`` means: MNIST when it is found (``--data-root``, ``$TINYAE_DATA``,
``~/.cache/tinyae``) or can be downloaded, else the built-in ``Shapes`` with a
one-line notice saying why. Only *absent* MNIST falls back: files that are there
but fail their checks (corrupt, truncated, the wrong file, an incomplete set)
raise :class:`~tinyae.data.CorruptDatasetError` naming each file, because a user
who pointed at their data must not get toy results.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tinyae.data import (
    MNIST,
    CorruptDatasetError,
    CorruptFileWarning,
    DatasetNotFoundError,
    FashionMNIST,
    Shapes,
    TensorDataset,
)

__all__ = ["DATASETS", "ImageData", "balanced_subset", "load_images", "train_size"]

DATASETS = ("auto", "mnist", "fashion-mnist", "shapes")
#: training-set sizes, for checking options such as --labels before the data are loaded
TRAIN_SIZES = {"mnist": 60_000, "fashion-mnist": 60_000, "auto": 60_000, "shapes": 12_000}


def train_size(config: dict[str, Any]) -> int:
    """How many training images a run's config will load (``--limit-train``, else the dataset's size)."""
    return config.get("limit_train") or TRAIN_SIZES.get(config.get("dataset", "auto"), 60_000)


#: seconds to wait for a mirror when ``auto`` tries to download MNIST
AUTO_DOWNLOAD_TIMEOUT = 10.0


@dataclass
class ImageData:
    """Both splits of an image dataset as arrays, plus where they came from."""

    name: str  # "mnist", "fashion-mnist" or "shapes"
    x_train: np.ndarray  # (N, 1, 28, 28) float32 in [0, 1]
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str] = field(default_factory=list)
    notice: str | None = None  # why `auto` did not give MNIST, if it did not
    root: str | None = None  # the data root the files were read from (None for generated data)

    def train_set(self) -> TensorDataset:
        return TensorDataset(self.x_train, self.y_train)

    def test_set(self) -> TensorDataset:
        return TensorDataset(self.x_test, self.y_test)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def _limit(x: np.ndarray, y: np.ndarray, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    if n is None or n >= len(x):
        return x, y
    return x[:n], y[:n]


def _from_dataset(name: str, train: Any, test: Any, limits: tuple[int | None, int | None]) -> ImageData:
    x_train, y_train = _limit(train.data, train.targets, limits[0])
    x_test, y_test = _limit(test.data, test.targets, limits[1])
    classes = list(getattr(train, "classes", []))
    return ImageData(name, x_train, y_train, x_test, y_test, classes, root=getattr(train, "root", None))


def _shapes(limit_train: int | None, limit_test: int | None, seed: int) -> ImageData:
    # Generate only what is used: Shapes draws every image it is asked for.
    n_train = 12_000 if limit_train is None else min(limit_train, 12_000)
    n_test = 2_000 if limit_test is None else min(limit_test, 2_000)
    return _from_dataset("shapes", Shapes(n_train, True, seed), Shapes(n_test, False, seed), (None, None))


def _load_pair(cls: type, root: str | None, download: bool, timeout: float) -> tuple[Any, Any]:
    """Both splits of an IDX dataset; the CorruptFileWarnings are shown only when it loads after all.

    When it fails, the exception names every bad file already, so a warning per file
    on top of it would only say the same twice.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", category=CorruptFileWarning)
        pair = cls(root, True, download, timeout=timeout), cls(root, False, download, timeout=timeout)
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return pair


def load_images(
    name: str,
    root: str | None = None,
    limit_train: int | None = None,
    limit_test: int | None = None,
    seed: int = 0,
    download: bool = True,
) -> ImageData:
    """The named dataset's two splits; ``auto`` falls back to Shapes and says why in ``.notice``.

    Raises :class:`~tinyae.data.DatasetNotFoundError` when ``mnist`` or
    ``fashion-mnist`` is asked for explicitly and cannot be found or downloaded,
    and :class:`~tinyae.data.CorruptDatasetError` (a subclass) for any dataset,
    ``auto`` included, whose files are present but unusable.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    limits = (limit_train, limit_test)
    if name == "shapes":
        return _shapes(limit_train, limit_test, seed)
    if name == "fashion-mnist":
        return _from_dataset(name, *_load_pair(FashionMNIST, root, download, 30.0), limits)
    timeout = AUTO_DOWNLOAD_TIMEOUT if name == "auto" else 30.0
    try:
        train, test = _load_pair(MNIST, root, download, timeout)
    except CorruptDatasetError:
        raise  # present but broken: never a silent switch to other data
    except DatasetNotFoundError as exc:
        if name == "mnist":
            raise
        data = _shapes(limit_train, limit_test, seed)
        data.notice = (
            f"note: {exc.summary}; training on the built-in Shapes dataset instead "
            "(--dataset shapes silences this note)"
        )
        return data
    return _from_dataset("mnist", train, test, limits)


def balanced_subset(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct indices into ``labels``, as balanced over the classes as the data allow.

    Each class's indices are shuffled, then taken round-robin (classes in a random order),
    so class counts differ by at most one unless a class runs out of images.
    """
    labels = np.asarray(labels)
    if not 1 <= n <= len(labels):
        raise ValueError(f"balanced_subset: n must be in [1, {len(labels)}], got {n}")
    classes = np.unique(labels)
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    order = rng.permutation(len(classes))
    picked = [pools[c][r] for r in range(max(len(p) for p in pools)) for c in order if r < len(pools[c])]
    return np.sort(np.asarray(picked[:n], dtype=np.int64))
