"""``Recipe``: what the training loop needs to know about one model family.

The loop (:mod:`tinyae.train.loop`) owns everything that is the same for every
model: seeding, the epoch/batch loop, the progress bar, timing, ``metrics.json``,
``checkpoint.npz``, ``--resume``, Ctrl-C and ``tinyae eval``. A recipe owns what
differs: the model, the optimizer, one training step, the test metrics and the
pictures. See :mod:`tinyae.train` for the walk-through of writing one.

Life cycle of a run, with the methods the loop calls::

    cls.add_arguments(parser)          # once, when the CLI is built
    cls.check_config(config)           # after parsing: a message -> exit status 2
    recipe = cls(config, data, device) # data: ImageData (None when cls.uses_images is False)
    tinyae.manual_seed(config["seed"])
    recipe.build()                     # models and optimizers, drawing from the global generator
    recipe.load_state_dict(state)      # only when resuming
    recipe.before_training()           # e.g. load what evaluation needs, outside the timed epochs
    for epoch in range(start, config["epochs"]):          # 0-based here, 1-based in metrics.json
        loader = recipe.train_loader(epoch); loader.set_epoch(epoch)
        for batch in loader:
            loss = recipe.train_step(batch, epoch)       # one optimizer step; returns a float
        recipe.end_epoch(epoch)                          # schedulers, phase switches (optional)
        record = recipe.evaluate(epoch)                  # {"test_loss": ..., other metrics}
        ... checkpoint.npz (recipe.state_dict()) and metrics.json are written here ...
        recipe.epoch_pictures(out_dir, epoch)            # pictures that show progress (optional)
    final = recipe.final_metrics()                       # also what `tinyae eval RUN_DIR` prints
    recipe.pictures(out_dir, history)                    # PNG file names written

Reproducibility contract (what makes a resumed run end with exactly the metrics
of an uninterrupted one): draw every random number of *training* from
``tinyae.generator()`` (init, dropout, noise), shuffle only with the loaders the
loop re-seeds (``self.make_loader``), put all state that changes during training
in ``state_dict()``, and draw *evaluation* randomness from ``self.eval_rng()``,
which is the same fresh generator at every call.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

import tinyae
from tinyae.data import DataLoader, TensorDataset
from tinyae.data.augment import RandomShift
from tinyae.tensor import Tensor

if TYPE_CHECKING:
    from tinyae.train.datasets import ImageData

__all__ = ["MAX_SHIFT", "Recipe", "check_shift"]

MAX_SHIFT = 8  # pixels: a larger --shift would move much of a 28 x 28 digit out of the image


def check_shift(config: dict[str, Any]) -> str | None:
    """The message for a ``--shift`` out of [0, MAX_SHIFT], else None."""
    if not 0 <= config["shift"] <= MAX_SHIFT:
        return f"--shift must be in [0, {MAX_SHIFT}] pixels, got {config['shift']}"
    return None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class Recipe:
    """Base class of the models ``tinyae train`` knows; subclass it and register it.

    Class attributes to set:

    ``summary``      one line for ``tinyae train --help``
    ``description``  a paragraph for ``tinyae train MODEL --help``
    ``uses_images``  False when the recipe makes its own data (``encoder838``): then
                     ``--dataset`` is ignored and ``data`` is None
    ``defaults``     defaults of the common options: ``epochs``, ``batch_size``, ``lr``
                     (None: filled in by :meth:`resolve_config`, described in ``default_notes``)
    ``pictures_made`` names of the PNG files :meth:`pictures` writes (for help and tests)
    ``loss_reduction`` "mean" (default) or "sum": how the differentiated loss combines the batch
    """

    name: ClassVar[str] = ""  # set from the registry
    summary: ClassVar[str] = ""
    description: ClassVar[str] = ""
    uses_images: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {"epochs": 10, "batch_size": 128, "lr": 1e-3}
    default_notes: ClassVar[dict[str, str]] = {}  # help text for defaults left None (resolve_config)
    pictures_made: ClassVar[tuple[str, ...]] = ()
    #: how the loss that train_step differentiates combines the batch: "mean" or "sum" over
    #: images. Data-parallel runs average the ranks' gradients for "mean", add them for "sum".
    loss_reduction: ClassVar[str] = "mean"

    # ------------------------------------------------------------ the CLI side
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        """Add the model's own options (``--code-size``, ``--noise``...); give each a default and help.

        Use dashes in option names; the values land in ``config`` under the
        underscore name (``--code-size`` -> ``config["code_size"]``).
        """

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> str | None:
        """A one-line message when an option value is invalid (the CLI exits with status 2), else None."""
        return None

    @classmethod
    def resolve_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Fill in defaults that depend on other options (left None by the parser); default: as is.

        Called after :meth:`check_config`; the run (metrics.json, checkpoints) records the result.
        """
        return config

    # -------------------------------------------------------- the training side
    def __init__(self, config: dict[str, Any], data: ImageData | None, device: str = "cpu") -> None:
        self.config = config
        self.data = data
        self.device = device
        self._loaders: dict[Any, DataLoader] = {}

    def build(self) -> None:
        """Create the models and optimizers (``self.model``, ``self.optimizer`` by default)."""
        raise NotImplementedError

    def modules(self) -> dict[str, Any]:
        """The trainable modules by name; checkpointed by the default :meth:`state_dict`."""
        return {"model": self.model}

    def optimizers(self) -> dict[str, Any]:
        """The optimizers (and schedulers) by name; anything with ``state_dict``/``load_state_dict``."""
        return {"optimizer": self.optimizer}

    def extra_state(self) -> dict[str, Any]:
        """Any other state that changes during training (plain values and arrays); default none."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly (saved in ``checkpoint.npz``)."""
        return {
            "modules": {k: m.state_dict() for k, m in self.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers().items()},
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, m in self.modules().items():
            m.load_state_dict(state["modules"][k])
        for k, o in self.optimizers().items():
            o.load_state_dict(state["optimizers"][k])
        self.load_extra_state(state.get("extra", {}))

    def train_loader(self, epoch: int) -> DataLoader:
        """The loader of epoch ``epoch`` (0-based); default: the shuffled training images.

        The loop calls ``loader.set_epoch(epoch)`` before iterating, so the order
        depends only on ``(seed, epoch)``. Recipes with phases (pretraining, then
        fine-tuning) may return a different loader per phase.
        """
        return self.make_loader(self.data.train_set(), key="train")

    def train_step(self, batch: tuple[Tensor, ...], epoch: int) -> float:
        """One optimizer step on ``batch`` (``(x, y)`` Tensors); returns the batch's mean loss."""
        raise NotImplementedError

    def before_training(self) -> None:
        """Called once before the first epoch (also when resuming), after :meth:`build`."""

    def end_epoch(self, epoch: int) -> None:
        """Called after the last step of an epoch, before :meth:`evaluate` (schedulers, phases)."""

    def evaluate(self, epoch: int) -> dict[str, Any]:
        """Test-split metrics after epoch ``epoch``: must include ``test_loss`` (a float).

        A ``"warning"`` string in the result is printed after the epoch's line (and kept in
        metrics.json): say there what went wrong, e.g. a GAN collapsing.
        """
        raise NotImplementedError

    def epoch_pictures(self, out_dir: str, epoch: int) -> list[str]:
        """Pictures drawn after every epoch (e.g. a GAN's samples, to watch it learn); default none."""
        return []

    def final_metrics(self) -> dict[str, Any]:
        """The ``final`` block of metrics.json, with the issue's fixed names.

        ``test_mse``/``test_bce``/``test_psnr`` for reconstructions,
        ``test_accuracy`` for classifiers... Must depend only on the model
        state (``tinyae eval`` recomputes it from the checkpoint).
        """
        raise NotImplementedError

    def pictures(self, out_dir: str, history: list[dict[str, Any]]) -> list[str]:
        """Write PNGs into ``out_dir`` (use :mod:`tinyae.train.pictures`); return their file names.

        The loss curves are drawn by the loop for every model; draw the rest here.
        """
        return []

    def report(self, final: dict[str, Any]) -> list[str]:
        """Lines the CLI prints about ``final`` at the end of a run and by ``tinyae eval``.

        Default: every number in ``final``, one per line; override for tables.
        """
        return [f"  {k:<24} {_fmt(v)}" for k, v in final.items() if isinstance(v, int | float | str | None)]

    def dataset_name(self) -> str:
        """What metrics.json records as ``dataset``."""
        return self.data.name if self.data is not None else "none"

    # ------------------------------------------------------------------ helpers
    def make_loader(
        self, dataset: Any, *, key: Any = None, batch_size: int | None = None, shuffle: bool = True
    ) -> DataLoader:
        """A DataLoader seeded with the run's seed on the run's device (cached under ``key``).

        Cached so that every epoch uses the same loader object; its order is
        still a pure function of ``(seed, epoch)`` (see :class:`~tinyae.data.DataLoader`).
        """
        if key is not None and key in self._loaders:
            return self._loaders[key]
        loader = DataLoader(
            dataset,
            batch_size=batch_size or self.config["batch_size"],
            shuffle=shuffle,
            seed=self.config["seed"],
            device=self.device,
        )
        if key is not None:
            self._loaders[key] = loader
        return loader

    def batches(self, *arrays: np.ndarray, batch_size: int = 1000) -> Iterator[tuple[Tensor, ...]]:
        """Fixed-order batches of ``arrays`` as Tensors on the device (for evaluation)."""
        loader = DataLoader(TensorDataset(*arrays), batch_size=batch_size, shuffle=False, device=self.device)
        yield from loader

    def shifted(self, x: Tensor) -> Tensor:
        """``x`` with each image moved by up to ``--shift`` pixels (drawn from the global generator);
        ``x`` itself when the shift is 0 or the run's config has none (runs saved before it existed)."""
        shift = self.config.get("shift", 0)
        return Tensor(RandomShift(shift)(x.data, tinyae.generator())) if shift else x

    def eval_rng(self, tag: int = 0) -> np.random.Generator:
        """A fresh generator for evaluation randomness (test-set noise): the same numbers every call."""
        return np.random.default_rng([int(self.config["seed"]), 7919, int(tag)])
