"""Seconds per MNIST epoch of the generative models, tinyae beside PyTorch on the same model.

An epoch of ``tinyae train vae`` is 469 optimizer steps of batch 128 (60,000 images) and
an epoch of ``tinyae train dcgan`` 938 steps of batch 64: exactly the training steps W4 and
W5 of :mod:`benchmarks.workloads`, which build their networks from ``tinyae.models``.

Measured as training runs: each engine in its own process (so neither engine's threads are
in the other's way), the given thread count for every pool in it, a warm-up, then ``--steps``
steps back to back; the processes alternate (tinyae, torch, tinyae, torch, ...) for
``--rounds`` rounds. Reported: the median step time x steps per epoch for each engine and
the median of the per-round ratios tinyae / torch. The processes are :mod:`benchmarks.runs`
jobs, as in ``python -m benchmarks.report``, with a fixed step count instead of a calibrated one.

    python -m benchmarks.epoch_time                      # W4 and W5, 1 thread and all cores
    python -m benchmarks.epoch_time --threads 2 --rounds 3 --steps 40 W5

The recipe itself does a little more per epoch than W5: it draws the noise on the host, and
skips D's weight gradients in the generator step (and evaluates after each epoch).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

from benchmarks.runs import Job, cpu_model, run_job

STEPS_PER_EPOCH = {"W4": 469, "W5": 938}  # ceil(60000 / 128), ceil(60000 / 64)
MODEL = {"W4": "vae", "W5": "dcgan"}


def _run(engine: str, wid: str, threads: int, steps: int, warmup: int) -> float:
    """Seconds per step of ``engine`` on ``wid``: a fresh process, ``warmup`` steps, then ``steps``
    steps back to back (:mod:`benchmarks.runs`, the report's machinery)."""
    res = run_job(Job("train", engine, wid, threads, warmup=warmup, calls=steps), timeout=1800)
    if "error" in res:
        raise SystemExit(f"{engine} {wid} on {threads} threads failed: {res['error']}")
    return float(res["step"]["s"])


def main(argv: list[str] | None = None) -> int:
    summary = __doc__.split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m benchmarks.epoch_time", description=summary)
    parser.add_argument("workloads", nargs="*", metavar="W", help="W4 (vae) and/or W5 (dcgan); default both")
    parser.add_argument("--threads", type=int, nargs="+", default=None, help="default: 1 and all cores")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=60, help="timed steps per process")
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)
    workloads = args.workloads or sorted(STEPS_PER_EPOCH)
    unknown = set(workloads) - set(STEPS_PER_EPOCH)
    if unknown:
        parser.error(f"unknown workload(s) {sorted(unknown)}; choose from {sorted(STEPS_PER_EPOCH)}")
    cores = os.cpu_count() or 1
    threads_list = args.threads or sorted({1, cores})
    print(f"{cpu_model()}, {cores} cores; {args.rounds} rounds of {args.steps} steps per engine and process")
    print("| model | threads | tinyae s/epoch | PyTorch s/epoch | tinyae / PyTorch (median of rounds) |")
    print("|---|---|---|---|---|")
    for wid in workloads:
        for threads in threads_list:
            ours, theirs = [], []
            for _ in range(args.rounds):
                ours.append(_run("tinyae", wid, threads, args.steps, args.warmup))
                theirs.append(_run("torch", wid, threads, args.steps, args.warmup))
            ratio = statistics.median(a / b for a, b in zip(ours, theirs))
            n = STEPS_PER_EPOCH[wid]
            print(f"| {MODEL[wid]} ({wid}) | {threads} | {statistics.median(ours) * n:.1f} | "
                  f"{statistics.median(theirs) * n:.1f} | {ratio:.2f} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
