"""pytest setup for ``pytest benchmarks/``: collect the ``bench_*.py`` files, equal thread pools.

The project's ``testpaths`` is ``tests`` and its file pattern ``test_*.py``, so the benchmark
files would not be collected from a directory argument; the hook below adds them. A file
named on the command line is already collected by pytest itself and is left alone.

``pytest benchmarks/ --benchmark-disable -q`` runs every benchmark once, as a smoke test,
together with the correctness checks (tinyae and PyTorch agree on each layer and step).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks.workloads import Framework, Unavailable, get_framework, set_threads


def pytest_collect_file(file_path: Path, parent: Any) -> Any:
    if (
        file_path.suffix == ".py"
        and file_path.name.startswith("bench_")
        and not parent.session.isinitpath(file_path)
    ):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


@pytest.fixture(scope="session", autouse=True)
def equal_threads() -> int:
    """Every thread pool (BLAS, OpenMP, PyTorch) gets all cores, as in the report."""
    return set_threads()


def framework_or_skip(name: str, what: str = "all", device: str = "cpu") -> Framework:
    """The framework adapter, or a pytest skip saying why it cannot run here."""
    try:
        return get_framework(name, device, what=what)
    except Unavailable as exc:
        pytest.skip(str(exc))
