"""One command that measures tinyae against PyTorch the way training runs, and writes the tables.

The method (details in ``benchmarks/README.md``; the process machinery in :mod:`benchmarks.runs`):

* **Each engine in its own process, calls back to back.** For every case (conv layers L1-L6,
  training steps W1-W5 of :mod:`benchmarks.workloads`) and every thread count (1 and all
  cores, unless ``--threads`` says otherwise), a fresh process runs one engine with every
  thread pool at that count: warm-up calls, then calls back to back for about ``target_s``
  (0.6 s; calibrated in the process), timed together; it reports seconds per call. A layer's
  process times forward + backward, forward alone, and for tinyae also the NumPy twin kernels.
  No pauses, no other engine's threads in the process: what a training loop pays.
* **Rounds.** Round after round (5; ``--quick`` 2), the two engines' processes run one after
  the other for each case and thread count (tinyae first in rounds 1, 3, 5, PyTorch first
  in rounds 2 and 4). Reported: each engine's median over rounds, the **median of the
  per-round ratios** tinyae / PyTorch, and their range (lowest and highest per-round ratio).
* **Correctness first**, in this process, before any timing: each layer's y, dL/dx, dL/dW,
  dL/db against PyTorch (largest relative difference), each W's losses of steps 1 and 3 from
  identical weights. A wrong model cannot look fast.
* **The physical ceiling.** A NumPy-only process per round and thread count measures the
  machine's float32 sgemm peak (2048^3, the best call) and, per layer, the three GEMMs an
  im2col engine must do for forward + backward ("GEMM-only"). Each layer's GFLOP/s (FLOPs from
  :mod:`benchmarks.workloads`) for tinyae, PyTorch and GEMM-only is given as a share of the
  peak at that thread count.
* **Peak memory per training step**, a fresh process per engine, workload and thread count
  (:mod:`benchmarks.memory`), and the C++ im2col / col2im against their NumPy twin (one
  tinyae-only process per thread count).
* ``--in-process`` adds the old numbers: both engines in one process, calls interleaved, a
  0.15 s pause before each timed call (:mod:`benchmarks.inprocess`); labelled as such.

Targets (issue 19): time tinyae / PyTorch <= 1.0, above 1.2 a miss; peak memory <= 1.5x;
C++ kernels >= 3x their NumPy twin.

    python -m benchmarks.report [--quick] [--threads 1,2] [--only L1,W3,...] [--rounds R]
                                [--no-memory] [--in-process] [--device cpu|cuda] [--out DIR]
    python -m benchmarks.report --profile ID       # cProfile of tinyae on one workload

Run time: about 15 minutes on 2 quiet cores for the full report. Each round runs 44 timing
processes of 1-5 s (L1-L6 and W1-W5, two engines, 1 and all cores) and two NumPy-only yardstick
processes of ~7 s, about 2.5 minutes; 5 rounds, then 20 memory processes and 2 kernel ones.
More cores do not add processes (still two thread counts). ``--quick`` (2 rounds, 0.25 s per
measurement): about 5 minutes. A busy machine takes longer; the JSON records ``meta.minutes``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import inprocess
from benchmarks.memory import measure_memory, memory_ratios
from benchmarks.report_output import bar_chart, markdown
from benchmarks.runs import Job, cpu_model, median, pair_ratio, pair_ratio_spread, run_job
from benchmarks.workloads import (
    LAYERS,
    WORKLOADS,
    Unavailable,
    get_framework,
    layer_arrays,
    make_layer_case,
    make_train_case,
    set_threads,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results"

#: The targets of issue 19: tinyae / PyTorch time at most ``layer_ratio`` / ``train_ratio``
#: (the goal) and never above ``ratio_miss``; memory and the C++ kernels as before.
TARGETS = {
    "layer_ratio": 1.0,
    "train_ratio": 1.0,
    "ratio_miss": 1.2,
    "memory_ratio": 1.5,
    "kernel_speedup": 3.0,
}

#: Steps of each W whose losses the correctness check compares (step 1 from identical weights).
CHECK_STEPS = 3


# ------------------------------------------------------------------------------ settings


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """Rounds, seconds per measurement, warm-up calls, peak size: full or ``--quick``."""
    quick = args.quick
    return {
        "rounds": args.rounds or (2 if quick else 5),
        "target_s": 0.25 if quick else 0.6,
        "warmup": 2 if quick else 3,
        "peak_size": 1024 if quick else 2048,
        "kernel_rounds": 5 if quick else 15,
    }


def thread_counts(arg: str | None, device: str) -> list[int]:
    """``--threads 1,2`` as a list; default 1 and all cores (all cores only on a GPU)."""
    if arg:
        return sorted({int(t) for t in arg.split(",")})
    cores = os.cpu_count() or 1
    return [cores] if device == "cuda" else sorted({1, cores})


def selected(only: str | None) -> tuple[list[str], list[str]]:
    """The L and W ids to run (``--only``), in table order; unknown ids are an error."""
    ids = [s.strip() for s in only.split(",") if s.strip()] if only else [*LAYERS, *WORKLOADS]
    unknown = [i for i in ids if i not in LAYERS and i not in WORKLOADS]
    if unknown:
        raise SystemExit(f"--only: unknown id(s) {unknown}; choose from {[*LAYERS, *WORKLOADS]}")
    return [i for i in LAYERS if i in ids], [i for i in WORKLOADS if i in ids]


# ---------------------------------------------------------------------------- correctness


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-30))


def check_layers(device: str, ids: list[str], skipped: list[str]) -> dict[str, dict[str, float]]:
    """Largest relative difference of y, gx, gw, gb between the engines, per layer."""
    try:
        fws = [get_framework(name, device, what="conv") for name in ("tinyae", "torch")]
    except Unavailable as exc:
        skipped.append(f"layer correctness check: {exc}")
        return {}
    out = {}
    for lid in ids:
        arrays = layer_arrays(LAYERS[lid])
        ra, rb = (make_layer_case(fw, LAYERS[lid], arrays).results() for fw in fws)
        out[lid] = {k: _rel_err(ra[k], rb[k]) for k in ra}
    return out


def check_train(device: str, ids: list[str], skipped: list[str]) -> dict[str, dict[str, Any]]:
    """Losses of steps 1..CHECK_STEPS of both engines from the same weights and batch, per W."""
    try:
        fws = {name: get_framework(name, device) for name in ("tinyae", "torch")}
    except Unavailable as exc:
        skipped.append(f"training-step correctness check: {exc}")
        return {}
    out = {}
    for wid in ids:
        losses = {}
        for name, fw in fws.items():
            case = make_train_case(fw, wid)
            losses[name] = [case.loss_values(case.step()) for _ in range(CHECK_STEPS)]
        out[wid] = {
            "first_loss": {k: v[0] for k, v in losses.items()},
            "last_loss": {k: v[-1] for k, v in losses.items()},
            "last_step": CHECK_STEPS,
        }
    return out


# ------------------------------------------------------------------------------- timings


def run_rounds(
    ids: list[str], threads: list[int], engines: list[str], device: str, cfg: dict[str, Any]
) -> tuple[dict[str, Any], dict[int, list[Any]]]:
    """All timing processes, round after round: raw[id][threads][engine] = [result per round],
    peaks[threads] = [yardstick result per round]. A failed process leaves None in its round."""
    raw: dict[str, Any] = {i: {t: {e: [] for e in engines} for t in threads} for i in ids}
    peaks: dict[int, list[Any]] = {t: [] for t in threads}
    layer_ids = ",".join(i for i in ids if i in LAYERS)
    common = {"device": device, "target_s": cfg["target_s"], "warmup": cfg["warmup"]}
    start = time.perf_counter()
    for r in range(cfg["rounds"]):
        for t in threads:
            res = run_job(Job("peak", "numpy", layer_ids, t, peak_size=cfg["peak_size"], **common))
            peaks[t].append(_ok(res, f"round {r + 1} yardsticks, {t} threads"))
        for cid in ids:
            kind = "layer" if cid in LAYERS else "train"
            for t in threads:
                for engine in engines if r % 2 == 0 else engines[::-1]:
                    res = run_job(Job(kind, engine, cid, t, **common))
                    raw[cid][t][engine].append(_ok(res, f"round {r + 1} {cid} {engine} {t} threads"))
                print(
                    f"  round {r + 1}/{cfg['rounds']} {cid} {t:>2} threads: {_progress(raw[cid][t], kind)}",
                    flush=True,
                )
        done = (time.perf_counter() - start) / (r + 1)
        print(f"round {r + 1} done, about {done * (cfg['rounds'] - r - 1) / 60:.0f} min to go", flush=True)
    return raw, peaks


def _ok(res: dict[str, Any], what: str) -> dict[str, Any] | None:
    if "error" in res:
        print(f"  {what}: FAILED: {res['error']}", flush=True)
        return None
    return res


def _progress(by_engine: dict[str, list[Any]], kind: str) -> str:
    key = "fb" if kind == "layer" else "step"
    last = {e: rs[-1][key]["s"] for e, rs in by_engine.items() if rs and rs[-1]}
    text = ", ".join(f"{e} {1e3 * s:.2f} ms" for e, s in last.items())
    if len(last) == 2:
        text += f" -> {last['tinyae'] / last['torch']:.2f}"
    return text


def _series(results: list[Any], key: str) -> list[float | None]:
    """Seconds per call of ``key`` in each round (None where that round failed)."""
    return [res[key]["s"] if res and key in res else None for res in results]


def _ms(series: list[float | None]) -> float | None:
    m = median(series)
    return None if m is None else 1e3 * m


def summarise_peaks(peaks: dict[int, list[Any]]) -> dict[str, Any]:
    out = {}
    for t, results in peaks.items():
        gflops = [res["peak"]["gflops"] for res in results if res]
        size = next((res["peak"]["size"] for res in results if res), None)
        out[str(t)] = {"size": size, "gflops": median(gflops), "gflops_rounds": gflops}
    return out


def summarise_layer(
    lid: str, by_threads: dict[int, Any], peaks: dict[int, list[Any]], peak_gflops: dict[str, Any]
) -> dict[str, Any]:
    """One L row: per thread count medians, per-round ratios, GFLOP/s and share of the peak."""
    spec = LAYERS[lid]
    row: dict[str, Any] = {
        "id": lid,
        "op": spec.op,
        "layer": spec.describe(),
        "flops": spec.flops(),
        "threads": {},
    }
    for t, by_engine in by_threads.items():
        s = {f"{e}_{k}": _series(rs, k) for e, rs in by_engine.items() for k in ("fb", "f", "numpy_fb")}
        s["gemm_only"] = [res["gemm_only"][lid]["s"] if res else None for res in peaks[t]]
        for e in by_engine:  # backward = (forward + backward) - forward, in the same process
            s[f"{e}_b"] = [
                fb - f if fb is not None and f is not None else None
                for fb, f in zip(s[f"{e}_fb"], s[f"{e}_f"])
            ]
        cell: dict[str, Any] = {f"{k}_ms": _ms(v) for k, v in s.items() if any(x is not None for x in v)}
        cell["ratio"] = pair_ratio(s["tinyae_fb"], s.get("torch_fb", []))
        cell["ratio_spread"] = pair_ratio_spread(s["tinyae_fb"], s.get("torch_fb", []))
        cell["ratio_fwd"] = pair_ratio(s["tinyae_f"], s.get("torch_f", []))
        bwd = [(a, b) for a, b in zip(s["tinyae_b"], s.get("torch_b", [])) if a and b and a > 0 and b > 0]
        cell["ratio_bwd"] = median([a / b for a, b in bwd]) if bwd else None  # <= 0: lost in the noise
        peak = (peak_gflops.get(str(t)) or {}).get("gflops")
        for key in ("tinyae_fb", "torch_fb", "tinyae_numpy_fb", "gemm_only"):
            if cell.get(f"{key}_ms"):
                gf = spec.flops() / (cell[f"{key}_ms"] / 1e3) / 1e9
                cell[f"{key}_gflops"] = gf
                cell[f"{key}_peak_share"] = gf / peak if peak else None
        cell["rounds_s"] = {k: v for k, v in s.items() if not k.endswith("_b") and any(v)}
        row["threads"][str(t)] = cell
    return row


def summarise_train(wid: str, by_threads: dict[int, Any]) -> dict[str, Any]:
    """One W row: per thread count the step medians, per-round ratio and its range."""
    spec = WORKLOADS[wid]
    row: dict[str, Any] = {"id": wid, "title": spec.title, "batch": spec.batch, "threads": {}}
    for t, by_engine in by_threads.items():
        s = {e: _series(rs, "step") for e, rs in by_engine.items()}
        row["threads"][str(t)] = {
            **{f"{e}_ms": _ms(v) for e, v in s.items()},
            "ratio": pair_ratio(s["tinyae"], s.get("torch", [])),
            "ratio_spread": pair_ratio_spread(s["tinyae"], s.get("torch", [])),
            "rounds_s": s,
        }
    return row


# ---------------------------------------------------------------------------------- meta


def load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def machine_info(device: str, threads: list[int]) -> dict[str, Any]:
    """CPU model, cores, versions, BLAS, tinyae's kernels, commit, load average."""
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "openblas_env": {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")},
        "load_average_start": load_average(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        config = torch.__config__.show()
        found = [
            re.search(p, config)
            for p in (
                r"MKL-DNN (v[\d.]+)",
                r"Kernel Library Version ([\d.]+)",
                r"CPU capability usage: (\w+)",
            )
        ]
        labels = ("oneDNN", "MKL", "CPU capability")
        info["torch_backends"] = ", ".join(f"{k} {m.group(1)}" for k, m in zip(labels, found) if m)
    except ImportError:
        info["torch"] = None
    import tinyae

    tinfo = tinyae.info(print_report=False)
    info["tinyae"] = tinyae.__version__
    info["tinyae_kernels"] = tinfo["kernels"]["active"]
    info["tinyae_direct_conv"] = tinfo["kernels"].get("direct_conv")
    info["tinyae_gemm"] = tinfo["kernels"].get("gemm")
    blas = tinfo.get("blas") or {}
    info["blas"] = f"{blas.get('name')} {blas.get('version')}" if blas.get("name") else None
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


# ---------------------------------------------------------------------------------- main


def run_report(args: argparse.Namespace) -> dict[str, Any]:
    device, cfg = args.device, settings(args)
    layer_ids, train_ids = selected(args.only)
    threads = thread_counts(args.threads, device)
    skipped: list[str] = []
    engines = ["tinyae", "torch"]
    try:
        get_framework("torch", device)
    except Unavailable as exc:
        engines = ["tinyae"]
        skipped.append(f"PyTorch: {exc}: tinyae alone, no ratios")
    start = time.perf_counter()
    meta = machine_info(device, threads)
    meta.update(cfg, quick=args.quick, engines=engines, method="own process per engine, back to back")
    result: dict[str, Any] = {"meta": meta, "targets": TARGETS, "skipped": skipped}
    print(
        f"tinyae benchmark report: {meta['cpu']}, {meta['cores']} cores, threads {threads}, "
        f"{cfg['rounds']} rounds",
        flush=True,
    )

    print("correctness (both engines in this process, before any timing)", flush=True)
    set_threads(max(threads))
    layer_checks = check_layers(device, layer_ids, skipped) if layer_ids else {}
    train_checks = check_train(device, train_ids, skipped) if train_ids else {}
    gc.collect()

    print("timings (each engine in its own process)", flush=True)
    raw, peaks = run_rounds(layer_ids + train_ids, threads, engines, device, cfg)
    meta["load_average_after_timings"] = load_average()
    result["matmul_peak"] = summarise_peaks(peaks)
    result["layers"] = [summarise_layer(lid, raw[lid], peaks, result["matmul_peak"]) for lid in layer_ids]
    for row in result["layers"]:
        row["max_rel_err"] = layer_checks.get(row["id"])
    result["train"] = [summarise_train(wid, raw[wid]) for wid in train_ids]
    for row in result["train"]:
        row.update(train_checks.get(row["id"], {}))

    result["kernels"] = {}
    if device == "cpu" and layer_ids:
        print("im2col / col2im: C++ against the NumPy twin", flush=True)
        for t in threads:
            res = run_job(Job("kernels", "tinyae", ",".join(layer_ids), t, calls=cfg["kernel_rounds"]))
            if "skipped" in res or "error" in res:
                skipped.append(res.get("skipped") or f"kernel table, {t} threads: {res['error']}")
            else:
                result["kernels"][str(t)] = res["rows"]
    if args.memory and result["train"]:
        print("peak memory per step (fresh processes)", flush=True)
        for row in result["train"]:
            row["memory"] = {
                str(t): memory_ratios({e: measure_memory(e, row["id"], device, t) for e in engines})
                for t in threads
            }
    if args.in_process:
        result["in_process"] = run_in_process(device, layer_ids, train_ids, threads, cfg, skipped)
    meta["load_average_end"] = load_average()
    meta["minutes"] = (time.perf_counter() - start) / 60
    return result


def run_in_process(
    device: str,
    layer_ids: list[str],
    train_ids: list[str],
    threads: list[int],
    cfg: dict[str, Any],
    skipped: list[str],
) -> dict[str, Any]:
    """The old method at each thread count (see :mod:`benchmarks.inprocess`)."""
    print("in-process, interleaved (--in-process: the old method, for comparison)", flush=True)
    rounds, out = 3 * cfg["rounds"], {"settle_s": inprocess.SETTLE_S, "rounds": 3 * cfg["rounds"]}
    for t in threads:
        set_threads(t)
        settle = inprocess.SETTLE_S if device == "cpu" and t > 1 else 0.0
        out[str(t)] = {
            "settle_s": settle,
            "layers": inprocess.bench_layers(device, layer_ids, rounds, cfg["warmup"], settle, skipped),
            "train": inprocess.bench_train(device, train_ids, rounds, cfg["warmup"], settle, skipped),
        }
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report",
        description="tinyae vs PyTorch, each engine in its own process: layers, training steps, "
        "the hardware ceiling, memory, kernels.",
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 rounds, 0.25 s per measurement, 1024^3 peak GEMM (a smoke run)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for latest.{json,md,png}")
    parser.add_argument(
        "--threads", default=None, help="thread counts, e.g. 1 or 1,2 (default: 1 and all cores)"
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds of processes (default 5, quick 2)")
    parser.add_argument("--only", default=None, help="comma-separated ids, e.g. L2,L5,W3")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the memory processes")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="also the old numbers: both engines in one process, interleaved, paused",
    )
    parser.add_argument("--profile", metavar="ID", help="cProfile tinyae on one L or W workload and exit")
    args = parser.parse_args(argv)

    if args.device == "cuda":
        from tinyae import cuda

        reason = cuda.unavailable_reason()
        if reason is not None:
            print(f"skipping --device cuda: {reason}")
            return
    if args.profile:
        set_threads(max(thread_counts(args.threads, args.device)))
        inprocess.profile_workload(args.profile, args.device, 3 if args.quick else 10)
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
    print(f"wrote {args.out / stem}.json, .md, .png ({result['meta']['minutes']:.1f} min)")


if __name__ == "__main__":
    main()
