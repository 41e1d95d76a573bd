"""How long NumPy's OpenBLAS threads spin after a product: briefly, when tinyae can still say so.

OpenBLAS keeps its idle threads busy-waiting for 2^28 cycles (about 0.1 s) after each product,
holding cores that tinyae's next split loop needs (a DCGAN step 20% slower on 2 cores). Its
``OPENBLAS_THREAD_TIMEOUT`` (2^n cycles) is read once, when NumPy loads OpenBLAS, so tinyae sets
it to 20 (2^20 cycles, well under a millisecond) at import only while NumPy is not loaded yet
and the variable is not set already; a value you set yourself is left alone. :data:`BRIEF`
says whether the threads spin briefly in this process: :func:`tinyae.parallel.matmul` hands
products to BLAS's own threads only then (docs/performance.md). No NumPy import here.
"""

from __future__ import annotations

import os
import sys

VARIABLE = "OPENBLAS_THREAD_TIMEOUT"
SHORT = 20  # 2^20 cycles


def _configure() -> bool:
    value = os.environ.get(VARIABLE)
    if value is None:
        if "numpy" in sys.modules:
            return False  # OpenBLAS is loaded with its default: too late to change
        os.environ[VARIABLE] = str(SHORT)
        return True
    try:
        return int(value) <= SHORT
    except ValueError:
        return False


BRIEF = _configure()
