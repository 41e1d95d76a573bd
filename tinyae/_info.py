"""``tinyae.info()`` and ``python -m tinyae info``: what this installation runs on.

Reports the versions (tinyae, Python, NumPy), which CPU kernels are active (the C++
extension or the NumPy twin, and why the twin when it is), tinyae's threads, the BLAS
behind NumPy's matmul, and whether CuPy and a GPU are usable (and why not). Every
probe is defensive: a diagnostic must never crash on the machine it is diagnosing.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from typing import Any, TextIO

import numpy as np

from .memory import keeps_freed_memory
from .parallel import get_num_threads


def _kernels() -> dict[str, Any]:
    from tinyae import kernels

    active = kernels.get_kernels()  # "cpp" or "numpy"
    reason = None
    if active == "numpy":
        if not kernels.cpp_available():
            reason = kernels.cpp_unavailable_reason()
        elif os.environ.get("TINYAE_KERNELS", "").strip().lower() == "numpy":
            reason = "TINYAE_KERNELS=numpy is set"
        else:
            reason = "set_kernels('numpy') was called"
    return {
        "active": active,
        "name": "C++" if active == "cpp" else "NumPy",
        "cpp_available": kernels.cpp_available(),
        "reason": reason,
        # The direct float32 convolution needs AVX-512F; without it convolutions use im2col + GEMM.
        "direct_conv": active == "cpp" and kernels.cpp.DIRECT_CONV,
        # So does tinyae's own float32 matrix product; without it products go to NumPy's BLAS.
        "gemm": active == "cpp" and kernels.cpp.GEMM,
    }


def _blas() -> dict[str, Any]:
    """The BLAS NumPy calls: from threadpoolctl when installed (live), else NumPy's build config."""
    try:
        from threadpoolctl import threadpool_info  # optional
    except ImportError:
        pass
    else:
        try:
            libs = [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]
        except Exception:  # a diagnostic must not crash
            libs = []
        if libs:
            lib = libs[0]
            return {
                "name": lib.get("internal_api"),
                "version": lib.get("version"),
                "threads": lib.get("num_threads"),
                "source": "threadpoolctl",
            }
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return {"name": blas.get("name"), "version": blas.get("version"), "threads": None, "source": "numpy"}
    except Exception:
        return {"name": None, "version": None, "threads": None, "source": None}


def _gpu() -> dict[str, Any]:
    from tinyae import backend

    reason = backend.cuda_unavailable_reason()  # imports CuPy once, unless TINYAE_DISABLE_CUDA is set
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        cupy_version = getattr(cupy, "__version__", "unknown")
    elif importlib.util.find_spec("cupy") is not None:
        cupy_version = "installed, not imported"
    else:
        cupy_version = None
    devices = []
    if reason is None:
        cp = backend.cupy_or_none()
        for i in range(cp.cuda.runtime.getDeviceCount()):
            name = cp.cuda.runtime.getDeviceProperties(i)["name"]
            devices.append(name.decode() if isinstance(name, bytes) else str(name))
    return {"cupy": cupy_version, "available": reason is None, "reason": reason, "devices": devices}


def collect() -> dict[str, Any]:
    """Everything ``info`` reports, as a dict (no printing)."""
    import tinyae

    return {
        "tinyae": tinyae.__version__,
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "platform": platform.platform(),
        "numpy": np.__version__,
        "kernels": _kernels(),
        "threads": get_num_threads(),
        "keeps_freed_memory": keeps_freed_memory(),
        "blas": _blas(),
        "gpu": _gpu(),
    }


def format_report(d: dict[str, Any]) -> str:
    k, b, g = d["kernels"], d["blas"], d["gpu"]
    kernels = f"{k['name']}" + (f" (reason: {k['reason']})" if k["reason"] else " (tinyae._C)")
    if k["active"] == "cpp":
        kernels += "; float32 conv forward: " + (
            "direct, AVX-512" if k["direct_conv"] else "im2col + GEMM (no AVX-512F)"
        )
        kernels += "; float32 matmul: " + ("tinyae's, AVX-512" if k["gemm"] else "NumPy's BLAS (no AVX-512F)")
    threads = f"{d['threads']} (tinyae.set_num_threads)"
    if b["name"]:
        blas = f"{b['name']} {b['version'] or ''}".rstrip()
        blas += f", {b['threads']} threads" if b["threads"] else ""
        blas += f" (from {b['source']})"
    else:
        blas = "unknown"
    memory = "C library defaults"
    if d["keeps_freed_memory"]:
        memory = "freed memory kept for reuse (tinyae.memory)"
    gpu = ", ".join(g["devices"]) if g["available"] else f"not used: {g['reason']}"
    rows = [
        ("tinyae", d["tinyae"]),
        ("Python", f"{d['python']} on {d['platform']}"),
        ("NumPy", d["numpy"]),
        ("kernels", kernels),
        ("threads", threads),
        ("memory", memory),
        ("BLAS", blas),
        ("CuPy", g["cupy"] or "not installed (pip install 'tinyae[gpu]')"),
        ("GPU", gpu),
    ]
    return "\n".join(f"{name + ':':<9} {value}" for name, value in rows)


def info(file: TextIO | None = None, print_report: bool = True) -> dict[str, Any]:
    """Print what tinyae runs on (versions, kernels, OpenMP, BLAS, GPU) and return it as a dict."""
    d = collect()
    if print_report:
        print(format_report(d), file=file or sys.stdout)
    return d
