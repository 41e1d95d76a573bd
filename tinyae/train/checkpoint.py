"""``checkpoint.npz``: everything a run needs to continue exactly where it stopped.

Contents (saved with :func:`tinyae.serialization.save`: arrays plus a JSON
manifest, never pickle; written atomically, so a killed run keeps the previous one)::

    format      "tinyae-run"           tells a run directory from anything else
    version     2                      (version 1 also held ``history``; still read)
    model       "ae"                   the registered recipe name
    config      {...}                  the run's resolved options
    epoch       k                      epochs completed
    batch       b                      batches of epoch k already done (0 at an epoch boundary;
                                       > 0 only when Ctrl-C stopped the run inside an epoch)
    partial     {"loss_sum", "count", "seconds", "skipped"}   the running loss of that unfinished epoch
    steps       n                      optimizer steps (batches) done in all, for messages
    history_len k                      how many records of history.jsonl belong to this state
    rng         the global generator's bit_generator.state (plain ints, JSON-able)
    state       recipe.state_dict(): models, optimizers, extra

Restoring ``rng`` matters as much as restoring the weights: dropout masks,
denoising noise and any later initialisation draw from ``tinyae.generator()``;
with its state restored they draw exactly the numbers an uninterrupted run
would have drawn. The data order needs no saved state: the DataLoader's order
of epoch k is a function of ``(seed, k)``.

The per-epoch records live in ``history.jsonl`` (see :mod:`tinyae.train.rundir`), not
here, so a checkpoint's size and the time to write it depend on the model only,
not on how many epochs the run has done.

Errors: :class:`RunDirectoryError` when the directory is not a run this command can
continue (missing, no checkpoint, another model's run: fix the command line), and
:class:`CorruptCheckpointError` when the checkpoint is there but cannot be used
(unreadable, foreign, a newer version, weights that do not fit the model or are not finite).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

import tinyae
from tinyae.serialization import load, save

__all__ = ["CHECKPOINT", "FORMAT", "CheckpointError", "CorruptCheckpointError", "RunDirectoryError",
           "generator_state", "load_recipe_state", "read_checkpoint", "restore_generator",
           "write_checkpoint"]  # fmt: skip

CHECKPOINT = "checkpoint.npz"
FORMAT = "tinyae-run"
VERSION = 2
READABLE_VERSIONS = (1, 2)


class CheckpointError(ValueError):
    """A run directory that cannot be resumed or evaluated (missing, foreign or corrupt)."""


class RunDirectoryError(CheckpointError):
    """The directory is not a run that this command can use: missing, no checkpoint, another model's."""


class CorruptCheckpointError(CheckpointError):
    """The checkpoint is there but unusable: unreadable, foreign, too new, or weights that do not fit."""


def generator_state() -> dict[str, Any]:
    """The global generator's state as plain Python values (ints of any size, strings)."""
    return dict(tinyae.generator().bit_generator.state)


def restore_generator(state: dict[str, Any]) -> None:
    """Put the global generator back into ``state`` (same bit generator type required)."""
    gen = tinyae.generator()
    if state.get("bit_generator") != type(gen.bit_generator).__name__:
        raise CorruptCheckpointError(
            f"checkpoint: saved generator is {state.get('bit_generator')!r}, "
            f"this process uses {type(gen.bit_generator).__name__}"
        )
    gen.bit_generator.state = state


def write_checkpoint(run_dir: str, payload: dict[str, Any]) -> str:
    """Save ``payload`` (see the module docstring) to ``run_dir/checkpoint.npz``; returns the path."""
    path = os.path.join(run_dir, CHECKPOINT)
    save({"format": FORMAT, "version": VERSION, **payload}, path)
    return path


def read_checkpoint(run_dir: str, model: str | None = None) -> dict[str, Any]:
    """Load ``run_dir/checkpoint.npz``.

    RunDirectoryError when the directory or its checkpoint is missing or holds another model's run;
    CorruptCheckpointError when the file cannot be read or is not a tinyae run checkpoint.
    """
    if not os.path.isdir(run_dir):
        raise RunDirectoryError(f"run directory {run_dir} does not exist")
    path = os.path.join(run_dir, CHECKPOINT)
    if not os.path.isfile(path):
        raise RunDirectoryError(f"{run_dir} is not a tinyae run directory (no {CHECKPOINT} in it)")
    try:
        ckpt = load(path)
    except ValueError as exc:  # the message names the file already
        raise CorruptCheckpointError(str(exc).removeprefix("load: ")) from exc
    except OSError as exc:
        raise CorruptCheckpointError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CorruptCheckpointError(f"{path} is not a tinyae training checkpoint")
    if ckpt.get("version") not in READABLE_VERSIONS:
        raise CorruptCheckpointError(
            f"{path} is checkpoint version {ckpt.get('version')!r}; this tinyae reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    required = ("model", "config", "epoch", "batch", "partial", "rng", "state")
    history = "history" if ckpt["version"] == 1 else "history_len"
    missing = [k for k in (*required, history) if k not in ckpt]
    if missing:
        raise CorruptCheckpointError(f"{path} lacks {', '.join(missing)}; it is damaged")
    if model is not None and ckpt.get("model") != model:
        raise RunDirectoryError(f"{run_dir} is a run of model {ckpt.get('model')!r}, not {model!r}")
    return ckpt


def _non_finite(state: Any, where: str = "") -> str | None:
    """The first floating array in ``state`` holding NaN or Inf, as a dotted path; else None."""
    if isinstance(state, dict):
        for k, v in state.items():
            found = _non_finite(v, f"{where}.{k}" if where else str(k))
            if found:
                return found
        return None
    if isinstance(state, np.ndarray) and state.dtype.kind in "fc" and not np.isfinite(state).all():
        return where
    return None


def load_recipe_state(recipe: Any, ckpt: dict[str, Any], path: str) -> None:
    """``recipe.load_state_dict(ckpt["state"])``, or CorruptCheckpointError saying what does not fit.

    Refuses model weights holding NaN or Inf: nothing useful can be resumed or evaluated from them.
    """
    state = ckpt["state"]
    bad = _non_finite(state.get("modules", {}) if isinstance(state, dict) else {})
    if bad:
        raise CorruptCheckpointError(f"{path}: the weight {bad} holds NaN or Inf values")
    try:
        recipe.load_state_dict(state)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        what = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, KeyError):
            what = f"no entry {exc.args[0]!r}"
        raise CorruptCheckpointError(
            f"{path}: its state does not fit the {ckpt.get('model')} model its config describes ({what})"
        ) from exc
