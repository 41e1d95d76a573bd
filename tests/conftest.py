"""Shared pytest fixtures: the device grid, the real-data root, the kernels' thread count.

Tests that take the ``device`` fixture run once per device: always on ``"cpu"``,
and on ``"cuda"`` when CuPy sees a GPU (otherwise that case is skipped with the
reason tinyae.cuda gives). Real-MNIST tests read ``TINYAE_DATA`` and skip when it
is unset.
"""

from __future__ import annotations

import os

import pytest

import tinyae


def _cuda_param() -> object:
    reason = tinyae.cuda.unavailable_reason()
    return pytest.param("cuda", marks=pytest.mark.skipif(reason is not None, reason=f"no GPU: {reason}"))


DEVICES = ["cpu", _cuda_param()]


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    """``"cpu"`` and (when available) ``"cuda"``."""
    return request.param


@pytest.fixture
def mnist_root() -> str:
    """Directory holding the real MNIST IDX files (from TINYAE_DATA), or skip."""
    root = os.environ.get("TINYAE_DATA")
    if not root or not os.path.isdir(root):
        pytest.skip("real MNIST not available: set TINYAE_DATA to the folder holding the IDX files")
    return root


@pytest.fixture
def restore_num_threads():
    """tinyae's thread count as it was before the test (restored after it)."""
    previous = tinyae.get_num_threads()
    yield previous
    tinyae.set_num_threads(previous)


# ------------------------------------------------------------------ what did not run
# A closing summary of the skipped tests, grouped by what would make them run, so that a quiet
# "650 skipped" cannot hide that, say, no comparison against PyTorch ran.
_WHY = (
    ("torch", "comparisons against PyTorch (install it: pip install torch==2.13.0)"),
    ("GPU", "GPU tests (need CuPy and an NVIDIA GPU)"),
    ("cupy", "GPU tests (need CuPy and an NVIDIA GPU)"),
    ("TINYAE_DATA", "real-MNIST tests (set TINYAE_DATA to the folder of the four IDX files)"),
    ("Chromium", "page rendering of the docs site (apt-get install chromium)"),
    ("Graphviz", "Graphviz drawings (apt-get install graphviz)"),
    ("dot program", "Graphviz drawings (apt-get install graphviz)"),
)


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    return str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    groups: dict[str, int] = {}
    for report in skipped:
        reason = _skip_reason(report)
        label = next((what for key, what in _WHY if key in reason), None)
        if label is None:
            label = "other: " + reason.removeprefix("Skipped: ")[:100]
        groups[label] = groups.get(label, 0) + 1
    terminalreporter.section("what did not run")
    for label, count in sorted(groups.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{count:5d}  {label}")
