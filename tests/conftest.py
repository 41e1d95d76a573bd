"""Shared pytest fixtures: the device grid, the real-data root, the kernels' thread count.

Tests that take the ``device`` fixture run once per device: always on ``"cpu"``,
and on ``"cuda"`` when CuPy sees a GPU (otherwise that case is skipped with the
reason tinyae.cuda gives). Real-MNIST tests read ``TINYAE_DATA`` and skip when it
is unset.

The run ends with a summary of what did not run and why, and one line saying how
many tests compare tinyae against PyTorch and whether they ran: they call
``pytest.importorskip("torch")``, which is counted here, because without torch
(``pip install -e ".[test]"`` does not install it) they all skip.
"""

from __future__ import annotations

import os
import sys

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
TORCH_INSTALL = 'pip install -e ".[test,torch]"'
_WHY = (
    ("torch", f"comparisons against PyTorch (install it: {TORCH_INSTALL})"),
    ("GPU", "GPU tests (need CuPy and an NVIDIA GPU)"),
    ("cupy", "GPU tests (need CuPy and an NVIDIA GPU)"),
    ("TINYAE_DATA", "real-MNIST tests (set TINYAE_DATA to the folder of the four IDX files)"),
    ("Chromium", "page rendering of the docs site (apt-get install chromium)"),
    ("Graphviz", "Graphviz drawings (apt-get install graphviz)"),
    ("dot program", "Graphviz drawings (apt-get install graphviz)"),
)

# The tests that compare against PyTorch, found as they ask for it: pytest.importorskip("torch"),
# called by the test itself or by a fixture it uses (a module-scoped fixture asks only once).
_torch_tests: set[str] = set()
_torch_fixtures: set[str] = set()
_fixtures_being_set_up: list[str] = []
_test_fixtures: dict[str, set[str]] = {}
_importorskip = pytest.importorskip


def _counting_importorskip(modname: str, *args, **kwargs):
    if modname.split(".")[0] == "torch":
        if _fixtures_being_set_up:
            _torch_fixtures.add(_fixtures_being_set_up[-1])
        current = os.environ.get("PYTEST_CURRENT_TEST", "")  # "tests/x.py::test_y[p] (call)"
        if current:
            _torch_tests.add(current.rsplit(" (", 1)[0])
    return _importorskip(modname, *args, **kwargs)


pytest.importorskip = _counting_importorskip


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):  # noqa: ARG001
    _fixtures_being_set_up.append(fixturedef.argname)
    try:
        yield
    finally:
        _fixtures_being_set_up.pop()


def pytest_collection_finish(session) -> None:
    _test_fixtures.update({item.nodeid: set(getattr(item, "fixturenames", ())) for item in session.items})


def _torch_test_ids() -> set[str]:
    via_fixtures = {test for test, names in _test_fixtures.items() if names & _torch_fixtures}
    return _torch_tests | via_fixtures


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    return str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


def _torch_line(terminalreporter) -> str | None:
    """How many tests compare against PyTorch, and whether they ran."""
    tests = _torch_test_ids()
    if not tests:
        return None
    reports = [r for r in terminalreporter.stats.get("skipped", []) if r.nodeid in tests]
    skipped = {r.nodeid for r in reports}
    no_torch = {r.nodeid for r in reports if "torch" in _skip_reason(r)}
    n, ran = len(tests), len(tests) - len(skipped)
    if no_torch:
        line = f"PyTorch comparisons: {len(no_torch)} of the {n} tests did not run (torch is not installed: "
        return line + f"{TORCH_INSTALL})"
    version = getattr(sys.modules.get("torch"), "__version__", "?")
    note = f"; {len(skipped)} skipped for other reasons" if skipped else ""
    return f"PyTorch comparisons: {ran} of {n} tests ran against torch {version}{note}"


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    skipped = terminalreporter.stats.get("skipped", [])
    torch_line = _torch_line(terminalreporter)
    if not skipped and torch_line is None:
        return
    terminalreporter.section("what did not run")
    groups: dict[str, int] = {}
    for report in skipped:
        reason = _skip_reason(report)
        label = next((what for key, what in _WHY if key in reason), None)
        if label is None:
            label = "other: " + reason.removeprefix("Skipped: ")[:100]
        groups[label] = groups.get(label, 0) + 1
    for label, count in sorted(groups.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{count:5d}  {label}")
    if torch_line is not None:
        terminalreporter.write_line(torch_line)
