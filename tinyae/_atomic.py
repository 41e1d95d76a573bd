"""Atomic file writes: a reader sees either the old file or the complete new one.

Writing a file in place is not safe: a crash, a full disk or Ctrl-C half-way
leaves a truncated file behind, and the next run loads garbage. The standard
remedy, used here for datasets, checkpoints, JSON and pictures alike, is:

1. write to a temporary file *in the same directory* (so the final rename never
   crosses file systems, where it would stop being atomic),
2. flush and ``fsync`` it, so its bytes are on disk before the rename,
3. ``os.replace`` it onto the destination: on POSIX and Windows this swaps the
   name in one step; a process killed before this point leaves the old file.

On any error the temporary file is removed and the destination is untouched.

Example::

    atomic_write_bytes("out.bin", payload)

    with atomic_open("metrics.json", "w") as f:
        json.dump(metrics, f)
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_text", "temp_path_for"]

#: Temporary files start with this prefix, so stale ones are easy to recognise.
TEMP_PREFIX = ".tmp-"


def temp_path_for(path: str | os.PathLike[str]) -> tuple[int, str]:
    """Create an empty temporary file next to ``path``; returns ``(fd, name)``."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    return tempfile.mkstemp(prefix=TEMP_PREFIX + os.path.basename(path) + ".", dir=directory)


def _default_mode(path: str) -> int:
    """Permissions for the new file: the old file's, else what ``open`` would give.

    ``mkstemp`` creates files readable by the owner only (0600); a dataset or a
    checkpoint should get the usual permissions instead.
    """
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)  # the only way to read the umask is to set it...
        os.umask(umask)  # ...and put it back at once
        return 0o666 & ~umask


def _fsync_directory(directory: str) -> None:
    """Persist the rename itself (POSIX only; a no-op where directories can't be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; on success it replaces ``path`` atomically.

    ``mode`` must be a write mode (``"w"``, ``"wb"``, ``"x"``...; ``"a"`` cannot be
    atomic and is refused). Extra keyword arguments (``encoding``, ``newline``)
    go to :func:`open`. If the ``with`` block raises, ``path`` is left as it was.
    """
    if "w" not in mode and "x" not in mode:
        raise ValueError(f"atomic_open: mode must be a write mode like 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    if "x" in mode and os.path.exists(path):
        raise FileExistsError(f"atomic_open: {path} already exists (mode {mode!r})")
    fd, tmp = temp_path_for(path)
    try:
        with contextlib.suppress(OSError):  # e.g. file systems without chmod
            os.chmod(tmp, _default_mode(path))
        # The file exists already (mkstemp made it), so open its fd in "w" mode.
        with os.fdopen(fd, mode.replace("x", "w"), **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # BaseException: a KeyboardInterrupt must also clean up the temp file.
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(os.path.dirname(os.path.abspath(path)))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)
