"""Each engine in its own process: how the report and ``epoch_time`` time a workload.

The method. A training loop runs one engine in one process, calls it back to back, and keeps
every thread pool busy with that engine alone. A measurement that is fair to both engines
does the same:

* **One job, one fresh process, one engine.** A :class:`Job` names what to time (a conv
  layer, a training step, the GEMM yardsticks), the engine, the device and the thread count.
  It runs in a new ``python`` process whose every pool gets that thread count: the
  environment (``OMP_NUM_THREADS``, ``TINYAE_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
  ``MKL_NUM_THREADS``) before start-up, and :func:`benchmarks.workloads.set_threads` for that
  engine after import. The other engine is not imported (the PyTorch side of W4 and W5 builds
  its networks from ``tinyae.models``, so tinyae is imported there, but with
  ``TINYAE_KEEP_FREED_MEMORY=0``: its allocator settings would otherwise help PyTorch too).
* **Warm-up, calibration, then calls back to back.** In the child, each timed function runs
  ``warmup`` times untimed (PyTorch builds its oneDNN primitives, Adam creates its state,
  tinyae's allocator maps its buffers), then runs until ~1/5 of ``target_s`` has passed to
  learn its cost, then ``ceil(target_s / cost)`` times (at least 3) back to back under one
  timer: the child reports seconds per call, what a training loop pays per step. Nothing is
  paused between calls, so neither engine's threads fall asleep between them.
* **Several things per child where that is fair**: a layer's forward + backward, its forward
  alone and (tinyae) the same with the NumPy twin kernels, one after the other, each with its
  own warm-up; the GEMM yardsticks of every layer in one NumPy-only child.
* **Rounds.** The caller alternates the engines' processes (:func:`run_job` per job) round
  after round and takes medians over rounds and the median of the per-round ratios
  (:func:`pair_ratio`): a slow spell of the machine hits the two sides of one round alike.

The machinery: :func:`run_job` (parent side), :func:`child` (the ``python -m
benchmarks.runs JOB`` entry point) and the job kinds ``layer``, ``train``, ``peak``,
``kernels``, ``memory`` below it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# isort: off
if __name__ == "__main__" and '"engine": "tinyae"' in " ".join(sys.argv[1:]):
    # A tinyae child imports tinyae first, as a training script or `tinyae train` does: tinyae
    # sets NumPy's BLAS up at import, before NumPy loads it (tinyae._blas_spin).
    import tinyae  # noqa: F401
import numpy as np  # noqa: E402
# isort: on

ROOT = Path(__file__).resolve().parent.parent

#: At least this many timed calls back to back, however slow a call is.
MIN_CALLS = 3
#: The part of ``target_s`` spent learning a call's cost before the timed calls.
CALIBRATION_SHARE = 0.2


@dataclass(frozen=True)
class Job:
    """One measurement in its own process.

    ``kind``: ``layer`` (``case`` is L1-L6), ``train`` (W1-W5), ``peak`` (NumPy only: the
    sgemm peak and the GEMM-only yardstick of each layer in ``case``, comma-separated),
    ``kernels`` (tinyae's C++ im2col / col2im against the NumPy twin on the layers in
    ``case``), ``memory`` (peak memory of one step of W ``case``, :mod:`benchmarks.memory`).
    ``calls``: a fixed number of timed calls instead of calibrating to ``target_s``.
    """

    kind: str
    engine: str  # "tinyae" | "torch" | "numpy"
    case: str
    threads: int
    device: str = "cpu"
    target_s: float = 0.6
    warmup: int = 3
    calls: int | None = None
    peak_size: int = 2048
    env: dict[str, str] = field(default_factory=dict)  # extra environment variables


# ------------------------------------------------------------------------- parent side


def thread_env(threads: int) -> dict[str, str]:
    """The environment variables that size every thread pool before a process starts."""
    n = str(threads)
    return {"OMP_NUM_THREADS": n, "TINYAE_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n}


def run_job(job: Job, timeout: float = 900) -> dict[str, Any]:
    """Run ``job`` in a fresh ``python -m benchmarks.runs`` process; its JSON result.

    A child that fails returns ``{"error": <last lines of its output>}`` instead of raising,
    so that one broken case does not stop a half-hour report.
    """
    env = {**os.environ, **thread_env(job.threads), **job.env}
    if job.engine == "torch":
        env.setdefault("TINYAE_KEEP_FREED_MEMORY", "0")  # see the module docstring
    cmd = [sys.executable, "-m", "benchmarks.runs", json.dumps(asdict(job))]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return {**json.loads(line), "wall_s": time.perf_counter() - t0}
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": " | ".join(tail) or f"exit status {proc.returncode}, no output"}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


# ------------------------------------------------------------------------- statistics


def median(xs: Sequence[float | None]) -> float | None:
    """Median of the measured values (``None``: a failed round, left out)."""
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def round_ratios(a: Sequence[float | None], b: Sequence[float | None]) -> list[float]:
    """a[r] / b[r] for every round r in which both sides were measured."""
    return [x / y for x, y in zip(a, b) if x is not None and y]


def pair_ratio(a: Sequence[float | None], b: Sequence[float | None]) -> float | None:
    """Median over rounds of a[r] / b[r]: the ratio of two sides measured in the same rounds."""
    return median(round_ratios(a, b))


def pair_ratio_spread(a: Sequence[float | None], b: Sequence[float | None]) -> list[float] | None:
    """Lowest and highest per-round ratio a[r] / b[r] (None with fewer than two rounds): how far
    the ratio moved from round to round; a wide range says the machine was noisy."""
    ratios = round_ratios(a, b)
    return [min(ratios), max(ratios)] if len(ratios) >= 2 else None


# --------------------------------------------------------------------------- child side


def time_calls(
    fn: Callable[[], Any], target_s: float, warmup: int, calls: int | None = None
) -> dict[str, float]:
    """Seconds per call of ``fn`` run back to back: ``warmup`` calls, calibration, timed calls.

    With ``calls`` given the calibration is skipped and exactly that many calls are timed.
    """
    for _ in range(warmup):
        fn()
    if calls is None:
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= CALIBRATION_SHARE * target_s:
                break
        calls = max(MIN_CALLS, math.ceil(target_s / (elapsed / n)))
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    total = time.perf_counter() - t0
    return {"s": total / calls, "calls": calls}


def _framework(job: Job, what: str = "all") -> Any:
    from benchmarks.workloads import get_framework, set_threads

    fw = get_framework(job.engine, job.device, what=what)
    set_threads(job.threads, engines=(job.engine,))
    return fw


def _layer_job(job: Job) -> dict[str, Any]:
    """A conv layer: forward + backward ("fb"), forward alone ("f"), tinyae also with the NumPy
    twin kernels ("numpy_fb": im2col + GEMM on NumPy alone, no direct convolutions)."""
    from benchmarks.workloads import LAYERS, layer_arrays, make_layer_case

    spec = LAYERS[job.case]
    case = make_layer_case(_framework(job, what="conv"), spec, layer_arrays(spec))
    out = {
        "fb": time_calls(case.run, job.target_s, job.warmup, job.calls),
        "f": time_calls(lambda: case.run(backward=False), job.target_s, job.warmup, job.calls),
    }
    if job.engine == "tinyae" and job.device == "cpu":
        from tinyae import kernels

        if kernels.cpp_available():
            previous = kernels.get_kernels()
            kernels.set_kernels("numpy")
            out["numpy_fb"] = time_calls(case.run, job.target_s, job.warmup, job.calls)
            kernels.set_kernels(previous)
    return out


def _train_job(job: Job) -> dict[str, Any]:
    """One optimizer step of a W workload ("step"), and the losses of the last step."""
    from benchmarks.workloads import make_train_case

    case = make_train_case(_framework(job), job.case)
    out: dict[str, Any] = {"step": time_calls(case.step, job.target_s, job.warmup, job.calls)}
    out["last_loss"] = case.loss_values(case.step())
    return out


def _array_module(device: str) -> Any:
    if device == "cuda":
        import cupy

        return cupy
    return np


def _sync(device: str) -> None:
    if device == "cuda":
        import cupy

        cupy.cuda.Device().synchronize()


def matmul_peak(device: str, size: int, target_s: float) -> dict[str, Any]:
    """float32 GEMM throughput: the fastest of several (size x size) @ (size x size) after one
    warm-up (a peak, so the best call, not the typical one)."""
    xp = _array_module(device)
    rng = np.random.default_rng(0)
    a = xp.asarray(rng.standard_normal((size, size), dtype=np.float32))
    b = xp.asarray(rng.standard_normal((size, size), dtype=np.float32))
    out = xp.empty((size, size), dtype=np.float32)
    times: list[float] = []
    start = time.perf_counter()
    for i in range(100):
        t0 = time.perf_counter()
        xp.matmul(a, b, out=out)
        _sync(device)
        if i:  # the first call is the warm-up
            times.append(time.perf_counter() - t0)
        if len(times) >= 3 and time.perf_counter() - start >= target_s:
            break
    best = min(times)
    return {"size": size, "s": best, "calls": len(times), "gflops": 2 * size**3 / best / 1e9}


def gemm_only_fn(gemm_shapes: list[tuple[int, int, int]], device: str) -> Callable[[], None]:
    """The three GEMMs of a layer's forward + backward on contiguous operands, nothing else."""
    xp = _array_module(device)
    rng = np.random.default_rng(1)
    ops = []
    for m, k, n in gemm_shapes:
        a = xp.asarray(rng.standard_normal((m, k), dtype=np.float32))
        b = xp.asarray(rng.standard_normal((k, n), dtype=np.float32))
        ops.append((a, b, xp.empty((m, n), dtype=np.float32)))

    def run() -> None:
        for a, b, out in ops:
            xp.matmul(a, b, out=out)
        _sync(device)

    return run


