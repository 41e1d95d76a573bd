"""Exit statuses of the ``tinyae`` command, and the one ``error:`` line each failure prints.

Every failure ends the command with exactly one line ``tinyae COMMAND: error: ...``
on stderr and a status that says which kind of failure it was, so a script (or a
batch scheduler) can tell "fix the options" from "fix the data" from "retry
later". A traceback is printed only with ``--debug``.

The table (also in ``tinyae --help`` and README.md):

====  =====================================================================
0     done
1     internal error: a bug in tinyae (``--debug`` shows the traceback)
2     bad options: what was typed cannot work (argparse's convention)
3     data: the dataset is missing (explicit ``--dataset``) or its files are unusable
4     checkpoint: a run's checkpoint.npz is unreadable, damaged or does not fit its model
5     file system: cannot write the run directory or output file (read-only, full, in use)
6     training diverged: the loss became NaN or Inf (the last good checkpoint is kept)
7     ``eval``: the recomputed metrics differ from the run's metrics.json
130   interrupted by Ctrl-C (SIGINT); a checkpoint is saved, ``--resume`` continues
143   stopped by SIGTERM; the same as 130 (128 + the signal's number, as shells report it)
====  =====================================================================
"""

from __future__ import annotations

import os
import signal

from tinyae._atomic import TEMP_PREFIX

__all__ = [
    "EXIT_CHECKPOINT",
    "EXIT_CODES",
    "EXIT_DATA",
    "EXIT_DIVERGED",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_IO",
    "EXIT_MISMATCH",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "CLIError",
    "classify",
    "exit_code_table",
    "interrupted_status",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_DATA = 3
EXIT_CHECKPOINT = 4
EXIT_IO = 5
EXIT_DIVERGED = 6
EXIT_MISMATCH = 7
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143

#: status -> what it means, one line each (the help's and README's table)
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "done",
    EXIT_FAILURE: "internal error (a bug; --debug shows the traceback)",
    EXIT_USAGE: "bad options",
    EXIT_DATA: "dataset missing (explicit --dataset) or its files unusable",
    EXIT_CHECKPOINT: "checkpoint unreadable, damaged or not fitting its model",
    EXIT_IO: "cannot write the run directory or output file",
    EXIT_DIVERGED: "training diverged (NaN/Inf loss; the last good checkpoint is kept)",
    EXIT_MISMATCH: "eval: recomputed metrics differ from metrics.json",
    EXIT_INTERRUPTED: "interrupted by Ctrl-C (checkpoint saved; --resume continues)",
    EXIT_TERMINATED: "stopped by SIGTERM (checkpoint saved; --resume continues)",
}


def exit_code_table(indent: str = "  ") -> str:
    return "\n".join(f"{indent}{code:<4} {text}" for code, text in EXIT_CODES.items())


class CLIError(Exception):
    """A failure the command has already put into words: ``code`` is the exit status."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def interrupted_status(signum: int | None) -> int:
    """128 + the signal that stopped the run (130 for Ctrl-C, 143 for SIGTERM; None counts as Ctrl-C)."""
    return 128 + int(signal.SIGINT if signum is None else signum)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _os_message(exc: OSError) -> str:
    if not (exc.strerror and exc.filename):
        return str(exc)
    folder, name = os.path.split(os.fspath(exc.filename))
    if name.startswith(TEMP_PREFIX):  # an atomic write's temporary file: name the file it was for
        target = os.path.join(folder, name[len(TEMP_PREFIX) :].rsplit(".", 1)[0])
        return f"cannot write {target}: {exc.strerror}"
    return f"{exc.filename}: {exc.strerror}"


def classify(exc: BaseException) -> tuple[int, str]:
    """The exit status and the one-line message of an exception that reached the command."""
    from tinyae.data import DatasetNotFoundError, IDXError
    from tinyae.train.checkpoint import CheckpointError, RunDirectoryError
    from tinyae.train.stopping import TrainingDiverged

    if isinstance(exc, CLIError):
        return exc.code, str(exc)
    if isinstance(exc, KeyboardInterrupt):
        status = interrupted_status(getattr(exc, "signum", None))
        return status, f"interrupted by {signal.Signals(status - 128).name}"
    if isinstance(exc, DatasetNotFoundError):
        return EXIT_DATA, _one_line(exc.summary)
    if isinstance(exc, IDXError):
        return EXIT_DATA, _one_line(str(exc))
    if isinstance(exc, RunDirectoryError):
        return EXIT_USAGE, _one_line(str(exc))
    if isinstance(exc, CheckpointError):
        return EXIT_CHECKPOINT, _one_line(str(exc))
    if isinstance(exc, TrainingDiverged):
        return EXIT_DIVERGED, f"training diverged: {exc}"
    if isinstance(exc, OSError):
        return EXIT_IO, _one_line(_os_message(exc))
    if isinstance(exc, MemoryError):
        return EXIT_FAILURE, "out of memory (try a smaller --batch-size or --limit-train)"
    detail = _one_line(str(exc))
    return EXIT_FAILURE, (
        f"internal error: {type(exc).__name__}{': ' + detail if detail else ''} "
        "(a bug in tinyae; run again with --debug for the traceback)"
    )
