"""The training loop shared by every model: epochs, checkpoints, resume, signals, metrics, pictures.

    result = train(default_config("ae", epochs=3, dataset="shapes"), "runs/ae-try")
    result.status            # "finished" or "interrupted"
    result.metrics["final"]  # what metrics.json holds

One epoch, as the code below does it::

    loader.set_epoch(epoch)                       # order = f(seed, epoch)
    for each batch: recipe.train_step(batch)      # running loss -> progress bar; NaN/Inf -> stop
    recipe.end_epoch(epoch); recipe.evaluate(epoch)
    history.jsonl += the epoch's record           # appended
    checkpoint.npz                                # atomic; its size depends on the model only
    metrics.json                                  # atomic; rewritten when cheap (rundir.MetricsWriter)

Ctrl-C or SIGTERM: the first one asks the loop to stop after the current batch;
it then saves a checkpoint that records the position inside the epoch (``batch``)
and the running loss, and returns ``status="interrupted"``. ``resume=True``
replays the same epoch order and skips the batches already done, so the resumed
run ends with exactly the metrics of an uninterrupted one (on the CPU, where
float arithmetic is deterministic). A second signal stops at once
(:class:`~tinyae.train.stopping.Interrupted`, a KeyboardInterrupt), keeping the
last checkpoint. A loss that becomes NaN or Inf raises
:class:`~tinyae.train.stopping.TrainingDiverged` unless ``config["skip_nonfinite"]``
(see :mod:`tinyae.train.stopping`).

Under ``mpiexec -n N`` the same loop runs on every rank, data-parallel: ``run`` (from
:func:`tinyae.distributed.training.for_training`; a do-nothing object in a single
process) splits every batch over the ranks, averages the gradients, and lets only rank 0
evaluate, print and write (the run directory, its history, checkpoint and metrics).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import tinyae
from tinyae.distributed.training import for_training
from tinyae.train import pictures as pics
from tinyae.train.checkpoint import (
    CHECKPOINT,
    CorruptCheckpointError,
    generator_state,
    load_recipe_state,
    read_checkpoint,
    restore_generator,
    write_checkpoint,
)
from tinyae.train.datasets import ImageData, load_images
from tinyae.train.progress import Progress
from tinyae.train.registry import get_recipe
from tinyae.train.rundir import HistoryLog, MetricsWriter, RunDirectory
from tinyae.train.stopping import (
    StopRequest,
    TrainingDiverged,
    catch_stop_signals,
    is_nonfinite_failure,
    skip_nonfinite_steps,
    weights_finite,
)

__all__ = ["COMMON_DEFAULTS", "RESUMABLE", "RunResult", "default_config", "evaluate_run", "load_run", "train"]

#: defaults of the options every model has (``epochs``, ``batch_size`` and ``lr`` come from the recipe)
COMMON_DEFAULTS: dict[str, Any] = {
    "dataset": "auto",
    "seed": 0,
    "device": "cpu",
    "limit_train": None,
    "limit_test": None,
    "skip_nonfinite": False,
    "sync_bn": False,  # data-parallel runs: BatchNorm statistics over all ranks (tinyae.distributed)
}

#: options a resumed run takes from the new config; all others come from the checkpoint
RESUMABLE = ("epochs", "device", "skip_nonfinite")


@dataclass
class RunResult:
    status: str  # "finished" or "interrupted"
    out_dir: str
    metrics: dict[str, Any]
    pictures: list[str] = field(default_factory=list)
    epoch: int = 0  # epochs completed
    batch: int = 0  # batches done in the unfinished epoch (interrupted runs)
    recipe: Any = None  # the trained Recipe (its .report(final) gives printable lines)
    signal: int | None = None  # the signal that interrupted the run (None: stop() asked)


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


def _step(recipe: Any, batch: Any, epoch: int) -> tuple[float, BaseException | None]:
    """One training step: ``(loss, None)``, or ``(nan, error)`` when it failed on non-finite weights."""
    try:
        return float(recipe.train_step(batch, epoch)), None
    except (ValueError, ArithmeticError) as exc:
        if not is_nonfinite_failure(exc, recipe.modules()):
            raise  # a genuine error, not a diverged model
        return math.nan, exc


def _fresh_partial() -> dict[str, Any]:
    return {"loss_sum": 0.0, "count": 0, "seconds": 0.0, "skipped": 0}


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
    config, except the options in ``RESUMABLE`` which are taken from ``config``.
    ``stop(epoch, batches_done)`` is polled after every batch (0-based epoch); returning
    True acts like Ctrl-C (tests use it). ``data`` bypasses dataset loading.
    Raises CheckpointError when ``resume`` finds no usable checkpoint,
    :class:`~tinyae.train.rundir.RunDirError` (an OSError) when ``out_dir`` cannot be
    written, and :class:`~tinyae.train.stopping.TrainingDiverged` on a NaN/Inf loss.
    """
    run = for_training(config, quiet)
    with run.guard():
        ckpt = run.from_writer(lambda: read_checkpoint(out_dir, config["model"])) if resume else None
        if ckpt is not None:
            config = {**ckpt["config"], **{k: config[k] for k in RESUMABLE if k in config}}
        # Only the writer owns the directory; before the data is loaded, so an unwritable --out fails at once.
        with RunDirectory(out_dir) if run.is_writer else contextlib.nullcontext():
            log = HistoryLog(out_dir) if run.is_writer else _NoLog()
            try:
                progress = Progress(quiet=quiet or not run.is_writer, stream=stream)
                return _train(run, config, out_dir, ckpt, log, progress, data, data_root, stop)
            finally:
                log.close()


