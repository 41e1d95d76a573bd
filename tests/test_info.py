"""``python -m tinyae info`` / ``tinyae.info()``: the report of what tinyae runs on.

The subprocess tests run the real command in a fresh interpreter, once as installed
and once with ``TINYAE_KERNELS=numpy``, and read the ``kernels:`` line. The C++
expectation is skipped (with the import error as the reason) where the extension is
not built.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import tinyae as ta
from tinyae import __main__ as main_module
from tinyae import backend, kernels
from tinyae.kernels import cpp

ROOT = Path(__file__).resolve().parents[1]


def run_info(*args: str, kernels_env: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TINYAE_KERNELS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    if kernels_env is not None:
        env["TINYAE_KERNELS"] = kernels_env
    return subprocess.run(
        [sys.executable, "-m", "tinyae", "info", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def line(report: str, name: str) -> str:
    rows = [r for r in report.splitlines() if r.startswith(f"{name}:")]
    assert len(rows) == 1, report
    return rows[0]


def test_info_command_shows_cpp_kernels_when_built():
    if not kernels.cpp_available():
        pytest.skip(f"C++ extension not built: {kernels.cpp_unavailable_reason()}")
    out = run_info()
    assert out.returncode == 0, out.stderr
    assert "C++" in line(out.stdout, "kernels")
    expected = "direct, AVX-512" if cpp.DIRECT_CONV else "im2col + GEMM (no AVX-512F)"
    assert f"float32 conv forward: {expected}" in line(out.stdout, "kernels")
    assert int(line(out.stdout, "threads").split()[1]) == ta.parallel._default_threads()


def test_info_command_without_extension_says_why():
    if kernels.cpp_available():
        pytest.skip(
            "the C++ extension is built here; the NumPy fallback is checked with TINYAE_KERNELS=numpy"
        )
    out = run_info()
    assert out.returncode == 0, out.stderr
    assert "NumPy (reason: the C++ extension" in line(out.stdout, "kernels")


def test_info_command_with_numpy_kernels_env():
    out = run_info(kernels_env="numpy")
    assert out.returncode == 0, out.stderr
    kernels_line = line(out.stdout, "kernels")
    assert "NumPy" in kernels_line and "C++" not in kernels_line
    assert "reason:" in kernels_line
    if kernels.cpp_available():
        assert "TINYAE_KERNELS=numpy" in kernels_line


def test_info_command_lists_every_item():
    out = run_info()
    assert out.returncode == 0, out.stderr
    for name in ("tinyae", "Python", "NumPy", "kernels", "threads", "memory", "BLAS", "CuPy", "GPU"):
        line(out.stdout, name)
    assert ta.__version__ in line(out.stdout, "tinyae")
    assert sys.version.split()[0] in line(out.stdout, "Python")


def test_info_json_output():
    out = run_info("--json")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["kernels"]["active"] == ("cpp" if kernels.cpp_available() else "numpy")
    assert set(d) >= {"tinyae", "python", "numpy", "kernels", "threads", "blas", "gpu"}


def test_info_returns_a_dict_and_prints(capsys):
    d = ta.info()
    printed = capsys.readouterr().out
    assert d["kernels"]["active"] == kernels.get_kernels()
    assert d["threads"] == ta.get_num_threads()
    assert d["gpu"]["available"] == ta.cuda.is_available()
    assert d["gpu"]["reason"] == backend.cuda_unavailable_reason()
    if not d["gpu"]["available"]:
        assert f"not used: {d['gpu']['reason']}" in line(printed, "GPU")
    assert ta.info(print_report=False) == d
    assert capsys.readouterr().out == ""


def test_info_reasons_for_numpy_kernels(monkeypatch):
    monkeypatch.setattr(cpp, "AVAILABLE", False)
    monkeypatch.setattr(cpp, "UNAVAILABLE_REASON", "the C++ extension tinyae._C is not importable (test)")
    d = ta.info(print_report=False)["kernels"]
    assert d["active"] == "numpy" and d["reason"].endswith("(test)")


def test_info_reason_after_set_kernels(monkeypatch):
    if not kernels.cpp_available():
        pytest.skip(f"C++ extension not built: {kernels.cpp_unavailable_reason()}")
    monkeypatch.delenv("TINYAE_KERNELS", raising=False)
    monkeypatch.setattr(kernels, "_cpu_choice", "numpy")
    d = ta.info(print_report=False)["kernels"]
    assert d["active"] == "numpy" and "set_kernels" in d["reason"]


# ---------------------------------------------------------------------- __main__ dispatch
def test_main_delegates_other_commands_to_the_cli(monkeypatch):
    seen = []
    fake = types.ModuleType("tinyae.cli")
    fake.main = lambda argv: seen.append(list(argv)) or 7
    monkeypatch.setitem(sys.modules, "tinyae.cli", fake)
    assert main_module.main(["train", "ae", "--epochs", "1"]) == 7
    assert seen == [["train", "ae", "--epochs", "1"]]


def test_main_without_cli_prints_usage(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tinyae.cli", None)  # as if tinyae/cli.py were missing
    assert main_module.main(["train", "ae"]) == 2
    assert "usage: python -m tinyae" in capsys.readouterr().err
    assert main_module.main([]) == 2
    assert main_module.main(["--help"]) == 0
    assert main_module.main(["info", "--bogus"]) == 2
