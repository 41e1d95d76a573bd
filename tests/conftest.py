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
