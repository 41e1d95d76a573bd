"""The closing summary of a test run says how many PyTorch comparisons ran, and how to run them.

Runs pytest on one PyTorch comparison in a subprocess, once as if torch were not
installed (a ``torch`` package on the path that cannot be imported) and once as it is.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ONE_TORCH_TEST = ["tests/test_optim.py", "-k", "clip_grad_norm_matches_torch"]


def _pytest(extra_path: str | None = None) -> str:
    path = [p for p in (extra_path, ROOT, os.environ.get("PYTHONPATH")) if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *ONE_TORCH_TEST]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_summary_says_the_pytorch_comparisons_did_not_run_and_how_to_install(tmp_path):
    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ModuleNotFoundError('simulated: torch is not installed')\n")
    out = _pytest(str(tmp_path))
    assert "what did not run" in out
    line = "PyTorch comparisons: 1 of the 1 tests did not run (torch is not installed: "
    assert line + 'pip install -e ".[test,torch]")' in out


def test_summary_counts_the_pytorch_comparisons_that_ran():
    try:  # not pytest.importorskip: that would count this test as a PyTorch comparison
        import torch
    except ImportError:
        pytest.skip("torch is not installed")
    assert f"PyTorch comparisons: 1 of 1 tests ran against torch {torch.__version__}" in _pytest()
