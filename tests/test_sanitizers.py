"""The C++ kernels built with AddressSanitizer and UndefinedBehaviorSanitizer, under the kernel tests.

A bounds check that is missing in the extension rarely shows as a wrong number; it shows as a
read or write past a buffer, which ASan reports (and UBSan an overflow or a misaligned load).
This test builds ``tinyae._C`` with both, puts it into a copy of the package and runs the kernel
tests (the fuzz tests included) in a subprocess with the ASan runtime preloaded into Python. Any
report aborts that run, and this test fails with the report.

It needs g++, CMake, Ninja and pybind11 (the ``test`` extra installs the last three); without
them it is skipped, with the reason. ``TINYAE_SKIP_SANITIZERS=1`` skips it on purpose (it takes
a few minutes on 2 cores).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNEL_TESTS = [
    "tests/test_kernels.py",
    "tests/test_kernels_conv_direct.py",
    "tests/test_kernels_batch_norm.py",
    "tests/test_kernels_adam.py",
    "tests/test_kernels_fuzz.py",
    "tests/test_kernels_gemm.py",
    "tests/test_kernels_activation.py",
]
FLAGS = "-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"

# Lets a copy of the package on PYTHONPATH shadow an editable install of the checkout.
SITECUSTOMIZE = """import sys
sys.meta_path[:] = [f for f in sys.meta_path if "ScikitBuild" not in type(f).__name__]
"""


def _requirements() -> tuple[str, str, str, str] | str:
    """(g++, cmake, ninja, pybind11's CMake dir), or why the sanitizer build cannot run here."""
    if os.environ.get("TINYAE_SKIP_SANITIZERS", "") not in ("", "0"):
        return "TINYAE_SKIP_SANITIZERS is set"
    if not sys.platform.startswith("linux"):
        return "the sanitizer build is set up for Linux"
    tools = {name: shutil.which(name) for name in ("g++", "cmake", "ninja")}
    missing = [name for name, path in tools.items() if path is None]
    if missing:
        return f"{', '.join(missing)} not found (pip install cmake ninja; apt-get install g++)"
    try:
        import pybind11
    except ImportError:
        return "pybind11 is not installed (pip install pybind11)"
    return tools["g++"], tools["cmake"], tools["ninja"], pybind11.get_cmake_dir()


def _run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]


@pytest.mark.timeout(1800)
def test_kernel_tests_pass_under_asan_and_ubsan(tmp_path: Path) -> None:
    found = _requirements()
    if isinstance(found, str):
        pytest.skip(f"sanitizer build: {found}")
    cxx, cmake, ninja, pybind11_dir = found
    # ASan's runtime must be loaded first, and libstdc++ with it (its C++ exception interceptor
    # looks for __cxa_throw at start-up, before Python would load libstdc++ with the extension).
    runtimes = [
        _run([cxx, f"-print-file-name={lib}"]).stdout.strip() for lib in ("libasan.so", "libstdc++.so.6")
    ]
    if not all(os.path.isabs(p) and os.path.exists(p) for p in runtimes):
        pytest.skip(f"sanitizer build: {cxx} has no ASan runtime (libasan.so) or libstdc++.so.6")

    build = tmp_path / "build"
    configure = _run([
        cmake, "-S", str(ROOT), "-B", str(build), "-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}",
        "-DCMAKE_BUILD_TYPE=RelWithDebInfo", f"-DCMAKE_CXX_COMPILER={cxx}",
        f"-DPython_EXECUTABLE={sys.executable}",
        f"-Dpybind11_DIR={pybind11_dir}", f"-DCMAKE_CXX_FLAGS={FLAGS}",
        f"-DCMAKE_SHARED_LINKER_FLAGS={FLAGS}", f"-DCMAKE_MODULE_LINKER_FLAGS={FLAGS}",
    ], timeout=600)  # fmt: skip
    assert configure.returncode == 0, configure.stdout[-3000:] + configure.stderr[-3000:]
    compiled = _run([ninja, "-C", str(build)], timeout=1200)
    assert compiled.returncode == 0, compiled.stdout[-3000:] + compiled.stderr[-3000:]

    # A copy of the package whose extension is the sanitized build.
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "tinyae", tree / "tinyae", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    for so in (build / "tinyae").glob("_C*.so"):
        shutil.copy2(so, tree / "tinyae" / so.name)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(tree)]),
        "LD_PRELOAD": " ".join(runtimes),
        # Allocations over 1 GB fail as in a normal build (ASan would otherwise map 10 TB lazily and
        # let a kernel fill it); reports go to a file, as pytest captures the test's stderr.
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1:allocator_may_return_null=1"
        f":max_allocation_size_mb=1024:log_path={tmp_path / 'sanitizer'}",
        "UBSAN_OPTIONS": f"halt_on_error=1:print_stacktrace=1:log_path={tmp_path / 'sanitizer'}",
    }
    which = _run([sys.executable, "-c", "import tinyae._C as c; print(c.__file__)"], env=env, cwd=tmp_path)
    assert which.returncode == 0 and which.stdout.strip().startswith(str(tree)), which.stdout + which.stderr

    tests = [str(ROOT / t) for t in KERNEL_TESTS]
    # The nvcc compile check builds CUDA code, not ours, and needs no sanitizer.
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-x",
        "-p",
        "no:cacheprovider",
        "-k",
        "not cuda_source",
        *tests,
    ]
    result = _run(cmd, env=env, cwd=tmp_path, timeout=1500)
    logs = "".join(
        line
        for log in sorted(tmp_path.glob("sanitizer*"))
        for line in log.read_text().splitlines(True)
        if "failed to allocate" not in line  # the refused huge allocations the tests ask for
    )
    report = logs[:8000] + result.stdout[-4000:] + result.stderr[-4000:]
    assert result.returncode == 0, f"the kernel tests under ASan/UBSan failed:\n{report}"
    assert "passed" in result.stdout, report
