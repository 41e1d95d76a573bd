"""The run directory while a run writes into it: one writer, no leftovers, costs that stay flat.

Three pieces, used by :func:`tinyae.train.loop.train`:

``RunDirectory``  creates the folder, checks at once that it can be written to (before any
                  data is loaded), locks it against a second process training into it, and
                  removes the temporary files (``.tmp-checkpoint.npz.*``...) that an atomic
                  save killed half-way (SIGKILL, power loss) leaves behind. A folder it
                  created is removed again if the run fails before writing anything.
``HistoryLog``    ``history.jsonl``: one JSON line per finished epoch, appended. The
                  checkpoint records how many lines belong to its state (``history_len``);
                  on resume the log is cut back to that many, dropping a line torn by a
                  kill or epochs recorded after the last checkpoint.
``MetricsWriter`` rewrites ``metrics.json`` (which holds every epoch's record, so one write
                  costs O(epochs)) only when the training time since the last write is at
                  least ``EVERY`` times what that write took, and always when the run stops.
                  Its share of the run time stays below 1 / EVERY however many epochs there are.

So an epoch costs the same at epoch 20,000 as at epoch 1: before, both the checkpoint and
metrics.json were rewritten with the whole history after every epoch, and a long 8-3-8 run
slowed down quadratically.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from typing import IO, Any

from tinyae._atomic import TEMP_PREFIX, atomic_write_text
from tinyae.train.checkpoint import CorruptCheckpointError
from tinyae.train.metrics import METRICS, read_metrics, write_metrics

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; a second writer is then not detected
    fcntl = None  # type: ignore[assignment]

__all__ = ["HISTORY", "HistoryLog", "MetricsWriter", "RunDirError", "RunDirectory"]

HISTORY = "history.jsonl"


class RunDirError(OSError):
    """The run directory cannot be created, written to, or is in use by another process."""


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


class RunDirectory:
    """``with RunDirectory(path) as run_dir:`` the folder exists, is writable, ours alone and clean."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self.removed: list[str] = []  # stale temporary files removed on entry
        self.created = False

    def __enter__(self) -> RunDirectory:
        path = self.path
        if os.path.exists(path) and not os.path.isdir(path):
            raise RunDirError(f"cannot use {path} as the run directory: it is a file")
        self.created = not os.path.exists(path)
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise RunDirError(f"cannot create the run directory {path}: {_reason(exc)}") from exc
        self._lock()
        try:
            self._remove_stale_temps()
            self._probe()
        except BaseException as exc:
            self.__exit__(type(exc))
            raise
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        self._unlock()
        if exc_type is not None and self.created:
            with contextlib.suppress(OSError):
                os.rmdir(self.path)  # only if still empty: e.g. the data could not be loaded

    def _lock(self) -> None:
        if fcntl is None:
            return
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return  # a directory that cannot be opened cannot be locked either; the probe decides
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirError(
                f"another process is training into {self.path}; wait for it or choose another --out"
            ) from None
        except OSError:
            os.close(fd)  # a file system without locks: go on unlocked
            return
        self._fd = fd

    def _unlock(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None

    def _remove_stale_temps(self) -> None:
        # Safe only because the lock keeps every other writer out of this directory.
        for name in os.listdir(self.path):
            if name.startswith(TEMP_PREFIX):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.path, name))
                    self.removed.append(name)

    def _probe(self) -> None:
        try:
            fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX + "probe.", dir=self.path)
            os.close(fd)
            os.unlink(name)
        except OSError as exc:
            raise RunDirError(f"cannot write to the run directory {self.path}: {_reason(exc)}") from exc


class HistoryLog:
    """``history.jsonl``: the per-epoch records, one JSON object per line, appended as epochs end."""

    def __init__(self, run_dir: str) -> None:
        self.path = os.path.join(run_dir, HISTORY)
        self._file: IO[str] | None = None

    def start(self, records: list[dict[str, Any]]) -> None:
        """Make the file hold exactly ``records`` (a new run: none) and open it for appending."""
        atomic_write_text(self.path, "".join(json.dumps(r, allow_nan=True) + "\n" for r in records))
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def read(self, n: int, run_dir: str) -> list[dict[str, Any]]:
        """The first ``n`` records (what a checkpoint with ``history_len == n`` continues from).

        Falls back to metrics.json's list for run directories whose log is missing or short.
        """
        records: list[dict[str, Any]] = []
        with contextlib.suppress(FileNotFoundError), open(self.path, encoding="utf-8") as f:
            for line in f:
                if len(records) == n:
                    break
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # a line torn by a kill: it and anything after it are not in the checkpoint
        if len(records) < n:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                saved = read_metrics(run_dir)["epochs"]
                if isinstance(saved, list) and len(saved) >= n:
                    return list(saved[:n])
            raise CorruptCheckpointError(
                f"{self.path} holds {len(records)} epoch records, but the checkpoint was saved after "
                f"{n}; the run directory is damaged (metrics.json cannot stand in for it either)"
            )
        return records

    def append(self, record: dict[str, Any]) -> None:
        assert self._file is not None, "HistoryLog.start() first"
        self._file.write(json.dumps(record, allow_nan=True) + "\n")
        self._file.flush()

    def sync(self) -> None:
        """Put the appended lines on disk (before a checkpoint that counts them is written)."""
        if self._file is not None:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class MetricsWriter:
    """Writes metrics.json atomically, often while that is cheap and rarely once it is not."""

    EVERY = 20  # training time between two writes >= EVERY x the duration of the last write

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, METRICS)
        self._last_cost = 0.0
        self._since = time.perf_counter()

    def write(self, metrics: dict[str, Any], force: bool = False) -> bool:
        """Write now if ``force`` or if enough training time passed; returns whether it wrote."""
        now = time.perf_counter()
        if not force and now - self._since < self.EVERY * self._last_cost:
            return False
        write_metrics(self.run_dir, metrics)
        self._since = time.perf_counter()
        self._last_cost = self._since - now
        return True
