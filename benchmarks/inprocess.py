"""Both engines in one process, calls interleaved: the report's old method, kept for comparison.

``python -m benchmarks.report --in-process`` adds these tables, labelled as what they are. They
do NOT measure as training runs, and read better for tinyae than the main tables on CPUs where
PyTorch's threads matter:

* Both engines are imported into one process, with the same thread count for every pool.
* Each variant is warmed up, then the variants take turns, one call each, round after round,
  in a rotating order (A B C, B C A, ...).
* With several threads, a pause (``settle``, 0.15 s) before every timed call lets the threads
  the previous call left spinning fall asleep, so that neither engine shares the cores with the
  other's spinning threads. The price: every timed call starts on sleeping threads, and PyTorch
  pays an OpenMP wake-up per call that no training loop pays (issue 19 measured PyTorch's L3 at
  27 ms here against 10 ms back to back in its own process).

Also :func:`profile_workload` (``--profile ID``): cProfile of tinyae alone on one workload.
"""

from __future__ import annotations

import cProfile
import pstats
import statistics
import time
from collections.abc import Callable
from typing import Any

from benchmarks.runs import pair_ratio, pair_ratio_spread
from benchmarks.workloads import (
    LAYERS,
    WORKLOADS,
    Framework,
    Unavailable,
    get_framework,
    layer_arrays,
    make_layer_case,
    make_train_case,
)

#: Seconds to sleep before each timed call when several threads are used (see above).
SETTLE_S = 0.15


def interleave(
    fns: dict[str, Callable[[], Any]], rounds: int, warmup: int, settle: float = 0.0
) -> dict[str, list[float]]:
    """Seconds per call of each function: ``warmup`` untimed calls each, then ``rounds`` rounds.

    Round r calls the functions in the order rotated by r (A B C, B C A, ...), so no variant
    always runs first. ``settle``: seconds to sleep before each timed call (see the module
    docstring for what it buys and what it costs).
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


def _ms(ts: list[float] | None) -> float | None:
    return 1e3 * statistics.median(ts) if ts else None


def _frameworks(device: str, what: str, skipped: list[str]) -> dict[str, Framework]:
    fws: dict[str, Framework] = {}
    for name in ("tinyae", "torch"):
        try:
            fws[name] = get_framework(name, device, what=what)
        except Unavailable as exc:
            skipped.append(f"in-process {what}: {name}: {exc}")
    return fws


def bench_layers(
    device: str, ids: list[str], rounds: int, warmup: int, settle: float, skipped: list[str]
) -> list[dict[str, Any]]:
    """L rows: forward + backward and forward alone of both engines, interleaved in this process."""
    fws = _frameworks(device, "conv", skipped)
    if len(fws) < 2:
        return []
    rows = []
    for lid in ids:
        spec = LAYERS[lid]
        arrays = layer_arrays(spec)
        fns: dict[str, Callable[[], Any]] = {}
        for name, fw in fws.items():
            case = make_layer_case(fw, spec, arrays)
            fns[f"{name}_fb"] = case.run
            fns[f"{name}_f"] = lambda case=case: case.run(backward=False)
        t = interleave(fns, rounds, warmup, settle)
        row: dict[str, Any] = {"id": lid, **{f"{k}_ms": _ms(v) for k, v in t.items()}}
        row["ratio"] = pair_ratio(t["tinyae_fb"], t["torch_fb"])
        row["ratio_spread"] = pair_ratio_spread(t["tinyae_fb"], t["torch_fb"])
        row["ratio_fwd"] = pair_ratio(t["tinyae_f"], t["torch_f"])
        rows.append(row)
    return rows


def bench_train(
    device: str, ids: list[str], rounds: int, warmup: int, settle: float, skipped: list[str]
) -> list[dict[str, Any]]:
    """W rows: one optimizer step of both engines, interleaved in this process."""
    fws = _frameworks(device, "all", skipped)
    if len(fws) < 2:
        return []
    rows = []
    for wid in ids:
        cases = {name: make_train_case(fw, wid) for name, fw in fws.items()}
        t = interleave({name: case.step for name, case in cases.items()}, rounds, warmup, settle)
        rows.append(
            {
                "id": wid,
                "tinyae_ms": _ms(t["tinyae"]),
                "torch_ms": _ms(t["torch"]),
                "ratio": pair_ratio(t["tinyae"], t["torch"]),
                "ratio_spread": pair_ratio_spread(t["tinyae"], t["torch"]),
            }
        )
    return rows


def profile_workload(wid: str, device: str, steps: int) -> None:
    """cProfile of tinyae on one L or W workload (after warm-up), top functions by own time."""
    fw = get_framework("tinyae", device, what="conv" if wid in LAYERS else "all")
    if wid in LAYERS:
        case = make_layer_case(fw, LAYERS[wid], layer_arrays(LAYERS[wid]))
        ts = interleave({"f": lambda: case.run(backward=False), "fb": case.run}, steps, 2)
        print(f"{wid}: forward {_ms(ts['f']):.1f} ms, forward + backward {_ms(ts['fb']):.1f} ms")
        step = case.run
    elif wid in WORKLOADS:
        step = make_train_case(fw, wid).step
        step(), step()
    else:
        raise SystemExit(f"--profile: unknown workload {wid!r}; choose from {[*LAYERS, *WORKLOADS]}")
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(steps):
        step()
    prof.disable()
    stats = pstats.Stats(prof).strip_dirs().sort_stats("tottime")
    print(f"cProfile of {steps} tinyae calls of {wid} (times are totals over the calls; ufuncs such as")
    print(
        "matmul are not listed themselves: their time is the 'tottime' of the Python function calling them)"
    )
    stats.print_stats(25)
