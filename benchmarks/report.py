"""One command that measures tinyae against PyTorch and writes the table the README cites.

    python -m benchmarks.report [--device cpu|cuda] [--quick] [--out DIR] [--threads N]
                                [--only L1,W3,...] [--no-memory] [--profile ID]

How it measures (see ``benchmarks/README.md`` for how to read the output):

* **Same process, same threads.** Both engines are imported into this one process; every
  thread pool (NumPy's BLAS and the OpenMP runtimes via threadpoolctl, PyTorch via
  ``torch.set_num_threads``) gets the same size, all cores by default.
* **Warm-up, then interleave.** Each variant runs a few times untimed (PyTorch builds its
  oneDNN primitives, NumPy touches its buffers), then the variants run in turn, round after
  round (A B C, B C A, ...), so that a burst of load on the machine hits all of them alike.
  Tables quote per-variant medians and, for tinyae / PyTorch, the **median of the per-round
  ratios** (more robust than a ratio of medians on a noisy shared machine).
* **Hardware yardstick.** The float32 matrix-multiply throughput of the machine is measured
  with NumPy (2048^3 GEMM, best of several), and per layer the three GEMMs an im2col engine
  must do for forward + backward are timed alone ("GEMM-only"): the closest an im2col
  engine can get (tinyae's direct convolutions, on AVX-512 CPUs, skip im2col and can pass it).
  Conv FLOPs are defined in :mod:`benchmarks.workloads`.
* **Peak memory per training step**, each engine in a fresh subprocess (one per engine and
  workload, so nothing cached by the other engine or an earlier workload counts):
  warm up two steps, reset the kernel's peak-RSS counter (``/proc/self/clear_refs``), run
  one step, report peak RSS minus the RSS before the step. glibc's malloc is pinned to a
  fixed mmap threshold (``MALLOC_MMAP_THRESHOLD_``) in both, and tinyae's own allocator settings
  are turned off (``TINYAE_KEEP_FREED_MEMORY=0``, :mod:`tinyae.memory`), so freed buffers go back
  to the OS and the warm-up cannot hide a step's allocations in a recycled heap. (In training,
  tinyae keeps them: the process holds its peak footprint from the first step on.) As a cross-check,
  the allocator-level peak of live bytes during one step is also reported: tracemalloc for
  tinyae (NumPy reports its data buffers to tracemalloc) and PyTorch's profiler memory
  events (every CPU tensor allocation and free) for PyTorch. On a GPU: CuPy's memory pool
  (a MemoryHook) against ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime
import gc
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.workloads import (
    LAYERS,
    WORKLOADS,
    Framework,
    LayerSpec,
    Unavailable,
    get_framework,
    layer_arrays,
    make_layer_case,
    make_train_case,
    set_threads,
    thread_info,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results"

#: The targets of issue 8 (tinyae / PyTorch, and C++ kernels / NumPy twin).
TARGETS = {"layer_ratio": 1.3, "train_ratio": 1.3, "memory_ratio": 1.5, "kernel_speedup": 3.0}

#: glibc's mmap threshold pinned in the memory subprocesses (bytes): see the module docstring.
MMAP_THRESHOLD = 128 * 1024


# ---------------------------------------------------------------------------------- timing


def interleave(
    fns: dict[str, Callable[[], Any]], rounds: int, warmup: int, settle: float = 0.0
) -> dict[str, list[float]]:
    """Seconds per call of each function: ``warmup`` untimed calls each, then ``rounds`` rounds.

    Round r calls the functions in the order rotated by r (A B C, B C A, ...), so no variant
    always runs first, right after another one has warmed (or thrashed) the caches.
    ``settle``: seconds to sleep before each timed call, so that the threads the previous call
    left busy-waiting are asleep again. (NumPy's OpenBLAS keeps its workers spinning for about
    0.1 s after each product, PyTorch's OpenMP for a shorter while: without the pause, an
    engine pays for the other's spinning threads, PyTorch up to 1.5x its time on W3.)
    """
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            if settle:
                time.sleep(settle)
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def median_ms(ts: list[float] | None) -> float | None:
    return None if not ts else 1e3 * statistics.median(ts)


def pair_ratio(a: list[float] | None, b: list[float] | None) -> float | None:
    """Median over rounds of a[r] / b[r]: the ratio of two variants measured side by side."""
    if not a or not b:
        return None
    return statistics.median(x / y for x, y in zip(a, b))


def pair_ratio_spread(a: list[float] | None, b: list[float] | None) -> list[float] | None:
    """First and third quartiles over rounds of a[r] / b[r]: how much the ratio moved from round
    to round (a wide spread says the machine was noisy; compare runs with care)."""
    if not a or not b or len(a) < 2:
        return None
    q1, _, q3 = statistics.quantiles([x / y for x, y in zip(a, b)], n=4)
    return [q1, q3]


def _spread(r: dict[str, Any]) -> str:
    spread = r.get("ratio_spread")
    return "-" if not spread else f"{spread[0]:.2f}-{spread[1]:.2f}"


def _array_module(device: str) -> Any:
    if device == "cuda":
        import cupy

        return cupy
    return np


def _sync(device: str) -> None:
    if device == "cuda":
        import cupy

        cupy.cuda.Device().synchronize()


def matmul_peak(device: str, size: int = 2048, repeats: int = 5) -> dict[str, Any]:
    """float32 GEMM throughput of the machine: best of ``repeats`` (size x size) @ (size x size)."""
    xp = _array_module(device)
    rng = np.random.default_rng(0)
    a = xp.asarray(rng.standard_normal((size, size), dtype=np.float32))
    b = xp.asarray(rng.standard_normal((size, size), dtype=np.float32))
    out = xp.empty((size, size), dtype=np.float32)
    best = float("inf")
    for _ in range(repeats + 1):  # the first call is a warm-up
        t0 = time.perf_counter()
        xp.matmul(a, b, out=out)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return {"size": size, "seconds": best, "gflops": 2 * size**3 / best / 1e9}


def gemm_only_fn(spec: LayerSpec, device: str) -> Callable[[], None]:
    """The three GEMMs of the layer's forward + backward on contiguous operands, nothing else."""
    xp = _array_module(device)
    rng = np.random.default_rng(1)
    ops = []
    for m, k, n in spec.gemm_shapes():
        a = xp.asarray(rng.standard_normal((m, k), dtype=np.float32))
        b = xp.asarray(rng.standard_normal((k, n), dtype=np.float32))
        ops.append((a, b, xp.empty((m, n), dtype=np.float32)))

    def run() -> None:
        for a, b, out in ops:
            xp.matmul(a, b, out=out)
        _sync(device)

    return run


# ---------------------------------------------------------------------------------- layers


def _with_kernels(name: str, fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` run with tinyae's CPU im2col/col2im set to ``name`` ("cpp" or "numpy")."""
    from tinyae import kernels

    def run() -> Any:
        previous = kernels.get_kernels()
        kernels.set_kernels(name)
        try:
            return fn()
        finally:
            kernels.set_kernels(previous)

    return run


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-30))


def bench_layers(
    device: str, rounds: int, warmup: int, only: set[str] | None, skipped: list[str], settle: float = 0.0
) -> list[dict[str, Any]]:
    """L1-L6: forward and forward + backward of tinyae (C++ and NumPy kernels) and PyTorch."""
    fws: dict[str, Framework] = {}
    for name in ("tinyae", "torch"):
        try:
            fws[name] = get_framework(name, device, what="conv")
        except Unavailable as exc:
            skipped.append(f"layers on {name}: {exc}")
    if "tinyae" not in fws:
        return []
    from tinyae import kernels

    with_numpy_twin = device == "cpu" and kernels.cpp_available()
    rows = []
    for lid, spec in LAYERS.items():
        if only and lid not in only:
            continue
        arrays = layer_arrays(spec)
        cases = {name: make_layer_case(fw, spec, arrays) for name, fw in fws.items()}
        row: dict[str, Any] = {"id": lid, "op": spec.op, "layer": spec.describe(), "flops": spec.flops()}
        if "torch" in cases:  # correctness first: the two engines must compute the same thing
            ra, rb = cases["tinyae"].results(), cases["torch"].results()
            row["max_rel_err"] = {k: _rel_err(ra[k], rb[k]) for k in ra}
        fns: dict[str, Callable[[], Any]] = {"gemm_only": gemm_only_fn(spec, device)}
        for name, case in cases.items():
            fns[f"{name}_fb"] = case.run
            fns[f"{name}_f"] = lambda case=case: case.run(backward=False)
        if with_numpy_twin:
            fns["tinyae_numpy_fb"] = _with_kernels("numpy", cases["tinyae"].run)
        t = interleave(fns, rounds, warmup, settle)
        for key, ts in t.items():
            row[f"{key}_ms"] = median_ms(ts)
        row["ratio"] = pair_ratio(t.get("tinyae_fb"), t.get("torch_fb"))
        row["ratio_spread"] = pair_ratio_spread(t.get("tinyae_fb"), t.get("torch_fb"))
        row["ratio_fwd"] = pair_ratio(t.get("tinyae_f"), t.get("torch_f"))
        for name in ("tinyae", "torch"):
            if f"{name}_fb_ms" in row:
                row[f"{name}_bwd_ms"] = row[f"{name}_fb_ms"] - row[f"{name}_f_ms"]
        if row.get("torch_bwd_ms", 0) > 0 and row.get("tinyae_bwd_ms", 0) > 0:  # <= 0: lost in the noise
            row["ratio_bwd"] = row["tinyae_bwd_ms"] / row["torch_bwd_ms"]
        for key in ("tinyae_fb", "torch_fb", "tinyae_numpy_fb", "gemm_only"):
            if row.get(f"{key}_ms"):
                row[f"{key}_gflops"] = spec.flops() / (row[f"{key}_ms"] / 1e3) / 1e9
        rows.append(row)
        print(f"  {lid}: tinyae {row['tinyae_fb_ms']:.1f} ms, ratio {_fmt(row['ratio'], 'x')}", flush=True)
    return rows


def bench_kernels(rounds: int, only: set[str] | None, skipped: list[str]) -> list[dict[str, Any]]:
    """im2col / col2im alone: C++ against the NumPy twin on the L shapes (from bench_kernels.py)."""
    from benchmarks import bench_kernels as bk
    from tinyae.kernels import cpp, numpy_kernels

    if not cpp.AVAILABLE:
        skipped.append(f"kernel table: {cpp.UNAVAILABLE_REASON}")
        return []
    rows = []
    for lid in bk.LAYERS:
        if only and lid not in only:
            continue
        for op in ("im2col", "col2im"):
            (tc, tn), _faults = bk.interleaved(
                [bk.make_case(lid, op, cpp), bk.make_case(lid, op, numpy_kernels)], rounds
            )
            rows.append(
                {
                    "id": lid,
                    "op": op,
                    "cpp_ms": median_ms(tc),
                    "numpy_ms": median_ms(tn),
                    "speedup": pair_ratio(tn, tc),
                }
            )
    return rows


# ---------------------------------------------------------------------------- train steps


def bench_train(
    device: str, rounds: int, warmup: int, only: set[str] | None, skipped: list[str], settle: float = 0.0
) -> list[dict[str, Any]]:
    """W1-W5: one optimizer step, tinyae against PyTorch, same weights and batch."""
    fws: dict[str, Framework] = {}
    for name in ("tinyae", "torch"):
        try:
            fws[name] = get_framework(name, device)
        except Unavailable as exc:
            skipped.append(f"training steps on {name}: {exc}")
    if "tinyae" not in fws:
        return []
    rows = []
    for wid, spec in WORKLOADS.items():
        if only and wid not in only:
            continue
        cases = {name: make_train_case(fw, wid) for name, fw in fws.items()}
        row: dict[str, Any] = {"id": wid, "title": spec.title, "batch": spec.batch}
        # Step 1 from identical weights: the losses must agree (a wrong model would be "fast").
        row["first_loss"] = {name: case.loss_values(case.step()) for name, case in cases.items()}
        t = interleave({name: case.step for name, case in cases.items()}, rounds, warmup, settle)
        row["last_loss"] = {name: case.loss_values(case.step()) for name, case in cases.items()}
        for name, ts in t.items():
            row[f"{name}_ms"] = median_ms(ts)
        row["ratio"] = pair_ratio(t.get("tinyae"), t.get("torch"))
        row["ratio_spread"] = pair_ratio_spread(t.get("tinyae"), t.get("torch"))
        rows.append(row)
        print(f"  {wid}: tinyae {row['tinyae_ms']:.1f} ms, ratio {_fmt(row['ratio'], 'x')}", flush=True)
    return rows


# ---------------------------------------------------------------------------------- memory


def _proc_status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key}")


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _torch_profiled_peak(step: Callable[[], Any], device: str) -> int:
    """Peak of live tensor bytes during ``step`` from PyTorch's profiler memory events."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities, profile_memory=True) as prof:
        step()
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and (device == "cuda") == (str(e.device_type()).endswith("CUDA"))
    )
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


class _CupyPeakHook:
    """A CuPy MemoryHook that follows the memory pool's live bytes and their peak."""

    def __init__(self) -> None:
        import cupy

        class Hook(cupy.cuda.MemoryHook):
            name = "tinyae_peak"

            def __init__(hook) -> None:  # noqa: N805 - the hook object, not the outer self
                super().__init__()
                hook.live = hook.peak = 0

            # CuPy calls these with keyword arguments (device_id, size, mem_size, mem_ptr, pmem_id)
            # on every allocation from, and every release to, its memory pool.
            def malloc_postprocess(hook, **kwargs: Any) -> None:  # noqa: N805
                hook.live += kwargs["mem_size"]
                hook.peak = max(hook.peak, hook.live)

            def free_postprocess(hook, **kwargs: Any) -> None:  # noqa: N805
                hook.live -= kwargs["mem_size"]

        self.hook = Hook()


def memory_child(framework: str, wid: str, device: str, threads: int) -> dict[str, Any]:
    """Run in a fresh process: peak memory of one training step of ``wid`` on ``framework``."""
    set_threads(threads)
    fw = get_framework(framework, device)
    case = make_train_case(fw, wid)
    for _ in range(2):  # warm-up: optimizer state, framework caches, lazily built kernels
        case.step()
    gc.collect()
    out: dict[str, Any] = {"framework": framework, "id": wid, "device": device}
    if device == "cpu":
        rss_before = _proc_status_kb("VmRSS")
        if _reset_peak_rss():
            case.step()
            out["rss_increase_mb"] = (_proc_status_kb("VmHWM") - rss_before) / 1024
        gc.collect()
        if framework == "tinyae":
            import tracemalloc

            tracemalloc.start()
            case.step()
            out["alloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        else:
            out["alloc_peak_mb"] = _torch_profiled_peak(case.step, device) / 2**20
    elif framework == "torch":
        import torch

        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        case.step()
        out["alloc_peak_mb"] = (torch.cuda.max_memory_allocated() - before) / 2**20
    else:
        holder = _CupyPeakHook()
        with holder.hook:
            case.step()
        out["alloc_peak_mb"] = holder.hook.peak / 2**20
    return out


def measure_memory(framework: str, wid: str, device: str, threads: int) -> dict[str, Any]:
    """:func:`memory_child` in a fresh ``python`` process (the fair way: nothing shared)."""
    # TINYAE_KEEP_FREED_MEMORY=0: tinyae would otherwise raise the threshold again at import
    # (tinyae.memory), in both children, since the workloads import tinyae.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD), TINYAE_KEEP_FREED_MEMORY="0")
    cmd = [sys.executable, "-m", "benchmarks.report", "--memory-child", framework, wid, device, str(threads)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"framework": framework, "id": wid, "device": device, "error": " | ".join(tail)}


def bench_memory(rows: list[dict[str, Any]], device: str, threads: int) -> None:
    """Add peak memory (both measures, both engines) to each training-step row."""
    for row in rows:
        mem: dict[str, Any] = {}
        for name in ("tinyae", "torch"):
            if row.get(f"{name}_ms") is not None:
                mem[name] = measure_memory(name, row["id"], device, threads)
        for key in ("rss_increase_mb", "alloc_peak_mb"):
            a, b = mem.get("tinyae", {}).get(key), mem.get("torch", {}).get(key)
            mem[f"{key}_ratio"] = a / b if a is not None and b else None
        row["memory"] = mem
        print(
            f"  {row['id']}: RSS +{_fmt(mem['tinyae'].get('rss_increase_mb'), ' MB')} vs "
            f"+{_fmt(mem.get('torch', {}).get('rss_increase_mb'), ' MB')}",
            flush=True,
        )


# ---------------------------------------------------------------------------------- output


def _fmt(v: Any, unit: str = "", digits: int = 2) -> str:
    if v is None:
        return "-"
    if unit == " MB" or unit == "ms":
        digits = 1
    return f"{v:.{digits}f}{unit}"


def _threads(n: int) -> str:
    return f"{n} thread" if n == 1 else f"{n} threads"


def _verdict(value: float | None, limit: float, at_least: bool = False) -> str:
    if value is None:
        return "-"
    ok = value >= limit if at_least else value <= limit
    return "ok" if ok else "**miss**"


def machine_info(device: str, threads: int) -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": threads,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "openblas_env": {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")},
        "load_average_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["torch"] = None
    import tinyae
    from tinyae import kernels

    info["tinyae"] = tinyae.__version__
    info["tinyae_kernels"] = kernels.get_kernels()
    info["tinyae_kernel_threads"] = kernels.num_threads()
    info["thread_pools"] = thread_info()
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        info["git_commit"] = commit or None
    if device == "cuda":
        with contextlib.suppress(Exception):
            import cupy

            props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
            info["gpu"] = props["name"].decode()
    return info


def markdown(result: dict[str, Any]) -> str:
    meta, peak = result["meta"], result["matmul_peak"]
    lines = [
        f"# tinyae vs PyTorch {meta.get('torch') or '(not installed)'} ({meta['device']})",
        "",
        f"{meta.get('gpu') or meta['cpu']}, {meta['cores']} cores, "
        f"{_threads(meta['threads'])} for every pool; "
        f"Python {meta['python']}, NumPy {meta['numpy']}; tinyae {meta['tinyae']} "
        f"(commit {meta.get('git_commit')}, {meta['tinyae_kernels']} kernels); {meta['date']}. "
        f"float32. Medians of interleaved rounds ({meta['rounds']} for layers, "
        f"{meta.get('kernel_rounds', meta['rounds'])} for kernels, "
        f"{meta.get('train_rounds', meta['rounds'])} for training steps) "
        f"after {meta['warmup']} warm-up calls; "
        "ratios are medians of per-round ratios (lower is better for tinyae). "
        + (
            f"A {meta['settle_s']} s pause before each timed call lets the other engine's idle threads "
            "stop spinning. "
            if meta.get("settle_s")
            else ""
        )
        + f"1-minute load average {_fmt(meta.get('load_average_start'), '', 1)} at the start, "
        f"{_fmt(meta.get('load_average_end'), '', 1)} at the end ({meta['cores']} cores: above that, "
        "other processes were competing for the CPU and multi-threaded timings suffer most).",
        "",
        f"Machine float32 GEMM throughput (NumPy, {peak['size']}^3, best of 5): "
        f"**{peak['gflops']:.0f} GFLOP/s**.",
        "",
    ]
    if result["layers"]:
        lines += [
            f"## Layers L1-L6: forward + backward (target tinyae/torch <= {TARGETS['layer_ratio']})",
            "",
            "| L | layer | tinyae ms | torch ms | **tinyae/torch** | middle half of rounds | fwd ratio "
            "| bwd ratio | tinyae GFLOP/s | torch GFLOP/s | GEMM-only GFLOP/s | NumPy-kernels ms | target |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in result["layers"]:
            lines.append(
                f"| {r['id']} | {r['layer']} | {_fmt(r.get('tinyae_fb_ms'), '', 1)} "
                f"| {_fmt(r.get('torch_fb_ms'), '', 1)} | **{_fmt(r.get('ratio'))}** | {_spread(r)} "
                f"| {_fmt(r.get('ratio_fwd'))} "
                f"| {_fmt(r.get('ratio_bwd'))} | {_fmt(r.get('tinyae_fb_gflops'), '', 0)} "
                f"| {_fmt(r.get('torch_fb_gflops'), '', 0)} | {_fmt(r.get('gemm_only_gflops'), '', 0)} "
                f"| {_fmt(r.get('tinyae_numpy_fb_ms'), '', 1)} "
                f"| {_verdict(r.get('ratio'), TARGETS['layer_ratio'])} |"
            )
        lines.append("")
    if result["kernels"]:
        lines += [
            f"## im2col / col2im alone: C++ vs the NumPy twin (target >= {TARGETS['kernel_speedup']:g}x)",
            "",
            "| L | op | C++ ms | NumPy twin ms | **twin / C++** | target |",
            "|---|---|---:|---:|---:|---|",
        ]
        for r in result["kernels"]:
            lines.append(
                f"| {r['id']} | {r['op']} | {_fmt(r['cpp_ms'], '', 2)} | {_fmt(r['numpy_ms'], '', 2)} "
                f"| **{_fmt(r['speedup'], 'x', 1)}** "
                f"| {_verdict(r['speedup'], TARGETS['kernel_speedup'], True)} |"
            )
        lines.append("")
    if result["train"]:
        lines += [
            f"## Training steps W1-W5 (target time <= {TARGETS['train_ratio']}x, "
            f"peak memory <= {TARGETS['memory_ratio']}x)",
            "",
            "| W | model (batch) | tinyae ms | torch ms | **tinyae/torch** | middle half of rounds "
            "| step-1 loss tinyae / torch | peak RSS +MB tinyae / torch | **mem ratio** "
            "| alloc peak MB tinyae / torch | alloc ratio | time | memory |",
            "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---|",
        ]
        for r in result["train"]:
            mem = r.get("memory", {})
            ta, tt = mem.get("tinyae", {}), mem.get("torch", {})
            losses = r["first_loss"]
            loss_txt = " / ".join(
                ", ".join(f"{v:.5g}" for v in losses[name]) for name in ("tinyae", "torch") if name in losses
            )
            mem_ratio = mem.get("rss_increase_mb_ratio")
            lines.append(
                f"| {r['id']} | {r['title']} ({r['batch']}) | {_fmt(r.get('tinyae_ms'), '', 1)} "
                f"| {_fmt(r.get('torch_ms'), '', 1)} | **{_fmt(r.get('ratio'))}** | {_spread(r)} "
                f"| {loss_txt} "
                f"| {_fmt(ta.get('rss_increase_mb'), '', 1)} / {_fmt(tt.get('rss_increase_mb'), '', 1)} "
                f"| **{_fmt(mem_ratio)}** "
                f"| {_fmt(ta.get('alloc_peak_mb'), '', 1)} / {_fmt(tt.get('alloc_peak_mb'), '', 1)} "
                f"| {_fmt(mem.get('alloc_peak_mb_ratio'))} "
                f"| {_verdict(r.get('ratio'), TARGETS['train_ratio'])} "
                f"| {_verdict(mem_ratio, TARGETS['memory_ratio'])} |"
            )
        lines.append("")
    if result["skipped"]:
        lines += ["## Skipped", ""] + [f"- {s}" for s in result["skipped"]] + [""]
    return "\n".join(lines)


def bar_chart(result: dict[str, Any], path: Path) -> str | None:
    """Three panels: time ratios (L and W), memory ratios (W), kernel speedups (L). None if drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"no chart: matplotlib is not installed ({exc})"
    fig = plt.figure(figsize=(12, 7.5))
    grid = fig.add_gridspec(2, 2, width_ratios=[5, 7])
    axes = [fig.add_subplot(grid[0, :]), fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])]
    panels = [
        (
            axes[0],
            [(r["id"], r.get("ratio")) for r in result["layers"] + result["train"]],
            TARGETS["layer_ratio"],
            "time tinyae / PyTorch (lower is better)",
        ),
        (
            axes[1],
            [(r["id"], r.get("memory", {}).get("rss_increase_mb_ratio")) for r in result["train"]],
            TARGETS["memory_ratio"],
            "peak memory per step, tinyae / PyTorch",
        ),
        (
            axes[2],
            [(f"{r['id']} {r['op']}", r.get("speedup")) for r in result["kernels"]],
            TARGETS["kernel_speedup"],
            "C++ kernels: speed-up over NumPy twin",
        ),
    ]
    for ax, items, target, title in panels:
        items = [(k, v) for k, v in items if v is not None]
        if not items:
            ax.set_title(title, fontsize=10)
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([]), ax.set_yticks([])
            continue
        labels, values = zip(*items)
        higher_is_better = ax is axes[2]
        colors = [
            ("tab:green" if (v >= target if higher_is_better else v <= target) else "tab:red") for v in values
        ]
        ax.bar(range(len(values)), values, color=colors)
        ax.set_xticks(range(len(values)), labels, fontsize=8, rotation=60 if higher_is_better else 0)
        ax.axhline(target, color="black", linestyle="--", linewidth=1, label=f"target {target:g}")
        if not higher_is_better:
            ax.axhline(1.0, color="gray", linestyle=":", linewidth=1, label="parity")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.2f}" if v < 10 else f"{v:.0f}", ha="center", va="bottom", fontsize=7)
    meta = result["meta"]
    fig.suptitle(
        f"tinyae vs PyTorch {meta.get('torch')}, {meta['device']}: {meta.get('gpu') or meta['cpu']}, "
        f"{_threads(meta['threads'])}, {meta['date'][:10]}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# -------------------------------------------------------------------------------- profiling


def profile_workload(wid: str, device: str, steps: int) -> None:
    """cProfile of tinyae on one L or W workload (after warm-up), top functions by own time."""
    fw = get_framework("tinyae", device, what="conv" if wid in LAYERS else "all")
    if wid in LAYERS:
        case = make_layer_case(fw, LAYERS[wid], layer_arrays(LAYERS[wid]))
        fwd_ts = interleave({"f": lambda: case.run(backward=False), "fb": case.run}, steps, 2)
        print(
            f"{wid}: forward {median_ms(fwd_ts['f']):.1f} ms, "
            f"forward + backward {median_ms(fwd_ts['fb']):.1f} ms"
        )
        step = case.run
    else:
        step = make_train_case(fw, wid).step
        step(), step()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(steps):
        step()
    prof.disable()
    stats = pstats.Stats(prof).strip_dirs().sort_stats("tottime")
    print(
        f"cProfile of {steps} tinyae calls of {wid} (times are totals over the calls; ufuncs such as matmul"
    )
    print("are not listed themselves: their time is the 'tottime' of the Python function that calls them)")
    stats.print_stats(25)


# ------------------------------------------------------------------------------------ main


def run_report(args: argparse.Namespace) -> dict[str, Any]:
    device = args.device
    skipped: list[str] = []
    threads = set_threads(args.threads)
    rounds = args.rounds or (3 if args.quick else 15)
    warmup = 1 if args.quick else 3
    only = set(args.only.split(",")) if args.only else None
    meta = machine_info(device, threads)
    # Several threads per engine: pause before each timed call until the other engine's idle
    # threads stop spinning (see interleave). One thread has nothing spinning; a GPU syncs anyway.
    settle = 0.15 if device == "cpu" and threads > 1 and not args.quick else 0.0
    # Kernel calls take milliseconds, so they get more rounds (their medians were the noisiest
    # numbers of the report); a training step takes up to ~0.2 s a round, so it gets fewer.
    kernel_rounds, train_rounds = 3 * rounds, max(3, rounds * 2 // 3)
    meta.update(rounds=rounds, kernel_rounds=kernel_rounds, train_rounds=train_rounds, warmup=warmup,
                quick=args.quick, settle_s=settle)  # fmt: skip
    print(f"tinyae benchmark report: {device}, {threads} threads, {rounds} rounds", flush=True)
    result: dict[str, Any] = {"meta": meta, "targets": TARGETS, "skipped": skipped}
    result["matmul_peak"] = matmul_peak(device, 1024 if args.quick else 2048)
    print("layers", flush=True)
    result["layers"] = bench_layers(device, rounds, warmup, only, skipped, settle)
    print("kernels", flush=True)
    result["kernels"] = bench_kernels(kernel_rounds, only, skipped) if device == "cpu" else []
    if device != "cpu":
        skipped.append("kernel table: C++ vs NumPy twin is a CPU comparison")
    print("training steps", flush=True)
    result["train"] = bench_train(device, train_rounds, warmup, only, skipped, settle)
    if args.memory and result["train"]:
        print("peak memory (fresh subprocesses)", flush=True)
        bench_memory(result["train"], device, threads)
    meta["load_average_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="tinyae vs PyTorch: layers, kernels, training steps, memory."
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--quick", action="store_true", help="3 rounds, 1 warm-up, smaller GEMM (a smoke run)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for latest.{json,md,png}")
    parser.add_argument(
        "--threads", type=int, default=None, help="threads for every pool (default: all cores)"
    )
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 15, quick 3)")
    parser.add_argument("--only", default=None, help="comma-separated ids, e.g. L2,L5,W3")
    parser.add_argument(
        "--no-memory", dest="memory", action="store_false", help="skip the memory subprocesses"
    )
    parser.add_argument("--profile", metavar="ID", help="cProfile tinyae on one L or W workload and exit")
    parser.add_argument(
        "--memory-child", nargs=4, metavar=("FRAMEWORK", "ID", "DEVICE", "THREADS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)

    if args.memory_child:
        framework, wid, device, threads = args.memory_child
        print(json.dumps(memory_child(framework, wid, device, int(threads))))
        return
    if args.device == "cuda":
        from tinyae import cuda

        reason = cuda.unavailable_reason()
        if reason is not None:
            print(f"skipping --device cuda: {reason}")
            return
    if args.profile:
        set_threads(args.threads)
        profile_workload(args.profile, args.device, 3 if args.quick else 10)
        return
    result = run_report(args)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "latest" if args.device == "cpu" else f"latest-{args.device}"
    chart_note = bar_chart(result, args.out / f"{stem}.png")
    if chart_note:
        result["skipped"].append(chart_note)
    table = markdown(result)
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(table + "\n")
    print()
    print(table)
    print(f"wrote {args.out / stem}.json, .md, .png")


if __name__ == "__main__":
    main()
