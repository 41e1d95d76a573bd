"""The compiled extension for the kernel tests: ``_C`` (None when it is not built), why not
(``C_REASON``), and the mark that skips a test without it."""

from __future__ import annotations

import pytest

try:
    from tinyae import _C
except ImportError as exc:  # not built: the C++ tests are skipped, the rest still run
    _C = None
    C_REASON = f"C++ extension tinyae._C is not built ({exc}); run `pip install --no-build-isolation -e .`"
else:
    C_REASON = ""

needs_cpp = pytest.mark.skipif(_C is None, reason=C_REASON)
