"""Reading and writing IDX files, the format MNIST and Fashion-MNIST ship in.

An IDX file is a tiny header followed by raw array bytes::

    bytes 0-1   zero
    byte  2     element type code (0x08 = unsigned byte, see ``_DTYPES``)
    byte  3     number of dimensions, ndim
    then        ndim sizes, each a big-endian 32-bit unsigned integer
    then        the elements, in C order, big-endian

So the "magic number" of an image file (type 0x08, 3 dimensions) is
``0x00000803 = 2051`` and of a label file ``0x00000801 = 2049``.

Files are usually gzipped; :func:`read_idx` recognises gzip by its first two
bytes (``1f 8b``), not by the file name. Every check failure raises
:class:`IDXError` (a ``ValueError``) naming the file and what is wrong, because
"cannot reshape array of size 47039984" is no help to anyone.

Reading is bounded: the header says how many bytes follow, so a file is read
(and decompressed) only that far, and never at all when the header asks for more
than the file can hold or than ``max_bytes`` allows. A gzip "bomb" (1 MB that
inflates to 1 GB) is rejected after a few kilobytes, not after filling memory.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from typing import IO

import numpy as np

__all__ = ["IDXError", "decode_idx", "encode_idx", "read_idx", "read_idx_bytes", "read_idx_stream",
           "write_idx"]  # fmt: skip

# IDX type code -> big-endian NumPy dtype.
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES: dict[str, int] = {dt.newbyteorder("=").str[1:]: code for code, dt in _DTYPES.items()}

GZIP_MAGIC = b"\x1f\x8b"

#: deflate never compresses better than about 1032:1 (a long run of one byte), so a gzip
#: file of C bytes holds at most ~1032 C bytes; a header asking for more is lying.
MAX_GZIP_RATIO = 1032
_CHUNK = 1 << 20  # bytes decompressed per read: the only memory used beyond the result


class IDXError(ValueError):
    """An IDX file is malformed: wrong magic number, dimensions or length."""


def _header(head: bytes, name: str, expected_ndim: int | None) -> tuple[np.dtype, int]:
    """dtype and ndim from the first 4 bytes; IDXError when they are not an IDX magic number."""
    if len(head) < 4:
        raise IDXError(f"{name}: file is {len(head)} bytes, too short for an IDX header")
    zero, code, ndim = struct.unpack(">HBB", head[:4])
    magic = int.from_bytes(head[:4], "big")
    if zero != 0 or code not in _DTYPES:
        raise IDXError(
            f"{name}: bad magic number 0x{magic:08x}; an IDX file starts with 00 00, a type code "
            f"({', '.join(f'0x{c:02x}' for c in _DTYPES)}) and the number of dimensions"
        )
    if expected_ndim is not None and ndim != expected_ndim:
        raise IDXError(
            f"{name}: magic number 0x{magic:08x} says {ndim} dimensions, expected {expected_ndim} "
            f"(magic 0x{0x800 + expected_ndim:08x}); is this the right file?"
        )
    return _DTYPES[code], ndim


def _size_error(name: str, shape: tuple[int, ...], dtype: np.dtype, expected: int, actual: int) -> IDXError:
    what = "truncated" if actual < expected else "has trailing bytes"
    return IDXError(
        f"{name}: {what}: header says shape {tuple(shape)} of {dtype.name} "
        f"({expected} bytes in all), but the file has {actual} bytes"
    )


def read_idx_stream(
    f: IO[bytes],
    name: str = "<stream>",
    *,
    expected_ndim: int | None = None,
    max_bytes: int | None = None,
    file_size: int | None = None,
) -> bytearray:
    """The (decompressed) IDX bytes of the seekable binary file ``f``, header checked.

    Reads no further than the header says the file extends, and refuses before
    reading the body when the header asks for more than ``max_bytes`` (a known
    size, e.g. MNIST's) or, given ``file_size`` (the bytes from ``f``'s position
    to its end), more than such a file can hold: exactly ``file_size`` when
    uncompressed, ``MAX_GZIP_RATIO`` times it when gzipped. Memory used: the
    result plus one chunk.
    """
    start = f.tell()
    compressed = f.read(2) == GZIP_MAGIC
    f.seek(start)
    src: IO[bytes] = gzip.GzipFile(fileobj=f, mode="rb") if compressed else f
    try:
        head = src.read(4)
        dtype, ndim = _header(head, name, expected_ndim)
        dims = src.read(4 * ndim)
        header = 4 + 4 * ndim
        if len(dims) < 4 * ndim:
            raise IDXError(
                f"{name}: file is {4 + len(dims)} bytes, too short for a {ndim}-dimensional header"
            )
        shape = struct.unpack(f">{ndim}I", dims)
        expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if max_bytes is not None and expected > max_bytes:
            raise IDXError(
                f"{name}: header says shape {tuple(shape)} of {dtype.name} ({expected} bytes), more than "
                f"the {max_bytes} bytes this file can have; is this the right file?"
            )
        if file_size is not None and not compressed and expected != file_size:
            raise _size_error(name, shape, dtype, expected, file_size)
        if file_size is not None and compressed and expected > MAX_GZIP_RATIO * file_size + 1024:
            raise IDXError(
                f"{name}: header says shape {tuple(shape)} of {dtype.name} ({expected} bytes), more than "
                f"a gzip file of {file_size} bytes can hold; the file is damaged or not an IDX file"
            )
        data = bytearray(expected)
        data[:header] = head + dims
        view, filled = memoryview(data), header
        while filled < expected:
            chunk = src.read(min(_CHUNK, expected - filled))
            if not chunk:
                raise _size_error(name, shape, dtype, expected, filled)
            view[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
        if src.read(1):  # the header's size is reached; any more is not this array
            raise IDXError(
                f"{name}: has trailing bytes: header says shape {tuple(shape)} of {dtype.name} "
                f"({expected} bytes in all), but the "
                + ("decompressed data goes on" if compressed else "file goes on")
            )
    except (OSError, EOFError, zlib.error) as exc:
        if not compressed:
            raise
        # A truncated download ends up here: "Compressed file ended before the
        # end-of-stream marker was reached"; a flipped byte gives "CRC check failed".
        raise IDXError(f"{name}: corrupt or truncated gzip data ({exc})") from exc
    return data


def read_idx_bytes(path: str | os.PathLike[str], max_bytes: int | None = None) -> bytearray:
    """The decompressed IDX bytes of ``path`` (gzipped or plain), read no further than its header says."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        return read_idx_stream(f, path, max_bytes=max_bytes, file_size=os.fstat(f.fileno()).st_size)


