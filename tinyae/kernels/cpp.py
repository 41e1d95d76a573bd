"""The C++ kernels from the compiled extension ``tinyae._C``, when it is there.

``pip install .`` (or the editable developer install) compiles ``csrc/`` into
``tinyae/_C``. Without a compiler the package still works: :data:`AVAILABLE` is
False, :data:`UNAVAILABLE_REASON` says why, and the NumPy twin is used instead.

The C++ functions validate their arguments themselves and release the GIL while
they run. A non-contiguous input is copied once into a contiguous buffer; an
already C-contiguous input is used as it is (no copy). Their loops run on a small
thread pool of their own (``csrc/parallel.cpp`` explains why not OpenMP), sized by
:func:`set_num_threads`.
"""

from __future__ import annotations

import os
from types import ModuleType

import numpy as np


def _import_extension() -> tuple[ModuleType | None, str | None]:
    """Import ``tinyae._C``; return (module, None) or (None, why not)."""
    try:
        from .. import _C as module  # type: ignore[attr-defined]
    except ImportError as exc:  # not built, or built for another Python
        return None, f"the C++ extension tinyae._C is not importable ({exc})"
    return module, None


_C, UNAVAILABLE_REASON = _import_extension()

AVAILABLE = _C is not None


def default_threads() -> int:
    """Threads for the kernels at start-up: ``TINYAE_NUM_THREADS``, else ``OMP_NUM_THREADS``
    (the variable most users already set to mean "threads"), else the CPUs this process may use."""
    for name in ("TINYAE_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").split(",")[0].strip()  # OMP_NUM_THREADS may be a list
        if value.isdigit() and int(value) >= 1:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def num_threads() -> int:
    """Threads the C++ kernels' loops may use, the calling thread included (0: no extension)."""
    return int(_C.num_threads()) if _C is not None else 0


def set_num_threads(n: int) -> None:
    """Let the C++ kernels' loops use ``n`` threads (n >= 1), the calling thread included."""
    if _C is not None:
        _C.set_num_threads(n)


if _C is not None:
    _C.set_num_threads(default_threads())


def _require() -> ModuleType:
    if _C is None:
        raise RuntimeError(f"C++ kernels requested but {UNAVAILABLE_REASON}")
    return _C


def im2col(
    x: np.ndarray,
    kh: int,
    kw: int,
    sh: int,
    sw: int,
    ph: int,
    pw: int,
    dh: int,
    dw: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """C++ im2col: x (N, C, H, W) -> col (C, KH, KW, N, OH, OW), written into ``out`` when given."""
    return _require().im2col(x, kh, kw, sh, sw, ph, pw, dh, dw, out=out)


def col2im(
    col: np.ndarray,
    h: int,
    w: int,
    sh: int,
    sw: int,
    ph: int,
    pw: int,
    dh: int,
    dw: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """C++ col2im: col (C, KH, KW, N, OH, OW) -> x (N, C, h, w), overwriting ``out`` when given."""
    return _require().col2im(col, h, w, sh, sw, ph, pw, dh, dw, out=out)