class _NoLog:
    """What the ranks other than the writer have for a history log: nothing to write."""

    def start(self, records: list[dict[str, Any]]) -> None: ...

    def append(self, record: dict[str, Any]) -> None: ...

    def sync(self) -> None: ...

    def close(self) -> None: ...


def _train(
    run: Any,
    config: dict[str, Any],
    out_dir: str,
    ckpt: dict[str, Any] | None,
    log: HistoryLog | _NoLog,
    progress: Progress,
    data: ImageData | None,
    data_root: str | None,
    stop: Callable[[int, int], bool] | None,
) -> RunResult:
    dataset_used = ckpt.get("dataset") if ckpt is not None else None  # `auto` resolved once, never switched
    dataset = dataset_used if dataset_used != "none" else None
    cls, data = run.writer_first(lambda: _prepare(config, data, data_root, dataset))  # rank 0 may download
    if data is not None and data.notice and run.is_writer:
        print(data.notice, file=sys.stderr, flush=True)  # even with --quiet: the data is not what was asked

    recipe = cls(config, data, config["device"])
    tinyae.manual_seed(int(config["seed"]))
    recipe.build()
    start_epoch, start_batch, steps = 0, 0, 0
    partial = _fresh_partial()
    history: list[dict[str, Any]] = []
    if ckpt is not None:
        load_recipe_state(recipe, ckpt, os.path.join(out_dir, CHECKPOINT))
        restore_generator(ckpt["rng"])
        start_epoch, start_batch = int(ckpt["epoch"]), int(ckpt["batch"])
        partial = {**partial, **ckpt["partial"]}
        if "history" in ckpt:
            history = list(ckpt["history"])
        else:
            history = run.from_writer(lambda: log.read(int(ckpt["history_len"]), out_dir))
        steps = int(ckpt.get("steps", 0))
    log.start(history)
    run.attach(recipe)
    run.before_training(recipe)

    metrics: dict[str, Any] = {
        "model": cls.name,
        "dataset": recipe.dataset_name(),
        "config": config,
        "epochs": history,
        "final": None,
    }
    writer = MetricsWriter(out_dir) if run.is_writer else None
    epochs = int(config["epochs"])
    skip_nonfinite = bool(config.get("skip_nonfinite"))
    saved = (start_epoch, start_batch)  # where the checkpoint on disk stands

    def save(epoch: int, batch: int) -> None:
        nonlocal saved
        if not run.is_writer:
            return
        log.sync()  # the records the checkpoint counts are on disk before it is
        write_checkpoint(
            out_dir,
            {
                "model": cls.name,
                "dataset": recipe.dataset_name(),
                "config": config,
                "epoch": epoch,
                "batch": batch,
                "partial": partial,
                "steps": steps,
                "history_len": len(history),
                "rng": generator_state(),
                "state": recipe.state_dict(),
            },
        )
        saved = (epoch, batch)

    def write_metrics(force: bool = False) -> None:
        if writer is not None:
            writer.write(metrics, force=force)

    def interrupted(epoch: int, batch: int) -> RunResult:
        write_metrics(force=True)
        return RunResult("interrupted", out_dir, metrics, epoch=epoch, batch=batch, recipe=recipe,
                         signal=request.signum)  # fmt: skip

    request = StopRequest(on_first=progress.close)
    refused: list[str] = []  # optimizers whose step was skipped for non-finite gradients, this batch
    guard = skip_nonfinite_steps(recipe.optimizers(), refused) if skip_nonfinite else contextlib.nullcontext()
    with catch_stop_signals(request), guard:
        if ckpt is None:
            save(0, 0)  # a resumable (and evaluable) run directory from the start
            write_metrics(force=True)
        for epoch in range(start_epoch, epochs):
            loader = run.shard(recipe.train_loader(epoch))
            loader.set_epoch(epoch)
            skip = start_batch if epoch == start_epoch else 0
            if skip == 0:
                partial = _fresh_partial()
            progress.start(epoch + 1, epochs, len(loader), done=skip)
            t0 = time.perf_counter()
            for b, batch in enumerate(loader):
                if b < skip:
                    continue  # done before the interruption; the order is the same, so skipping is exact
                refused.clear()
                steps += 1
                with run.step(loader):
                    loss, failure = _step(recipe, batch, epoch)
                stopping = request.requested or (stop is not None and stop(epoch, b + 1))
                loss, n, stopping = run.reduce_step(loss, len(batch[0]), stopping)  # over all ranks
                if math.isfinite(loss) and not refused:
                    partial["loss_sum"] += loss * n
                    partial["count"] += n
                    progress.update(loss)
                elif skip_nonfinite and failure is None and weights_finite(recipe.modules()):
                    partial["skipped"] += 1
                    progress.update(None)
                else:
                    progress.close()
                    write_metrics(force=True)
                    diverged = TrainingDiverged(loss, steps, epoch, b + 1, *saved, cause=failure)
                    diverged._tinyae_all_ranks = True  # the reduced loss is the same on every rank
                    raise diverged
                if stopping:
                    partial["seconds"] += time.perf_counter() - t0
                    progress.close()
                    save(epoch, b + 1)
                    return interrupted(epoch, b + 1)
            recipe.end_epoch(epoch)
            evaluation = run.from_writer(lambda e=epoch: dict(recipe.evaluate(e)))
            record = {
                "epoch": epoch + 1,
                "train_loss": partial["loss_sum"] / partial["count"] if partial["count"] else math.nan,
                "test_loss": float(evaluation.pop("test_loss")),
                "seconds": partial["seconds"] + time.perf_counter() - t0,
                **evaluation,
            }
            if partial["skipped"]:
                record["skipped_batches"] = partial["skipped"]
            history.append(record)
            log.append(record)
            partial = _fresh_partial()
            save(epoch + 1, 0)
            write_metrics()
            run.from_writer(lambda e=epoch: recipe.epoch_pictures(out_dir, e))
            # At most ~50 summary lines per run: every epoch of a short run, every k-th of a long one.
            every = max(1, epochs // 50)
            progress.end(_summary(record, epochs), show=(epoch + 1) % every == 0 or epoch + 1 == epochs)
            warning = record.get("warning")  # e.g. a GAN collapsing: shown even with --quiet
            if record.get("skipped_batches"):
                skipped = (
                    f"skipped {record['skipped_batches']} batch(es) whose loss or gradients were NaN/Inf"
                )
                warning = f"{warning}; {skipped}" if warning else skipped
            if warning and run.is_writer:
                print(f"warning: epoch {epoch + 1}: {warning}", file=sys.stderr, flush=True)
            if run.any(request.requested):
                return interrupted(epoch + 1, 0)

    metrics["final"] = run.from_writer(recipe.final_metrics)
    write_metrics(force=True)
    written = run.from_writer(lambda: _pictures(out_dir, history, cls.name, recipe))
    return RunResult("finished", out_dir, metrics, pictures=written, epoch=epochs, recipe=recipe)


def _pictures(out_dir: str, history: list[dict[str, Any]], name: str, recipe: Any) -> list[str]:
    """The loss curves and the recipe's pictures; their file names."""
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
        raise CorruptCheckpointError(f"{run_dir}: {exc.args[0]}") from exc
    dataset = ckpt.get("dataset")
    cls, data = _prepare(config, data, data_root, dataset if dataset != "none" else None)
    recipe = cls(config, data, config["device"])
    tinyae.manual_seed(int(config["seed"]))
    recipe.build()
    load_recipe_state(recipe, ckpt, os.path.join(run_dir, CHECKPOINT))
    return recipe, ckpt


def evaluate_run(
    run_dir: str, *, data_root: str | None = None, device: str | None = None, data: ImageData | None = None
) -> dict[str, Any]:
    """Recompute ``final`` from ``run_dir/checkpoint.npz`` (the model state after its last saved step)."""
    recipe, _ = load_run(run_dir, data_root=data_root, device=device, data=data)
    return recipe.final_metrics()
