"""The training loop shared by every model: epochs, checkpoints, resume, Ctrl-C, metrics, pictures.

    result = train(default_config("ae", epochs=3, dataset="shapes"), "runs/ae-try")
    result.status            # "finished" or "interrupted"
    result.metrics["final"]  # what metrics.json holds

One epoch, as the code below does it::

    loader.set_epoch(epoch)                       # order = f(seed, epoch)
    for each batch: recipe.train_step(batch)      # running loss -> progress bar
    recipe.end_epoch(epoch); recipe.evaluate(epoch)
    checkpoint.npz, then metrics.json             # both atomic

Ctrl-C: the first one asks the loop to stop after the current batch; it then
saves a checkpoint that records the position inside the epoch (``batch``) and
the running loss, and returns ``status="interrupted"``. ``resume=True`` replays
the same epoch order and skips the batches already done, so the resumed run ends
with exactly the metrics of an uninterrupted one (on the CPU, where float
arithmetic is deterministic). A second Ctrl-C stops at once (KeyboardInterrupt),
keeping the last checkpoint.

Under ``mpiexec -n N`` the same loop runs on every rank, data-parallel: ``run`` (from
:func:`tinyae.distributed.training.for_training`; a do-nothing object in a single
process) splits every batch over the ranks, averages the gradients, and lets only rank 0
evaluate, print and write.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import tinyae
from tinyae.distributed.training import for_training
from tinyae.train import pictures as pics
from tinyae.train.checkpoint import (
    CheckpointError,
    generator_state,
    read_checkpoint,
    restore_generator,
    write_checkpoint,
)
from tinyae.train.datasets import ImageData, load_images
from tinyae.train.metrics import write_metrics
from tinyae.train.progress import Progress
from tinyae.train.registry import get_recipe

__all__ = ["COMMON_DEFAULTS", "RunResult", "default_config", "evaluate_run", "load_run", "train"]

#: defaults of the options every model has (``epochs``, ``batch_size`` and ``lr`` come from the recipe)
COMMON_DEFAULTS: dict[str, Any] = {
    "dataset": "auto",
    "seed": 0,
    "device": "cpu",
    "limit_train": None,
    "limit_test": None,
    "sync_bn": False,  # data-parallel runs: BatchNorm statistics over all ranks (tinyae.distributed)
}


@dataclass
class RunResult:
    status: str  # "finished" or "interrupted"
    out_dir: str
    metrics: dict[str, Any]
    pictures: list[str] = field(default_factory=list)
    epoch: int = 0  # epochs completed
    batch: int = 0  # batches done in the unfinished epoch (interrupted runs)
    recipe: Any = None  # the trained Recipe (its .report(final) gives printable lines)


def default_config(model: str, **overrides: Any) -> dict[str, Any]:
    """A complete config for ``model``: common defaults, the recipe's defaults and options, ``overrides``.

    Unknown keys in ``overrides`` raise KeyError (a typo would otherwise be ignored).
    """
    cls = get_recipe(model)
    parser = argparse.ArgumentParser(add_help=False)
    cls.add_arguments(parser)
    config: dict[str, Any] = {"model": model, **COMMON_DEFAULTS, **cls.defaults}
    config.update(vars(parser.parse_args([])))
    unknown = set(overrides) - set(config)
    if unknown:
        raise KeyError(f"default_config: {model} has no option(s) {sorted(unknown)}; known: {sorted(config)}")
    config.update(overrides)
    return cls.resolve_config(config)


class _StopFlag:
    """Set by the first Ctrl-C (or by ``stop(epoch, batch)``); the loop checks it between batches."""

    def __init__(self, progress: Progress) -> None:
        self.requested = False
        self.progress = progress

    def handler(self, signum: int, frame: Any) -> None:
        if self.requested:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True
        self.progress.close()
        print(
            "\nCtrl-C: stopping after this batch and saving a checkpoint (press Ctrl-C again to quit now)",
            file=sys.stderr,
            flush=True,
        )


@contextlib.contextmanager
def _sigint_to(flag: _StopFlag) -> Iterator[None]:
    """Route SIGINT to ``flag`` while training (only possible in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, flag.handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _prepare(
    config: dict[str, Any], data: ImageData | None, data_root: str | None, dataset: str | None
) -> tuple[Any, ImageData | None]:
    cls = get_recipe(config["model"])
    if cls.uses_images and data is None:
        data = load_images(
            dataset or config["dataset"],
            data_root,
            config.get("limit_train"),
            config.get("limit_test"),
            seed=config["seed"],
        )
    return cls, data if cls.uses_images else None


def _summary(record: dict[str, Any], total: int) -> str:
    fixed = ("epoch", "train_loss", "test_loss", "seconds")
    extras = [f"{k} {v:.4g}" for k, v in record.items() if k not in fixed and isinstance(v, int | float)]
    line = (
        f"epoch {record['epoch']}/{total}  train loss {record['train_loss']:.5g}  "
        f"test loss {record['test_loss']:.5g}"
    )
    return "  ".join([line, *extras, f"({record['seconds']:.1f} s)"])


def train(
    config: dict[str, Any],
    out_dir: str,
    *,
    resume: bool = False,
    quiet: bool = False,
    data: ImageData | None = None,
    data_root: str | None = None,
    stop: Callable[[int, int], bool] | None = None,
    stream: Any = None,
) -> RunResult:
    """Train ``config["model"]`` into ``out_dir``; see the module docstring.

    ``resume=True`` continues from ``out_dir/checkpoint.npz`` with the saved
    config, except ``epochs`` and ``device`` which are taken from ``config``.
    ``stop(epoch, batches_done)`` is polled after every batch (0-based epoch); returning
    True acts like Ctrl-C (tests use it). ``data`` bypasses dataset loading.
    Raises CheckpointError when ``resume`` finds no usable checkpoint.
    """
    run = for_training(config, quiet)
    with run.guard():
        return _train(run, config, out_dir, resume, quiet, data, data_root, stop, stream)


def _train(
    run: Any,
    config: dict[str, Any],
    out_dir: str,
    resume: bool,
    quiet: bool,
    data: ImageData | None,
    data_root: str | None,
    stop: Callable[[int, int], bool] | None,
    stream: Any,
) -> RunResult:
    progress = Progress(quiet=quiet or not run.is_writer, stream=stream)
    ckpt: dict[str, Any] | None = None
    dataset_used = None
    if resume:
        ckpt = run.from_writer(lambda: read_checkpoint(out_dir, config["model"]))
        config = {**ckpt["config"], "epochs": config["epochs"], "device": config["device"]}
        dataset_used = ckpt.get("dataset")  # `auto` resolved once, never switched silently
    dataset = dataset_used if dataset_used != "none" else None
    cls, data = run.writer_first(lambda: _prepare(config, data, data_root, dataset))  # rank 0 may download
    if data is not None and data.notice and run.is_writer:
        print(data.notice, file=sys.stderr, flush=True)  # even with --quiet: the data is not what was asked

    recipe = cls(config, data, config["device"])
    tinyae.manual_seed(int(config["seed"]))
    recipe.build()
    start_epoch, start_batch = 0, 0
    partial = {"loss_sum": 0.0, "count": 0, "seconds": 0.0}
    history: list[dict[str, Any]] = []
    if ckpt is not None:
        recipe.load_state_dict(ckpt["state"])
        restore_generator(ckpt["rng"])
        start_epoch, start_batch = int(ckpt["epoch"]), int(ckpt["batch"])
        partial = dict(ckpt["partial"])
        history = list(ckpt["history"])
    run.attach(recipe)
    run.before_training(recipe)

    os.makedirs(out_dir, exist_ok=True)
    metrics: dict[str, Any] = {
        "model": cls.name,
        "dataset": recipe.dataset_name(),
        "config": config,
        "epochs": history,
        "final": None,
    }
    epochs = int(config["epochs"])

    def save(epoch: int, batch: int) -> None:
        if not run.is_writer:
            return
        write_checkpoint(
            out_dir,
            {
                "model": cls.name,
                "dataset": recipe.dataset_name(),
                "config": config,
                "epoch": epoch,
                "batch": batch,
                "partial": partial,
                "history": history,
                "rng": generator_state(),
                "state": recipe.state_dict(),
            },
        )
        write_metrics(out_dir, metrics)

    flag = _StopFlag(progress)
    with _sigint_to(flag):
        if ckpt is None:
            save(0, 0)  # a resumable (and evaluable) run directory from the start
        for epoch in range(start_epoch, epochs):
            loader = run.shard(recipe.train_loader(epoch))
            loader.set_epoch(epoch)
            skip = start_batch if epoch == start_epoch else 0
            if skip == 0:
                partial = {"loss_sum": 0.0, "count": 0, "seconds": 0.0}
            progress.start(epoch + 1, epochs, len(loader), done=skip)
            t0 = time.perf_counter()
            for b, batch in enumerate(loader):
                if b < skip:
                    continue  # done before the interruption; the order is the same, so skipping is exact
                with run.step(loader):
                    loss = float(recipe.train_step(batch, epoch))
                stopping = flag.requested or (stop is not None and stop(epoch, b + 1))
                loss, n, stopping = run.reduce_step(loss, len(batch[0]), stopping)
                partial["loss_sum"] += loss * n
                partial["count"] += n
                progress.update(loss)
                if stopping:
                    partial["seconds"] += time.perf_counter() - t0
                    progress.close()
                    save(epoch, b + 1)
                    return RunResult("interrupted", out_dir, metrics, epoch=epoch, batch=b + 1, recipe=recipe)
            recipe.end_epoch(epoch)
            evaluation = run.from_writer(lambda e=epoch: dict(recipe.evaluate(e)))
            record = {
                "epoch": epoch + 1,
                "train_loss": partial["loss_sum"] / max(partial["count"], 1),
                "test_loss": float(evaluation.pop("test_loss")),
                "seconds": partial["seconds"] + time.perf_counter() - t0,
                **evaluation,
            }
            history.append(record)
            partial = {"loss_sum": 0.0, "count": 0, "seconds": 0.0}
            save(epoch + 1, 0)
            run.from_writer(lambda e=epoch: recipe.epoch_pictures(out_dir, e))
            # At most ~50 summary lines per run: every epoch of a short run, every k-th of a long one.
            every = max(1, epochs // 50)
            progress.end(_summary(record, epochs), show=(epoch + 1) % every == 0 or epoch + 1 == epochs)
            if record.get("warning") and run.is_writer:  # e.g. a GAN collapsing: shown even with --quiet
                print(f"warning: epoch {epoch + 1}: {record['warning']}", file=sys.stderr, flush=True)
            if run.any(flag.requested):
                return RunResult("interrupted", out_dir, metrics, epoch=epoch + 1, recipe=recipe)

    metrics["final"] = run.from_writer(recipe.final_metrics)
    written = run.from_writer(lambda: _finish(out_dir, metrics, history, cls.name, recipe))
    return RunResult("finished", out_dir, metrics, pictures=written, epoch=epochs, recipe=recipe)


def _finish(
    out_dir: str, metrics: dict[str, Any], history: list[dict[str, Any]], name: str, recipe: Any
) -> list[str]:
    """metrics.json with the final block, the loss curves and the recipe's pictures; their names."""
    write_metrics(out_dir, metrics)
    written = []
    if history:
        written.append(pics.loss_curves(out_dir, history, title=f"{name} on {recipe.dataset_name()}"))
    return written + recipe.pictures(out_dir, history)


def load_run(
    run_dir: str, *, data_root: str | None = None, device: str | None = None, data: ImageData | None = None
) -> tuple[Any, dict[str, Any]]:
    """The recipe of ``run_dir`` rebuilt with the checkpoint's state, and the checkpoint itself."""
    ckpt = read_checkpoint(run_dir)
    config = dict(ckpt["config"])
    if device is not None:
        config["device"] = device
    try:
        get_recipe(str(ckpt.get("model")))
    except KeyError as exc:
        raise CheckpointError(f"{run_dir}: {exc.args[0]}") from exc
    dataset = ckpt.get("dataset")
    cls, data = _prepare(config, data, data_root, dataset if dataset != "none" else None)
    recipe = cls(config, data, config["device"])
    tinyae.manual_seed(int(config["seed"]))
    recipe.build()
    recipe.load_state_dict(ckpt["state"])
    return recipe, ckpt


def evaluate_run(
    run_dir: str, *, data_root: str | None = None, device: str | None = None, data: ImageData | None = None
) -> dict[str, Any]:
    """Recompute ``final`` from ``run_dir/checkpoint.npz`` (the model state after its last saved step)."""
    recipe, _ = load_run(run_dir, data_root=data_root, device=device, data=data)
    return recipe.final_metrics()