def decode_idx(
    data: bytes | bytearray, name: str = "<bytes>", expected_ndim: int | None = None
) -> np.ndarray:
    """Parse IDX bytes (already decompressed) into an array in native byte order.

    Uses ``np.frombuffer``, so decoding 60,000 images is a single copy, not a
    Python loop. ``expected_ndim`` (3 for images, 1 for labels) turns a mixed-up
    file into a clear error.
    """
    dtype, ndim = _header(bytes(data[:4]), name, expected_ndim)
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXError(f"{name}: file is {len(data)} bytes, too short for a {ndim}-dimensional header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise _size_error(name, shape, dtype, expected, len(data))
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    # Convert to native byte order (a no-op view for single bytes).
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_idx(
    path: str | os.PathLike[str], expected_ndim: int | None = None, max_bytes: int | None = None
) -> np.ndarray:
    """Read an IDX file (gzipped or plain) into a NumPy array, validating it fully.

    ``max_bytes`` caps the decompressed size (header included) for files of a known size.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = read_idx_stream(
            f, path, expected_ndim=expected_ndim, max_bytes=max_bytes, file_size=os.fstat(f.fileno()).st_size
        )
    return decode_idx(data, path, expected_ndim)


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes (uncompressed) of ``array``; the inverse of :func:`decode_idx`."""
    array = np.asarray(array)
    key = array.dtype.newbyteorder("=").str[1:]
    if key not in _CODES:
        raise TypeError(
            f"encode_idx: IDX cannot store dtype {array.dtype}; use one of uint8, int8, int16, int32, "
            "float32, float64"
        )
    code = _CODES[key]
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=_DTYPES[code]).tobytes()


def write_idx(path: str | os.PathLike[str], array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file, gzipped when ``compress`` (default: name ends in .gz).

    The write is atomic (see :mod:`tinyae._atomic`).
    """
    from tinyae._atomic import atomic_write_bytes

    path = os.fspath(path)
    data = encode_idx(array)
    if compress is None:
        compress = path.endswith(".gz")
    if compress:
        data = gzip.compress(data, mtime=0)  # mtime=0: same array, same bytes
    atomic_write_bytes(path, data)
