"""The C++ kernels from the compiled extension ``tinyae._C``, when it is there.

``pip install .`` (or the editable developer install) compiles ``csrc/`` into
``tinyae/_C``. Without a compiler the package still works: :data:`AVAILABLE` is
False, :data:`UNAVAILABLE_REASON` says why, and the NumPy twin is used instead.

The C++ functions validate their arguments themselves and release the GIL while
they run. A non-contiguous input is copied once into a contiguous buffer; an
already C-contiguous input is used as it is (no copy).
"""

from __future__ import annotations

import os
from types import ModuleType

import numpy as np


def _import_extension() -> tuple[ModuleType | None, str | None]:
    """Import ``tinyae._C``; return (module, None) or (None, why not).

    OpenMP threads that *spin* while waiting for work (libgomp's default) are a disaster on a
    busy machine: a worker that used up its time slice spinning waits behind every other
    process, and each parallel loop waits for it at its end barrier. We measured calls going from
    0.1 ms to 25 ms on a loaded 2-core box. Sleeping waiters (PASSIVE) are woken promptly, so
    unless the user chose a policy, load the OpenMP runtime with OMP_WAIT_POLICY=PASSIVE.
    libgomp reads the variable once, when _C loads it, so it is removed again right after and
    child processes do not inherit it. (Set OMP_WAIT_POLICY=ACTIVE on a dedicated machine.)
    """
    added = "OMP_WAIT_POLICY" not in os.environ
    if added:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        from .. import _C as module  # type: ignore[attr-defined]
    except ImportError as exc:  # not built, or built for another Python
        return None, f"the C++ extension tinyae._C is not importable ({exc})"
    finally:
        if added:
            del os.environ["OMP_WAIT_POLICY"]
    return module, None


_C, UNAVAILABLE_REASON = _import_extension()

AVAILABLE = _C is not None


def openmp_threads() -> int:
    """Threads the C++ kernels run on; 0 when the extension is missing or built without OpenMP."""
    return int(_C.openmp_threads()) if _C is not None else 0


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
