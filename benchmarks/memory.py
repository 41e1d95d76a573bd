"""Peak memory of one training step, each engine in a fresh process (the report's memory table).

The method: one process per engine and workload (nothing cached by the other engine or an
earlier workload counts), every pool at the given thread count. Two warm-up steps, then the
kernel's peak-RSS counter is reset (``/proc/self/clear_refs``), one step runs, and the result
is peak RSS minus the RSS before the step. glibc's malloc is pinned to a fixed mmap threshold
(``MALLOC_MMAP_THRESHOLD_``) in both processes and tinyae's own allocator settings are turned
off (``TINYAE_KEEP_FREED_MEMORY=0``, :mod:`tinyae.memory`), so freed buffers go back to the OS
and the warm-up cannot hide a step's allocations in a recycled heap. (In training, tinyae
keeps them: the process holds its peak footprint from the first step on.) As a cross-check,
the allocator-level peak of live bytes during one step: tracemalloc for tinyae (NumPy reports
its data buffers to tracemalloc) and PyTorch's profiler memory events (every CPU tensor
allocation and free) for PyTorch. On a GPU: CuPy's memory pool (a MemoryHook) against
``torch.cuda.max_memory_allocated``.

The process is a :class:`benchmarks.runs.Job` of kind ``memory``; :func:`memory_child` is what
runs in it.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

from benchmarks.runs import Job, run_job
from benchmarks.workloads import get_framework, make_train_case, set_threads

#: glibc's mmap threshold pinned in the memory processes (bytes): see the module docstring.
MMAP_THRESHOLD = 128 * 1024


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
    fw = get_framework(framework, device)
    set_threads(threads, engines=(framework,))
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
    env = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "TINYAE_KEEP_FREED_MEMORY": "0"}
    out = run_job(Job("memory", framework, wid, threads, device=device, env=env), timeout=600)
    out.pop("job", None)
    return {"framework": framework, "id": wid, "device": device, **out}


def memory_ratios(mem: dict[str, Any]) -> dict[str, Any]:
    """``mem`` ({"tinyae": ..., "torch": ...} from :func:`measure_memory`) with the ratios
    tinyae / torch of both measures added."""
    for key in ("rss_increase_mb", "alloc_peak_mb"):
        a, b = mem.get("tinyae", {}).get(key), mem.get("torch", {}).get(key)
        mem[f"{key}_ratio"] = a / b if a is not None and b else None
    return mem
