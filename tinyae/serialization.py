"""save / load: nested state (model and optimizer together) as one ``.npz`` file, safely.

What can be saved: dicts (str or int keys), lists and tuples, nested to any
depth, whose leaves are arrays (NumPy or CuPy), Tensors (anything whose
``.data`` is an array; saved as its array), NumPy scalars, and Python
``int``, ``float``, ``bool``, ``str`` and ``None``.

The file format is an ordinary NumPy ``.npz`` (a zip of ``.npy`` files):

- every array leaf is stored as its own entry ``arr_0``, ``arr_1``, ...;
- one extra entry ``__tinyae_manifest__`` holds, as UTF-8 JSON bytes, the
  structure: which containers, which keys, which leaf is which array, and
  the values of the plain Python leaves.

Why not pickle (what ``torch.save`` uses)? Unpickling a file can run arbitrary
code. :func:`load` reads with ``allow_pickle=False`` always, so a file can only
ever produce arrays and plain values. Any problem (truncated, garbage, object
arrays, inconsistent manifest) is one ``ValueError`` naming the file.

Why atomic? :func:`save` writes a temporary file and renames it over ``path``
(see :mod:`tinyae._atomic`): a training run killed while saving a checkpoint
leaves the previous checkpoint, never half of a new one. :func:`load` only
reads; it never changes anything on disk.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from typing import Any

import numpy as np

from tinyae._atomic import atomic_open

__all__ = ["FORMAT_VERSION", "MANIFEST_KEY", "load", "save"]

MANIFEST_KEY = "__tinyae_manifest__"
FORMAT_VERSION = 1
_SCALARS = {"int": int, "float": float, "bool": bool, "str": str}


# --------------------------------------------------------------------------- save


def _as_numpy(value: Any) -> np.ndarray | None:
    """The NumPy array behind an array-like leaf (ndarray, CuPy array, Tensor), else None."""
    data = getattr(value, "data", None)
    is_tensor = not isinstance(value, np.ndarray) and hasattr(data, "dtype") and hasattr(data, "shape")
    if is_tensor:
        value = data  # a Tensor (or Parameter): save its array
    if isinstance(value, np.ndarray):
        return value
    if type(value).__module__.startswith("cupy") and hasattr(value, "get"):
        return value.get()  # GPU array: copy to host
    return None


class _Flattener:
    """Walks the state, collecting arrays and building the JSON description."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def node(self, value: Any, where: str) -> dict[str, Any]:
        # NumPy scalars first (np.float64 is a subclass of float), bool before int
        # (bool is a subclass of int): each leaf comes back with its own type.
        if isinstance(value, np.generic):
            return {"type": "npscalar", "key": self.add_array(np.asarray(value), where)}
        if value is None:
            return {"type": "none"}
        if isinstance(value, bool):
            return {"type": "bool", "value": value}
        if isinstance(value, int):
            return {"type": "int", "value": value}
        if isinstance(value, float):
            return {"type": "float", "value": value}
        if isinstance(value, str):
            return {"type": "str", "value": value}
        if isinstance(value, dict):
            return self.dict_node(value, where)
        if isinstance(value, list | tuple):
            items = [self.node(v, f"{where}[{i}]") for i, v in enumerate(value)]
            return {"type": type(value).__name__, "items": items}
        array = _as_numpy(value)
        if array is not None:
            return {"type": "array", "key": self.add_array(array, where)}
        raise TypeError(
            f"save: cannot store {type(value).__name__} at {where}; "
            "allowed are dict, list, tuple, arrays, Tensors, int, float, bool, str and None"
        )

    def dict_node(self, value: dict[Any, Any], where: str) -> dict[str, Any]:
        keys, items = [], []
        for k, v in value.items():
            if isinstance(k, bool) or not isinstance(k, str | int):
                raise TypeError(f"save: dict keys must be str or int, got {k!r} in {where}")
            keys.append(k)  # JSON keeps "1" and 1 apart, so int keys come back as ints
            items.append(self.node(v, f"{where}[{k!r}]"))
        return {"type": "dict", "keys": keys, "items": items}

    def add_array(self, array: np.ndarray, where: str) -> str:
        if array.dtype.hasobject:
            raise TypeError(f"save: array at {where} has dtype object, which cannot be saved without pickle")
        key = f"arr_{len(self.arrays)}"
        self.arrays[key] = array
        return key


