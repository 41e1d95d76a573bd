"""``checkpoint.npz``: everything a run needs to continue exactly where it stopped.

Contents (saved with :func:`tinyae.serialization.save`: arrays plus a JSON
manifest, never pickle; written atomically, so a killed run keeps the previous one)::

    format      "tinyae-run"           tells a run directory from anything else
    version     1
    model       "ae"                   the registered recipe name
    config      {...}                  the run's resolved options
    epoch       k                      epochs completed
    batch       b                      batches of epoch k already done (0 at an epoch boundary;
                                       > 0 only when Ctrl-C stopped the run inside an epoch)
    partial     {"loss_sum", "count", "seconds"}   the running loss of that unfinished epoch
    history     [...]                  metrics.json's per-epoch records so far
    rng         the global generator's bit_generator.state (plain ints, JSON-able)
    state       recipe.state_dict(): models, optimizers, extra

Restoring ``rng`` matters as much as restoring the weights: dropout masks,
denoising noise and any later initialisation draw from ``tinyae.generator()``;
with its state restored they draw exactly the numbers an uninterrupted run
would have drawn. The data order needs no saved state: the DataLoader's order
of epoch k is a function of ``(seed, k)``.
"""

from __future__ import annotations

import os
from typing import Any

import tinyae
from tinyae.serialization import load, save

__all__ = ["CHECKPOINT", "FORMAT", "CheckpointError", "generator_state", "read_checkpoint",
           "restore_generator", "write_checkpoint"]  # fmt: skip

CHECKPOINT = "checkpoint.npz"
FORMAT = "tinyae-run"
VERSION = 1


class CheckpointError(ValueError):
    """A run directory that cannot be resumed or evaluated (missing, foreign or corrupt)."""


def generator_state() -> dict[str, Any]:
    """The global generator's state as plain Python values (ints of any size, strings)."""
    return dict(tinyae.generator().bit_generator.state)


def restore_generator(state: dict[str, Any]) -> None:
    """Put the global generator back into ``state`` (same bit generator type required)."""
    gen = tinyae.generator()
    if state.get("bit_generator") != type(gen.bit_generator).__name__:
        raise CheckpointError(
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
    """Load ``run_dir/checkpoint.npz``; CheckpointError when missing, foreign, corrupt or another model's."""
    if not os.path.isdir(run_dir):
        raise CheckpointError(f"run directory {run_dir} does not exist")
    path = os.path.join(run_dir, CHECKPOINT)
    if not os.path.isfile(path):
        raise CheckpointError(f"{run_dir} is not a tinyae run directory (no {CHECKPOINT} in it)")
    try:
        ckpt = load(path)
    except ValueError as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a tinyae training checkpoint")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"{path} is checkpoint version {ckpt.get('version')!r}; expected {VERSION}")
    if model is not None and ckpt.get("model") != model:
        raise CheckpointError(f"{run_dir} is a run of model {ckpt.get('model')!r}, not {model!r}")
    return ckpt
