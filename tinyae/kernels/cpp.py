"""The C++ kernels from the compiled extension ``tinyae._C``, when it is there.

``pip install .`` (or the editable developer install) compiles ``csrc/`` into
``tinyae/_C``. Without a compiler the package still works: :data:`AVAILABLE` is
False, :data:`UNAVAILABLE_REASON` says why, and the NumPy twin is used instead.

The C++ functions validate their arguments themselves and release the GIL while
they run. A non-contiguous input is copied once into a contiguous buffer; an
already C-contiguous input is used as it is (no copy).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

_C: ModuleType | None
UNAVAILABLE_REASON: str | None
try:
    from .. import _C  # type: ignore[attr-defined]

    UNAVAILABLE_REASON = None
except ImportError as exc:  # not built, or built for another Python
    _C = None
    UNAVAILABLE_REASON = f"the C++ extension tinyae._C is not importable ({exc})"

AVAILABLE = _C is not None


def openmp_threads() -> int:
    """Threads the C++ kernels run on; 0 when the extension is missing or built without OpenMP."""
    return int(_C.openmp_threads()) if _C is not None else 0


def _require() -> ModuleType:
    if _C is None:
        raise RuntimeError(f"C++ kernels requested but {UNAVAILABLE_REASON}")
    return _C


def im2col(
    x: np.ndarray, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, dh: int, dw: int
) -> np.ndarray:
    """C++ im2col: x (N, C, H, W) -> col (C, KH, KW, N, OH, OW)."""
    return _require().im2col(x, kh, kw, sh, sw, ph, pw, dh, dw)


def col2im(
    col: np.ndarray, h: int, w: int, sh: int, sw: int, ph: int, pw: int, dh: int, dw: int
) -> np.ndarray:
    """C++ col2im: col (C, KH, KW, N, OH, OW) -> x (N, C, h, w)."""
    return _require().col2im(col, h, w, sh, sw, ph, pw, dh, dw)