def save(state: Any, path: str | os.PathLike[str]) -> None:
    """Save ``state`` (nested dicts/lists of arrays, Tensors and plain values) to ``path``.

    The file is written exactly at ``path`` (no ``.npz`` is appended) and
    replaces any previous file there atomically.
    """
    flat = _Flattener()
    tree = flat.node(state, "state")
    manifest = {"format": "tinyae", "version": FORMAT_VERSION, "tree": tree}
    # allow_nan: JSON has no NaN/inf, but Python's json writes and reads them, so
    # float leaves like a best loss of inf survive the round trip.
    blob = np.frombuffer(json.dumps(manifest, allow_nan=True).encode("utf-8"), dtype=np.uint8)
    with atomic_open(path, "wb") as f:
        np.savez(f, **flat.arrays, **{MANIFEST_KEY: blob})


# --------------------------------------------------------------------------- load


def _read_npz(path: str) -> dict[str, np.ndarray]:
    """All entries of an .npz file, checked; raises ValueError naming ``path``."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            # testzip reads every member and checks its CRC: a flipped byte in
            # the middle of an array would otherwise load silently as wrong numbers.
            bad = zf.testzip()
            others = [name for name in zf.namelist() if not name.endswith(".npy")]
        if bad is not None:
            raise ValueError(f"entry {bad!r} fails its CRC check")
        if others:
            raise ValueError(f"entries {others[:3]} are not .npy arrays")
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise ValueError(f"load: {path} contains pickled objects, which tinyae never loads") from exc
        raise ValueError(f"load: {path} is corrupt or not a tinyae/NumPy .npz file ({exc})") from exc
    except (OSError, EOFError, zipfile.BadZipFile, KeyError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"load: {path} is corrupt, truncated or not a .npz file ({type(exc).__name__}: {exc})"
        ) from exc


class _Builder:
    """Rebuilds the state from the manifest tree and the arrays."""

    def __init__(self, arrays: dict[str, np.ndarray], path: str) -> None:
        self.arrays = arrays
        self.path = path
        self.used: set[str] = set()

    def fail(self, message: str) -> ValueError:
        return ValueError(f"load: {self.path} has an invalid manifest: {message}")

    def build(self, node: Any) -> Any:
        if not isinstance(node, dict) or "type" not in node:
            raise self.fail(f"expected a node, got {node!r:.80}")
        kind = node["type"]
        if kind == "none":
            return None
        if kind in _SCALARS:
            value = node.get("value")
            if type(value) is not _SCALARS[kind] and not (kind == "float" and type(value) is int):
                raise self.fail(f"{kind} leaf holds {value!r:.80}")
            return _SCALARS[kind](value)
        if kind in ("array", "npscalar"):
            array = self.array(node.get("key"))
            return array[()] if kind == "npscalar" else array
        if kind in ("list", "tuple"):
            items = [self.build(item) for item in self.sequence(node, "items")]
            return items if kind == "list" else tuple(items)
        if kind == "dict":
            keys, items = self.sequence(node, "keys"), self.sequence(node, "items")
            if len(keys) != len(items) or not all(isinstance(k, str | int) for k in keys):
                raise self.fail("dict keys and items do not match")
            return {k: self.build(item) for k, item in zip(keys, items, strict=True)}
        raise self.fail(f"unknown node type {kind!r}")

    def sequence(self, node: dict[str, Any], field: str) -> list[Any]:
        value = node.get(field)
        if not isinstance(value, list):
            raise self.fail(f"{node['type']} node lacks its {field!r} list")
        return value

    def array(self, key: Any) -> np.ndarray:
        if key not in self.arrays or key == MANIFEST_KEY:
            raise self.fail(f"refers to a missing array {key!r}")
        self.used.add(key)
        return self.arrays[key]


def load(path: str | os.PathLike[str]) -> Any:
    """Load what :func:`save` wrote; arrays come back as NumPy arrays (on the CPU).

    A plain ``.npz`` written by ``np.savez`` (no tinyae manifest) loads as a
    dict from entry name to array. Raises ``FileNotFoundError`` when ``path``
    does not exist, and ``ValueError`` naming ``path`` for anything malformed.
    """
    path = os.fspath(path)
    arrays = _read_npz(path)
    if MANIFEST_KEY not in arrays:
        return arrays
    blob = arrays.pop(MANIFEST_KEY)
    try:
        manifest = json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"load: {path} has an unreadable manifest ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != "tinyae":
        raise ValueError(f"load: {path} has an invalid manifest (not a tinyae file)")
    if manifest.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"load: {path} is format version {manifest.get('version')!r}; this tinyae reads version "
            f"{FORMAT_VERSION}"
        )
    builder = _Builder(arrays, path)
    return builder.build(manifest.get("tree"))
