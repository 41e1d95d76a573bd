"""Downloading a file safely: atomically, checksummed, and never more bytes than it can have.

    download_file(url, "cache/train-images-idx3-ubyte.gz", md5="f68b...", max_bytes=10_000_000)

The bytes go to a temporary file next to the destination (see :mod:`tinyae._atomic`);
it is renamed into place only when the download is complete, no longer than
``max_bytes`` and its MD5 matches. Anything else deletes the temporary file and
leaves the destination as it was, so a cut connection, a wrong mirror or an
endless response never leaves a bad file (or a full disk) behind.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from typing import IO, Any

from tinyae._atomic import atomic_open

__all__ = ["DEFAULT_TIMEOUT", "ChecksumError", "describe_error", "download_file", "md5_file", "md5_of"]

DEFAULT_TIMEOUT = 30.0  # seconds, for connecting and for each read
_CHUNK = 1 << 16


class ChecksumError(ValueError):
    """A downloaded file's MD5 does not match the published one."""


def md5_of(data: bytes | bytearray | memoryview) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def md5_file(path: str | os.PathLike[str]) -> str:
    """MD5 of a file, read in chunks (constant memory, whatever the file's size)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _progress_bar(total: int | None, desc: str, enabled: bool) -> Any:
    """A tqdm bar when tqdm is installed and ``enabled``, else None."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: no bar, no fuss
        return None
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False)


def _stream_to(response: IO[bytes], out: IO[bytes], bar: Any, url: str, max_bytes: int | None) -> str:
    """Copy ``response`` to ``out`` chunk by chunk; returns the MD5 of what was written."""
    digest = hashlib.md5(usedforsecurity=False)
    written = 0
    while True:
        chunk = response.read(_CHUNK)
        if not chunk:
            return digest.hexdigest()
        written += len(chunk)
        if max_bytes is not None and written > max_bytes:
            raise OSError(f"download of {url} goes on past {max_bytes} bytes, more than the file can be")
        out.write(chunk)
        digest.update(chunk)
        if bar is not None:
            bar.update(len(chunk))


def download_file(
    url: str,
    path: str | os.PathLike[str],
    md5: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool = False,
    max_bytes: int | None = None,
) -> None:
    """Download ``url`` to ``path`` atomically, verifying its MD5 when given.

    The bytes go to a temporary file next to ``path``; only if the download is
    complete, at most ``max_bytes`` long and its checksum matches is it renamed
    to ``path``. Otherwise the temporary file is deleted and ``path`` is
    untouched. Raises ``urllib.error.URLError``/``OSError`` for network errors
    (and for a response longer than ``max_bytes``) and :class:`ChecksumError`
    for a wrong MD5.
    """
    path = os.fspath(path)
    request = urllib.request.Request(url, headers={"User-Agent": "tinyae"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if total is not None and max_bytes is not None and total > max_bytes:
            raise OSError(f"{url} is {total} bytes, more than the {max_bytes} bytes the file can be")
        bar = _progress_bar(total, os.path.basename(path), progress)
        try:
            with atomic_open(path, "wb") as out:
                actual = _stream_to(response, out, bar, url, max_bytes)
                if total is not None and out.tell() != total:
                    raise OSError(f"incomplete download of {url}: got {out.tell()} of {total} bytes")
                if md5 is not None and actual != md5:
                    # Raising inside atomic_open discards the temporary file.
                    raise ChecksumError(f"{url}: MD5 is {actual}, expected {md5}; download rejected")
        finally:
            if bar is not None:
                bar.close()


def describe_error(exc: BaseException) -> str:
    """A short reason for a failed download: "HTTP 404 Not Found", "Name or service not known"..."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"{exc.reason}"
    return f"{type(exc).__name__}: {exc}"
