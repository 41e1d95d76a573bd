"""Data-parallel speed: 2 ranks x 1 thread against 1 process x 2 threads, and a scaling projection.

One training step of W2, W3 and W5 (:mod:`benchmarks.workloads`) with the global batch of the
workload (128, 128, 64), run two ways on the same cores:

* ``1 x 2``: one process, every thread pool at 2 threads (tinyae splits its big ops);
* ``2 x 1``: two ranks under mpiexec, one thread each, each with half the batch and
  :class:`tinyae.distributed.DistributedDataParallel` on every model (bucketed allreduce
  overlapped with backward). A step is timed from a barrier to the slower rank's end.

Each variant runs in a fresh process (warm-up, then ``--steps`` steps); the variants alternate
for ``--rounds`` rounds; the table gives medians of the per-round medians. The 2-rank runs also
report the time a step spends blocked in the gradient allreduce (the part backward did not
hide), and a bare blocking allreduce of the whole gradient, timed alone.

``--project`` measures the 1-thread step time and the gradient bytes of W1-W5 and prints the
ring-allreduce projection of docs/distributed.md for 1-64 workers on 10 and 100 Gbit/s.

    python -m benchmarks.distributed                   # the table of benchmarks/README.md
    python -m benchmarks.distributed --rounds 3 --steps 10 W3
    python -m benchmarks.distributed --project
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETWORKS = {"10 Gbit/s": (10e9 / 8, 20e-6), "100 Gbit/s": (100e9 / 8, 5e-6)}  # bytes/s, latency per message
WORKERS = (1, 2, 4, 8, 16, 32, 64)


def _case(wid: str, threads: int, batch: int | None = None):  # noqa: ANN202 - a TrainCase
    import tinyae
    from benchmarks.workloads import get_framework, make_train_case, set_threads

    set_threads(threads)
    tinyae.set_num_threads(threads)
    return make_train_case(get_framework("tinyae"), wid, batch=batch)


def _single(wid: str, threads: int, steps: int, warmup: int) -> None:
    case = _case(wid, threads)
    for _ in range(warmup):
        case.step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        case.step()
        times.append(time.perf_counter() - t0)
    params = [p for m in case.models.values() for p in m.parameters()]
    grad_bytes = sum(p.data.nbytes for p in params)
    print(json.dumps({"step_s": statistics.median(times), "grad_bytes": grad_bytes}))


def _ranks(wid: str, steps: int, warmup: int, bucket_mb: float) -> None:
    import numpy as np

    from benchmarks.workloads import WORKLOADS
    from tinyae import distributed as dist

    group = dist.init_process_group()
    case = _case(wid, 1, batch=WORKLOADS[wid].batch // group.size)
    wrappers = [dist.DistributedDataParallel(m, bucket_cap_mb=bucket_mb) for m in case.models.values()]
    blocked = [0.0]
    wait = group.wait

    def timed_wait(requests: list, what: str) -> None:
        t0 = time.perf_counter()
        wait(requests, what)
        blocked[0] += time.perf_counter() - t0

    group.wait = timed_wait  # count the time spent blocked in the gradient allreduce
    for _ in range(warmup):
        case.step()
    times, waits = [], []
    for _ in range(steps):
        group.comm.Barrier()
        blocked[0] = 0.0
        t0 = time.perf_counter()
        case.step()
        elapsed = time.perf_counter() - t0
        worst = group.comm.allreduce((elapsed, blocked[0]), op=group.MPI.MAX)
        times.append(worst[0])
        waits.append(group.comm.allreduce(blocked[0], op=group.MPI.SUM) / group.size)
    total = sum(b.send.size for w in wrappers for b in w._buckets)
    flat, bare = np.zeros(total, np.float32), []
    for _ in range(steps):
        group.comm.Barrier()
        t0 = time.perf_counter()
        group.comm.Allreduce(np.array(flat), flat)
        bare.append(time.perf_counter() - t0)
    if group.rank == 0:
        print(json.dumps({"step_s": statistics.median(times), "blocked_s": statistics.median(waits),
                          "bare_allreduce_s": statistics.median(bare), "grad_bytes": 4 * total,
                          "buckets": sum(len(w._buckets) for w in wrappers)}))  # fmt: skip


def _run(command: list[str], env: dict[str, str]) -> dict:
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(workloads: list[str], rounds: int, steps: int, warmup: int, bucket_mb: float) -> list[dict]:
    from tinyae.distributed.training import mpiexec_path

    me = [sys.executable, "-m", "benchmarks.distributed"]
    base = {**os.environ}
    one_thread = {**base, "TINYAE_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    rows = []
    for wid in workloads:
        single, ranks = [], []
        for r in range(rounds):
            order = ("single", "ranks") if r % 2 == 0 else ("ranks", "single")
            for variant in order:
                args = ["--steps", str(steps), "--warmup", str(warmup), wid]
                if variant == "single":
                    single.append(_run([*me, "--single-worker", "--threads", "2", *args], base))
                else:
                    rank_args = [*me, "--rank-worker", "--bucket-mb", str(bucket_mb), *args]
                    ranks.append(_run([mpiexec_path(), "-n", "2", *rank_args], one_thread))

        def med(runs: list[dict], key: str) -> float:
            return 1e3 * statistics.median(x[key] for x in runs)

        rows.append({
            "workload": wid, "single_ms": med(single, "step_s"), "ranks_ms": med(ranks, "step_s"),
            "blocked_ms": med(ranks, "blocked_s"), "bare_ms": med(ranks, "bare_allreduce_s"),
            "grad_kb": ranks[0]["grad_bytes"] / 1024, "buckets": ranks[0]["buckets"],
            "ratios": [s["step_s"] / k["step_s"] for s, k in zip(single, ranks)],
        })  # fmt: skip
    return rows


def project(steps: int, warmup: int) -> None:
    """Ring-allreduce projection from the measured 1-thread step time and gradient bytes of W1-W5."""
    me = [sys.executable, "-m", "benchmarks.distributed", "--single-worker", "--threads", "1"]
    env = {**os.environ, "TINYAE_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    measured = {w: _run([*me, "--steps", str(steps), "--warmup", str(warmup), w], env) for w in
                ("W1", "W2", "W3", "W4", "W5")}  # fmt: skip
    print("| workload | 1-thread step | gradient |")
    print("|---|---|---|")
    for w, m in measured.items():
        print(f"| {w} | {1e3 * m['step_s']:.1f} ms | {m['grad_bytes'] / 2**20:.2f} MiB |")
    for net, (bandwidth, latency) in NETWORKS.items():
        print(f"\n{net} (latency {latency * 1e6:g} us per message): projected step ms (speed-up)\n")
        print("| workers | " + " | ".join(measured) + " |")
        print("|---" * (len(measured) + 1) + "|")
        for n in WORKERS:
            cells = []
            for m in measured.values():
                t = step_time(m["step_s"], m["grad_bytes"], n, bandwidth, latency)
                cells.append(f"{1e3 * t:.1f} ({m['step_s'] / t:.1f}x)")
            print(f"| {n} | " + " | ".join(cells) + " |")


def step_time(compute_s: float, grad_bytes: float, n: int, bandwidth: float, latency: float) -> float:
    """Compute split N ways plus a ring allreduce not hidden behind it (the pessimistic bound)."""
    if n == 1:
        return compute_s
    ring = 2 * (n - 1) / n * grad_bytes / bandwidth + 2 * (n - 1) * latency
    return compute_s / n + ring


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="*", default=["W2", "W3", "W5"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bucket-mb", type=float, default=1.0, help="DDP bucket size (default 1 MiB)")
    parser.add_argument("--project", action="store_true")
    parser.add_argument("--single-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rank-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single_worker:
        return _single(args.workloads[0], args.threads, args.steps, args.warmup)
    if args.rank_worker:
        return _ranks(args.workloads[0], args.steps, args.warmup, args.bucket_mb)
    if args.project:
        return project(args.steps, args.warmup)
    load = os.getloadavg()[0]
    rows = compare(args.workloads, args.rounds, args.steps, args.warmup, args.bucket_mb)
    end = os.getloadavg()[0]
    print(f"load average at start {load:.2f}, at end {end:.2f}; {args.rounds} rounds x {args.steps} steps\n")
    print("| workload | gradient | buckets | 1 process x 2 threads | 2 ranks x 1 thread | speed-up "
          "(middle half) | blocked in allreduce / step | bare allreduce of the gradient |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        q = statistics.quantiles(r["ratios"], n=4) if len(r["ratios"]) > 1 else [r["ratios"][0]] * 3
        print(f"| {r['workload']} | {r['grad_kb']:.0f} KiB | {r['buckets']} | {r['single_ms']:.1f} ms | "
              f"{r['ranks_ms']:.1f} ms | {statistics.median(r['ratios']):.2f}x ({q[0]:.2f}-{q[2]:.2f}) | "
              f"{r['blocked_ms']:.2f} ms | {r['bare_ms']:.2f} ms |")  # fmt: skip


if __name__ == "__main__":
    main()
