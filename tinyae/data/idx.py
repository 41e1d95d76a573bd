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
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

__all__ = ["IDXError", "decode_idx", "encode_idx", "read_idx", "read_idx_bytes", "write_idx"]

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


class IDXError(ValueError):
    """An IDX file is malformed: wrong magic number, dimensions or length."""


def read_idx_bytes(path: str | os.PathLike[str]) -> bytes:
    """The decompressed IDX bytes of ``path`` (gzipped or plain)."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    return maybe_gunzip(raw, path)


def maybe_gunzip(raw: bytes, name: str) -> bytes:
    """Decompress ``raw`` if it is gzip data; ``name`` is used in error messages."""
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        # A truncated download ends up here: "Compressed file ended before the
        # end-of-stream marker was reached".
        raise IDXError(f"{name}: corrupt or truncated gzip data ({exc})") from exc


def decode_idx(data: bytes, name: str = "<bytes>", expected_ndim: int | None = None) -> np.ndarray:
    """Parse IDX bytes (already decompressed) into an array in native byte order.

    Uses ``np.frombuffer``, so decoding 60,000 images is a single copy, not a
    Python loop. ``expected_ndim`` (3 for images, 1 for labels) turns a mixed-up
    file into a clear error.
    """
    if len(data) < 4:
        raise IDXError(f"{name}: file is {len(data)} bytes, too short for an IDX header")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    magic = int.from_bytes(data[:4], "big")
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
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXError(f"{name}: file is {len(data)} bytes, too short for a {ndim}-dimensional header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _DTYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise IDXError(
            f"{name}: {what}: header says shape {tuple(shape)} of {dtype.name} "
            f"({expected} bytes in all), but the file has {len(data)} bytes"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    # Convert to native byte order (a no-op view for single bytes).
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | os.PathLike[str], expected_ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (gzipped or plain) into a NumPy array, validating it fully."""
    path = os.fspath(path)
    return decode_idx(read_idx_bytes(path), path, expected_ndim)


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