def _peak_job(job: Job) -> dict[str, Any]:
    """The hardware yardsticks, NumPy only: the sgemm peak and each layer's GEMM-only time."""
    from benchmarks.workloads import LAYERS, set_threads

    set_threads(job.threads, engines=())
    out: dict[str, Any] = {"peak": matmul_peak(job.device, job.peak_size, job.target_s)}
    ids = [c for c in job.case.split(",") if c]
    out["gemm_only"] = {
        lid: time_calls(gemm_only_fn(LAYERS[lid].gemm_shapes(), job.device), job.target_s, job.warmup)
        for lid in ids
    }
    return out


def _kernels_job(job: Job) -> dict[str, Any]:
    """im2col / col2im alone on each layer's image: C++ against the NumPy twin, interleaved
    call by call in this one (tinyae-only) process, ``calls`` rounds."""
    from benchmarks import bench_kernels as bk
    from benchmarks.workloads import set_threads
    from tinyae.kernels import cpp, numpy_kernels

    set_threads(job.threads, engines=("tinyae",))
    if not cpp.AVAILABLE:
        return {"skipped": f"kernel table: {cpp.UNAVAILABLE_REASON}"}
    rows = []
    for lid in (c for c in job.case.split(",") if c in bk.LAYERS):
        for op in ("im2col", "col2im"):
            (tc, tn), _faults = bk.interleaved(
                [bk.make_case(lid, op, cpp), bk.make_case(lid, op, numpy_kernels)], job.calls or 15
            )
            rows.append(
                {
                    "id": lid,
                    "op": op,
                    "cpp_ms": 1e3 * statistics.median(tc),
                    "numpy_ms": 1e3 * statistics.median(tn),
                    "speedup": pair_ratio(tn, tc),
                }
            )
    return {"rows": rows}


def _memory_job(job: Job) -> dict[str, Any]:
    from benchmarks.memory import memory_child

    return memory_child(job.engine, job.case, job.device, job.threads)


JOB_KINDS: dict[str, Callable[[Job], dict[str, Any]]] = {
    "layer": _layer_job,
    "train": _train_job,
    "peak": _peak_job,
    "kernels": _kernels_job,
    "memory": _memory_job,
}


def child(argv: list[str]) -> None:
    """``python -m benchmarks.runs JOB_JSON``: run one job, print its result as one JSON line."""
    job = Job(**json.loads(argv[0]))
    result = JOB_KINDS[job.kind](job)
    print(json.dumps({"job": asdict(job), **result}), flush=True)


if __name__ == "__main__":
    child(sys.argv[1:])
